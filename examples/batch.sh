#!/usr/bin/env bash
# Run one magvit task over every video in a folder.
#
#   examples/batch.sh [--keep-going] [--torchrun N] [-o OUT_DIR] [--model M] [--seed N] FOLDER [TASK [OPTIONS...]]
#
# TASK and its OPTIONS default to "predict --frames 8". Each run prints its --json result as
# one line on stdout (so `> results.jsonl` collects them); progress goes to stderr. Outputs go
# next to each input (clip.mp4 -> clip.predict.mp4) or into OUT_DIR. The first failure stops
# the batch with that run's exit code; with --keep-going every video is tried and the script
# exits 1 at the end, listing the failures. Ctrl-C always stops. MAGVIT=/path/to/magvit runs
# another command than the `magvit` on the PATH.
#
# --torchrun N hands the whole folder to one `magvit TASK FOLDER --output-dir OUT_DIR` call
# under `torchrun --nproc-per-node N`: each process takes every N-th video on its own GPU (or
# CPU), outputs that exist are skipped (rerun to resume), failures are collected, and rank 0
# prints one JSON report for all videos. Without torchrun the same call is magvit's built-in
# batch mode: `magvit inpaint clips/ --output-dir out/ --json > report.json`.
set -euo pipefail

usage() {  # usage EXIT_CODE
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "$1"
}

keep_going=0
nproc=0
out_dir=""
shared=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep-going) keep_going=1; shift ;;
    --torchrun) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage 2; nproc="$2"; shift 2 ;;
    -o|--output) [[ $# -ge 2 ]] || usage 2; out_dir="$2"; shift 2 ;;
    --model|-m|--seed) [[ $# -ge 2 ]] || usage 2; shared+=("$1" "$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "batch.sh: unknown option $1" >&2; usage 2 ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || usage 2
folder="$1"
shift
[[ $# -gt 0 ]] || set -- predict --frames 8
task="$1"
shift
read -r -a magvit <<< "${MAGVIT:-magvit}"

[[ -d "$folder" ]] || { echo "batch.sh: $folder is not a folder" >&2; exit 2; }
[[ -z "$out_dir" ]] || mkdir -p "$out_dir"

if (( nproc > 0 )); then
  # One sharded call; torchrun exits non-zero if any video failed (the report says which).
  exec "${TORCHRUN:-torchrun}" --standalone --nproc-per-node "$nproc" --no-python "${magvit[@]}" \
    "$task" "$folder" "$@" --output-dir "${out_dir:-$folder}" --quiet --json ${shared[@]+"${shared[@]}"}
fi

shopt -s nullglob nocaseglob
videos=()
for file in "$folder"/*.{mp4,mov,mkv,webm,avi,mpg,mpeg,m4v,gif}; do
  [[ "$(basename "$file")" == *".$task."* ]] && continue  # an earlier run's output
  videos+=("$file")
done
shopt -u nocaseglob
[[ ${#videos[@]} -gt 0 ]] || { echo "batch.sh: no videos in $folder" >&2; exit 1; }

failed=()
index=0
for file in "${videos[@]}"; do
  index=$((index + 1))
  echo "[$index/${#videos[@]}] $task $file" >&2
  args=("$task" "$file" "$@" --quiet --json ${shared[@]+"${shared[@]}"})
  if [[ -n "$out_dir" ]]; then
    name="$(basename "$file")"
    suffix="${name##*.}"
    case "$(tr '[:upper:]' '[:lower:]' <<< "$suffix")" in
      mp4|mov|mkv|webm|avi|gif) ;;
      *) suffix=mp4 ;;  # magvit cannot write .mpg and the like
    esac
    args+=(--output "$out_dir/${name%.*}.$task.$suffix")
  fi

  status=0
  "${magvit[@]}" "${args[@]}" || status=$?
  if (( status == 130 || status == 143 )); then
    echo "batch.sh: interrupted at $file" >&2
    exit "$status"
  elif (( status != 0 )); then
    if (( ! keep_going )); then
      echo "batch.sh: $file failed (exit $status); stopping (--keep-going tries the rest)" >&2
      exit "$status"
    fi
    failed+=("$file (exit $status)")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "batch.sh: ${#failed[@]} of ${#videos[@]} failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "batch.sh: all ${#videos[@]} done" >&2
