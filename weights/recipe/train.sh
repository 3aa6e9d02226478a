#!/usr/bin/env bash
# Train the bundled default model with the project's own `magvit train` commands.
#
#   bash weights/recipe/train.sh tokenizer     # stage 1 (resumes if the run folder exists)
#   bash weights/recipe/train.sh subset        # the stage-2 clip list (manifest) from the data
#   bash weights/recipe/train.sh transformer   # stage 2 (resumes likewise)
#
# DATA (default /work/data, built by prepare_data.py) and RUNS (default /work/runs) can be
# overridden from the environment. Both stages save every few steps and continue from
# their last checkpoint when started again, so a run may span several sessions.
# Sized for a 2-core CPU (see README.md); on a GPU raise batch_size and steps.
set -euo pipefail

DATA=${DATA:-/work/data}
RUNS=${RUNS:-/work/runs}
HERE=$(cd "$(dirname "$0")" && pwd)
MAGVIT=${MAGVIT:-magvit}

resume_flag() { [ -f "$1/training_state.pt" ] && echo --resume || true; }

case "${1:-}" in
tokenizer)
    # 4.9 M parameters, token grid 4 x 8 x 8 for 16 x 64 x 64 clips. No GAN term
    # (adversarial_weight=0, r1_weight=0): with a few hundred CPU steps it only costs PSNR.
    out=$RUNS/tokenizer
    $MAGVIT train tokenizer "$DATA/train" --output "$out" --preset small $(resume_flag "$out") \
        --set tokenizer.channel_multipliers=1,1,2,4 \
        --set tokenizer.embedding_dim=64 \
        --set tokenizer.codebook_size=512 \
        --set adversarial_weight=0 --set r1_weight=0 \
        --set batch_size=4 --set lr=4e-4 --set warmup_steps=30 --set steps="${STEPS:-600}" \
        --set num_workers=1 --set save_every=25 --set preview_every=100 --set log_every=5 \
        --quiet --json
    ;;
subset)
    # Stage 2 uses a token cache (one fixed clip per file); a balanced subset keeps
    # building it affordable on a CPU.
    /usr/bin/env python "$HERE/subset.py" --data "$DATA" --out "$DATA/stage2.csv"
    ;;
transformer)
    out=$RUNS/transformer
    $MAGVIT train transformer "$DATA/stage2.csv" --tokenizer "$RUNS/tokenizer" --output "$out" \
        --preset small $(resume_flag "$out") --token-cache "$RUNS/token_cache" \
        --set tasks=frame_prediction,frame_interpolation,outpainting_c,outpainting_v,outpainting_h,outpainting_dv,inpainting_c,inpainting_dv,full_generation,frame_prediction_c \
        --set batch_size=16 --set lr=5e-4 --set warmup_steps=100 --set steps="${STEPS:-3000}" \
        --set num_workers=0 --set save_every=100 --set preview_every=500 --set log_every=10 \
        --quiet --json
    ;;
*)
    echo "usage: $0 tokenizer|subset|transformer" >&2
    exit 2
    ;;
esac
