#!/usr/bin/env bash
# One prepared call on a lent GPU machine: record the machine, check the CUDA path, measure
# speed, train the next default model with the minutes left, and write every result as it is made.
#
#   python benchmarks/gpu_bundle.py                         # here, once: the training clips
#   bash benchmarks/gpu_session.sh [RESULTS_DIR]            # there (the device tool: carry .gpu_bundle)
#   DRY_RUN=1 bash benchmarks/gpu_session.sh /tmp/dry       # the same steps with tiny settings, on a CPU
#
# RESULTS_DIR (default $OUT, else runs/gpu_session) receives, and keeps up to date after every
# step, at most 8 files: session.log, results.tar (steps.jsonl, env, checks, benchmark JSON,
# training summaries and metrics) and the trained weights (decoder.safetensors: the bundled
# model's decoder trained on; grid16_model.safetensors: a 4x16x16 tokenizer; transformer.safetensors:
# the transformer trained on its tokens).
# BUDGET (seconds, default 570) bounds the whole session; each step gets a time limit and is
# skipped when the time is gone. ONLY, TRAIN_STAGES and GRID16_BASE: see below.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RESULTS_DIR=${1:-${OUT:-$REPO/runs/gpu_session}}
BUNDLE=${BUNDLE:-$REPO/.gpu_bundle}
DRY_RUN=${DRY_RUN:-0}
BUDGET=${BUDGET:-$([[ "$DRY_RUN" == 1 ]] && echo 3600 || echo 570)}
SLACK=$([[ "$DRY_RUN" == 1 ]] && echo 6 || echo 1)  # a dry run checks what runs, not how fast: a busy CPU is slow
ONLY=${ONLY:-}  # run only these steps (names as in steps.jsonl), e.g. to redo what failed
TRAIN_STAGES=${TRAIN_STAGES:-grid16 transformer}
GRID16_BASE=${GRID16_BASE-$REPO/weights/recipe/grid16}  # the 4x16x16 tokenizer to continue ("": from scratch)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
RESULTS=$WORK/results
mkdir -p "$RESULTS_DIR" "$RESULTS"
exec > >(tee -a "$RESULTS_DIR/session.log") 2>&1
export PYTHONPATH="$REPO:$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
START=$SECONDS
FAILED=0

left() { echo $((BUDGET - (SECONDS - START))); }

save() {  # results.tar replaced whole, so a session cut off at any moment leaves a readable one
    tar -C "$WORK" -cf "$RESULTS_DIR/.results.tar" results && mv "$RESULTS_DIR/.results.tar" "$RESULTS_DIR/results.tar"
}

step() {  # step NAME SECONDS COMMAND...: run under a time limit, record its exit status, save
    local name=$1 limit=$(( $2 * SLACK )) cap rc t0
    shift 2
    if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then
        return
    fi
    cap=$(left)
    (( limit > cap )) && limit=$cap
    if (( limit < 10 )); then
        echo "== $name: skipped, out of time"
        echo "{\"step\": \"$name\", \"status\": \"skipped\"}" >>"$RESULTS/steps.jsonl"
        return
    fi
    echo "== $name (at most ${limit} s; $(left) s left)"
    t0=$SECONDS
    timeout --signal=TERM --kill-after=15 "$limit" "$@"
    rc=$?
    (( rc != 0 )) && FAILED=$((FAILED + 1))
    echo "{\"step\": \"$name\", \"exit_code\": $rc, \"seconds\": $((SECONDS - t0))}" >>"$RESULTS/steps.jsonl"
    save
}

if [[ "$DRY_RUN" == 1 ]]; then
    DEVICE=cpu; TF_SIZE=tiny; TF_BATCH="1"; TOK=tiny; TOK_BATCH=1; TASK=tiny; TASK_BATCH="1 2"
    DTYPES="float32"; CHECKS=(--clips 1 --steps 1)
    TRAIN=(--tiny --batch 2 --limit 8 --workers 0 --calibration-steps 2)
    export COMPILE_BACKEND=eager  # traced, no code generated: seconds, not minutes
else
    DEVICE=cuda; TF_SIZE=b; TF_BATCH="1 8 32"; TOK=ucf-b; TOK_BATCH=8; TASK=ucf; TASK_BATCH="1 16 64"
    DTYPES="float32 bfloat16"; CHECKS=(); TRAIN=(--batch 64)
fi

# 1. The machine, and what the project needs beyond what it has (wheels from the bundle).
if compgen -G "$BUNDLE/wheels/*.whl" >/dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$BUNDLE"/wheels/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
nvidia-smi 2>/dev/null || echo "nvidia-smi: not available"
step env 60 $PYTHON benchmarks/gpu_checks.py env --out "$RESULTS/env.json"

# 2. Correctness on this device: official parity (float32, TF32 off), bf16 decoding, seeds, OOM.
# Only the files that hold parity tests: the others need PyAV, which this machine lacks.
parity_files=$(grep -l "reference_dir" tests/test_*.py | tr '\n' ' ')
parity_args=()
[[ "$DRY_RUN" == 1 ]] && parity_args=(-k "tokenizer and not g_params")
step parity 120 env MAGVIT_TEST_DEVICE=$DEVICE $PYTHON -m pytest -q -p no:cacheprovider -m parity "${parity_args[@]}" \
    --junitxml="$RESULTS/parity.xml" $parity_files
