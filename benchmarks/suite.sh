#!/usr/bin/env bash
# The benchmark suite with quick settings: a few minutes on a CPU. Each script prints a table
# and writes benchmarks/results/<name>-<cpu|cuda>.json. THREADS=1 pins CPU threads (useful on a
# busy shared machine); DEVICE=cuda measures the GPU.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-auto}
threads=()
if [[ -n "${THREADS:-}" ]]; then threads=(--threads "$THREADS"); fi
tokenizer_device=$([[ "$DEVICE" == auto ]] && echo all || echo "$DEVICE")

"$PYTHON" tokenizer_speed.py --device "$tokenizer_device" "${threads[@]}"
"$PYTHON" transformer_speed.py --size b --batch 1 --device "$DEVICE" "${threads[@]}"
"$PYTHON" decode_speed.py --size small --device "$DEVICE" "${threads[@]}"
"$PYTHON" task_speed.py --device "$DEVICE" "${threads[@]}"