step decoding 90 $PYTHON benchmarks/gpu_checks.py decoding --device $DEVICE --bundle "$BUNDLE" "${CHECKS[@]}" \
    --out "$RESULTS/decoding.json"
step oom 90 $PYTHON benchmarks/gpu_checks.py oom --out "$RESULTS/oom.json"

# 3. Speed, eager (torch.compile comes last: compiling costs minutes).
step transformer 45 $PYTHON benchmarks/transformer_speed.py --device $DEVICE --size $TF_SIZE --batch $TF_BATCH \
    --dtype $DTYPES --out "$RESULTS/transformer_speed.json"
for dtype in $DTYPES; do
    step "decode-$dtype" 45 $PYTHON benchmarks/decode_speed.py --device $DEVICE --size $TF_SIZE --dtype "$dtype" \
        --out "$RESULTS/decode_speed-$dtype.json"
done
step tokenizer 45 $PYTHON benchmarks/tokenizer_speed.py --device $DEVICE --preset $TOK --batch $TOK_BATCH \
    --out "$RESULTS/tokenizer_speed.json"
step generation 90 $PYTHON benchmarks/task_speed.py --device $DEVICE --preset $TASK --families CG FP \
    --batch $TASK_BATCH --dtype $DTYPES --out "$RESULTS/task_speed.json"

# 4. Speed with torch.compile: the largest batch of each eager sweep (a batch
# size compiles anew), and generation in bf16 (what CUDA decoding uses) at the batch that gave
# the most clips per second.
best=$($PYTHON -c "import json,sys; rows=json.load(open(sys.argv[1]))['rows']; \
rows=[r for r in rows if r['family']=='CG' and r['dtype']==sys.argv[2]]; \
print(max(rows, key=lambda r: r['clips_per_s'])['batch'])" "$RESULTS/task_speed.json" "${DTYPES##* }" 2>/dev/null \
    || echo "${TASK_BATCH%% *}")
step generation-compiled 75 $PYTHON benchmarks/task_speed.py --device $DEVICE --preset $TASK --families CG \
    --batch "$best" --dtype "${DTYPES##* }" --compile --out "$RESULTS/task_speed-compiled.json"
step transformer-compiled 45 $PYTHON benchmarks/transformer_speed.py --device $DEVICE --size $TF_SIZE \
    --batch "${TF_BATCH##* }" --dtype $DTYPES --compile --out "$RESULTS/transformer_speed-compiled.json"
step decode-compiled 35 $PYTHON benchmarks/decode_speed.py --device $DEVICE --size $TF_SIZE --compile \
    --out "$RESULTS/decode_speed-compiled.json"
step tokenizer-compiled 50 $PYTHON benchmarks/tokenizer_speed.py --device $DEVICE --preset $TOK \
    --batch $TOK_BATCH --compile --out "$RESULTS/tokenizer_speed-compiled.json"

# 5. Training, with the time left shared equally between TRAIN_STAGES: "grid16", the 4x16x16
# tokenizer of the next default model, on from GRID16_BASE (or from scratch); "transformer", the
# small transformer on that tokenizer's tokens; "decoder", the bundled model's decoder alone (same
# tokens, so it can be released with the bundled transformer). What each stage trained goes next
# to results.tar (the size cap is per file); 25 s of each step's limit are for its last save.
if [[ -f "$BUNDLE/train.json" ]]; then
    stages=($TRAIN_STAGES)
    for i in "${!stages[@]}"; do
        stage=${stages[$i]}
        share=$(( ($(left) - 25 * (${#stages[@]} - i)) / (${#stages[@]} - i) ))
        [[ "$DRY_RUN" == 1 ]] && share=15
        base=()
        [[ $stage == grid16 && -n "$GRID16_BASE" && "$DRY_RUN" != 1 ]] && base=(--base "$GRID16_BASE")
        [[ $stage == transformer ]] && base=(--base "$([[ -d "$WORK/grid16" ]] && echo "$WORK/grid16" || echo "$GRID16_BASE")")
        step "train-$stage" $((share + 25)) $PYTHON benchmarks/gpu_train.py "$stage" --bundle "$BUNDLE" \
            --device $DEVICE --out "$WORK/$stage" --seconds $share "${TRAIN[@]}" "${base[@]}"
        mkdir -p "$RESULTS/$stage"
        cp "$WORK/$stage"/{summary.json,metrics.jsonl,config.json} "$RESULTS/$stage/" 2>/dev/null
        if [[ $stage == grid16 ]]; then
            cp "$WORK/grid16/model.safetensors" "$RESULTS_DIR/grid16_model.safetensors" 2>/dev/null
        else
            cp "$WORK/$stage/$stage.safetensors" "$RESULTS_DIR/" 2>/dev/null
        fi
        save
    done
else
    echo "== training: skipped, no training clips in $BUNDLE"
fi

echo "== done in $((SECONDS - START)) s, $FAILED step(s) failed; results in $RESULTS_DIR"
save
rm -rf "$WORK"
exit $(( FAILED > 0 ))
