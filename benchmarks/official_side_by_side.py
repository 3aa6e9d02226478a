"""The official MAGVIT code (JAX/Flax) and this port, timed side by side on this CPU.

MAGVIT-B in the UCF-101 "B" layout, random weights, batch 1, 16 x 128², class-conditional
generation with 12 steps and no guidance. The two sides run as separate processes, alternating
(official, port, official, port, ...), for `--pairs` pairs in one sitting; each process times
every operation after a warm-up and reports the median of its calls. Per operation the result
gives each side's median and range over the pairs and the ratio official / port of each pair
(median and range): a shared machine's load moves both sides of a pair alike, so the ratio is
steadier than either time.

Operations (the official side is ../shared/reference/official-speed/speed_official.py; its
docstring names the official functions):
  tokenizer encode     16 x 128² video -> 4 x 16 x 16 ids     official VQVAE.encode_to_indices
  tokenizer decode     ids -> video                           official VQVAE.decode_from_indices
  transformer forward  1,025 tokens (class + 1,024 latents)   official Bert.apply
  COMMIT loop          12 steps, cosine schedule              official fast_decode
  whole generation     12 steps + detokenize                  official generate_step
The port times Magvit.encode, Magvit.decode, the transformer's forward pass, decoding.decode
and Magvit.run_task("full_generation"): the calls a user of the package makes. The port runs twice per process:
in float32 and with its defaults (`--dtype auto`: bfloat16 autocast of the transformer and the
tokenizer's convolutions on CPUs with native bf16, float32 elsewhere). Compile time is excluded on both sides and reported apart: the
official side's jit lower + compile, the port's first call of each operation (the port has no
compile step). The port warms up the loop and the generation with a 1-step decode (the same
kernels as the forward pass) instead of a full extra call, which would add a minute per process.

Set-up of the official side: ../shared/reference/official-speed/README.md (the two sources, and
a virtual environment from its requirements-ref.txt). Then, from the repository root:

    python benchmarks/official_side_by_side.py --ref-venv /work/refvenv \\
        --magvit-ref /work/ref/magvit-ref --scenic-ref /work/ref/scenic-ref       # 3 pairs
    python benchmarks/official_side_by_side.py --sides port --pairs 1 --repeats 1  # the port alone

Every core is used by default (JAX always uses them all; `--threads` sets the port's). The CPU
model, its flags and the load average before and after each process are in the JSON
(benchmarks/results/official_side_by_side-cpu.json), which is rewritten after every process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_common import cpu, load, spread, stamp, torch_environment, ucf_b

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
OFFICIAL_DIR = ROOT.parent / "shared" / "reference" / "official-speed"

# operation -> the official script's timing name
OPERATIONS = {
    "tokenizer_encode": "tokenizer_encode_to_indices",
    "tokenizer_decode": "tokenizer_decode_from_indices",
    "transformer_forward": "transformer_forward",
    "commit_loop_12_steps": "transformer_fast_decode_12_steps",
    "whole_generation": "generate_step_decode12_plus_detokenize",
}
TITLES = {"tokenizer_encode": "tokenizer encode", "tokenizer_decode": "tokenizer decode",
          "transformer_forward": "transformer forward (1,025 tokens)", "commit_loop_12_steps": "12-step COMMIT loop",
          "whole_generation": "whole generation (loop + detokenize)"}
PORT_DTYPES = {"fp32": "float32", "default": "auto"}
LABEL = 7  # the class the official script generates


# --------------------------------------------------------------------------- the port's side


def port_side(args) -> dict:
    """One port process: every operation in float32 and with the defaults, as JSON."""
    import torch

    from magvit_cli import DecodeOptions, decoding, tasks

    if args.threads:
        torch.set_num_threads(args.threads)
    model = ucf_b()
    config = model.config.transformer
    result = {"environment": {**torch_environment(), **stamp()}, "timings": {}}

    def bench(name: str, fn, warmup: int, repeats: int):
        first = None
        for _ in range(warmup):
            start = time.perf_counter()
            out = fn()
            first = first if first is not None else time.perf_counter() - start
        before, times = load(), []
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
            print(f"  port {name}: {times[-1]:.3f} s", file=sys.stderr, flush=True)
        result["timings"][name] = {"median_s": spread(times)["median"], "min_s": round(min(times), 4),
                                   "max_s": round(max(times), 4), "all_s": [round(t, 4) for t in times],
                                   "first_call_s": None if first is None else round(first, 3),
                                   "repeats": repeats, "load_before": before, "load_after": load()}
        return out

    video = torch.rand(1, 3, model.config.num_frames, *model.config.resolution, generator=torch.Generator().manual_seed(1234))
    codes = model.encode(video, "float32")

    labels = torch.full((1,), LABEL)
    prefix = tasks.prefix_tokens(config, "full_generation", labels)
    # The official forward's input: the class token and the latents with half of them masked.
    canvas = codes.reshape(1, -1).clone()
    canvas[:, torch.randperm(canvas.shape[1], generator=torch.Generator().manual_seed(42))[:canvas.shape[1] // 2]] = \
        config.mask_token
    tokens = torch.cat([prefix, canvas], dim=1)
    empty = torch.zeros(1, config.num_latents, dtype=torch.long)
    unconditioned = torch.zeros(1, config.num_latents, dtype=torch.bool)
    for side, option in PORT_DTYPES.items():
        amp = decoding.autocast_dtype("cpu", option)
        result["environment"][f"autocast_{side}"] = str(amp or torch.float32)
        bench(f"tokenizer_encode_{side}", lambda: model.encode(video, option), 1, args.repeats)
        bench(f"tokenizer_decode_{side}", lambda: model.decode(codes, option), 1, args.repeats)

        def forward():
            with torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                return model.transformer(tokens)

        def loop(steps=12):
            return decoding.decode(model.transformer, prefix, empty, unconditioned, steps=steps,
                                   generator=torch.Generator().manual_seed(7), dtype=option)

        bench(f"transformer_forward_{side}", forward, 1, args.repeats)
        loop(steps=1)  # warm-up of the sampling around the (already warm) forward pass
        bench(f"commit_loop_12_steps_{side}", loop, 0, args.decode_repeats)
        options = DecodeOptions(steps=12, guidance=0.0, seed=7, dtype=option)
        bench(f"whole_generation_{side}", lambda: model.run_task("full_generation", None, labels, options), 0,
              args.decode_repeats)
    return result


# --------------------------------------------------------------------------- the two sides as processes


def run_process(command: list[str], env: dict, cwd: Path, timeout: float, log) -> tuple[float, dict]:
    before, start = stamp(), time.perf_counter()
    log.write(f"\n$ {' '.join(command)}\n")
    log.flush()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"{command[1]} exited with code {done.returncode}; see {log.name}")
    return time.perf_counter() - start, {"started": before, "finished": stamp()}


def official(args, work: Path, log) -> dict:
    out = work / "official.json"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}
    for name, path in (("MAGVIT_REF", args.magvit_ref), ("SCENIC_REF", args.scenic_ref)):
        if path:
            env[name] = str(Path(path).resolve())
    command = [str(Path(args.ref_venv) / "bin" / "python"), str(Path(args.official_dir) / "speed_official.py"),
               "tokenizer", "transformer", "--repeats", str(args.repeats), "--decode-repeats",
               str(args.decode_repeats), "--generate-step", "--out", str(out)]
    wall, when = run_process(command, env, work, args.timeout, log)
    raw = json.loads(out.read_text())
    timings = raw["timings"]
    ops = {op: timings[name]["median_s"] for op, name in OPERATIONS.items()}
    compile_s = {op: timings[name]["lower_plus_compile_s"] for op, name in OPERATIONS.items()}
    return {"seconds": ops, "compile_s": compile_s, "process_wall_s": round(wall, 1), **when,
            "environment": raw["environment"], "raw_timings": timings}


def port(args, work: Path, log) -> dict:
    out = work / "port.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--repeats", str(args.repeats),
               "--decode-repeats", str(args.decode_repeats), "--out", str(out)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    wall, when = run_process(command, dict(os.environ), ROOT, args.timeout, log)
    raw = json.loads(out.read_text())
    timings = raw["timings"]
    sides = {}
    for side in PORT_DTYPES:
        names = {op: f"{op}_{side}" for op in OPERATIONS}
        sides[side] = {"seconds": {op: timings[name]["median_s"] for op, name in names.items()},
                       "first_call_s": {op: timings[name]["first_call_s"] for op, name in names.items()}}
    return {**sides, "process_wall_s": round(wall, 1), **when, "environment": raw["environment"],
            "raw_timings": timings}


# --------------------------------------------------------------------------- summary


def summarise(pairs: list[dict]) -> dict:
    """Per operation: each side's median and range over the pairs, and official / port per pair."""
    summary = {}
    for op in OPERATIONS:
        row = {}
        official_s = [p["official"]["seconds"][op] for p in pairs if "official" in p]
        if official_s:
            row["official_s"] = spread(official_s, 3)
        for side in PORT_DTYPES:
            port_s = [p["port"][side]["seconds"][op] for p in pairs if "port" in p]
            if port_s:
                row[f"port_{side}_s"] = spread(port_s, 3)
            ratios = [p["official"]["seconds"][op] / p["port"][side]["seconds"][op]
                      for p in pairs if "official" in p and "port" in p]
            if ratios:
                row[f"official_over_port_{side}"] = spread(ratios, 3)
        summary[op] = row
    return summary


def compile_summary(pairs: list[dict]) -> dict:
    out = {}
    official_runs = [p["official"] for p in pairs if "official" in p]
    if official_runs:
        out["official_lower_plus_compile_s"] = {op: spread([r["compile_s"][op] for r in official_runs], 1)
                                                for op in OPERATIONS}
        out["official_process_wall_s"] = spread([r["process_wall_s"] for r in official_runs], 1)
    port_runs = [p["port"] for p in pairs if "port" in p]
    if port_runs:
        for side in PORT_DTYPES:
            out[f"port_{side}_first_call_s"] = {
                op: spread([r[side]["first_call_s"][op] for r in port_runs], 2)
                for op in OPERATIONS if port_runs[0][side]["first_call_s"][op] is not None}
        out["port_process_wall_s"] = spread([r["process_wall_s"] for r in port_runs], 1)
    return out


def cell(stats: dict | None, unit: str = "") -> str:
    if not stats:
        return "-"
    if stats["n"] == 1:
        return f"{stats['median']:.3g}{unit}"
    return f"{stats['median']:.3g}{unit} [{stats['min']:.3g}–{stats['max']:.3g}]"


def markdown(summary: dict) -> str:
    lines = ["| operation | official JAX, s | port fp32, s | official ÷ port fp32 | port defaults, s | "
             "official ÷ port defaults |", "|---|---:|---:|---:|---:|---:|"]
    for op, row in summary.items():
        lines.append(f"| {TITLES[op]} | {cell(row.get('official_s'))} | {cell(row.get('port_fp32_s'))} | "
                     f"{cell(row.get('official_over_port_fp32'), '×')} | {cell(row.get('port_default_s'))} | "
                     f"{cell(row.get('official_over_port_default'), '×')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="official + port processes, alternating (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls per process of encode, decode and the forward pass (default 3)")
    parser.add_argument("--decode-repeats", type=int, default=1,
                        help="timed calls per process of the 12-step loop and the whole generation (default 1)")
    parser.add_argument("--sides", nargs="+", choices=["official", "port"], default=["official", "port"])
    parser.add_argument("--threads", type=int, help="the port's CPU threads (default: one per core, as JAX)")
    parser.add_argument("--official-dir", default=str(OFFICIAL_DIR), help="folder of speed_official.py")
    parser.add_argument("--ref-venv", default=os.environ.get("REF_VENV", ""),
                        help="virtual environment of the official code (default $REF_VENV)")
    parser.add_argument("--magvit-ref", help="official MAGVIT checkout (default $MAGVIT_REF, or magvit-ref "
                                             "beside speed_official.py)")
    parser.add_argument("--scenic-ref", help="Scenic checkout (default $SCENIC_REF, or scenic-ref beside it)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per process")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/official_side_by_side-cpu.json)")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "official_side_by_side.log"),
                        help="both sides' output (default in the temporary folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one port process
    args = parser.parse_args()
    args.threads = args.threads or (None if args.worker else len(os.sched_getaffinity(0)))

    if args.worker:
        Path(args.out).write_text(json.dumps(port_side(args), indent=2) + "\n")
        return
    if "official" in args.sides:
        python = Path(args.ref_venv or "-") / "bin" / "python"
        if not python.exists():
            parser.error("--ref-venv (or $REF_VENV): the official code's virtual environment is needed "
                         f"({python} does not exist); see {Path(args.official_dir) / 'README.md'}")
        if not (Path(args.official_dir) / "speed_official.py").exists():
            parser.error(f"{args.official_dir} has no speed_official.py")

    path = Path(args.out) if args.out else RESULTS / "official_side_by_side-cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "official_side_by_side", "machine": cpu(), "started": stamp(),
              "settings": {"model": "MAGVIT-B, UCF-101 B layout, random weights", "batch": 1,
                           "clip": "16x128x128", "steps": 12, "guidance": 0, "pairs": args.pairs,
                           "repeats": args.repeats, "decode_repeats": args.decode_repeats,
                           "port_threads": args.threads, "official_threads": "all (XLA default)",
                           "port_dtypes": PORT_DTYPES},
              "pairs": []}
    with tempfile.TemporaryDirectory() as tmp, open(args.log, "w") as log:
        print(f"{record['machine']}; log in {log.name}", flush=True)
        for i in range(args.pairs):
            pair = {}
            record["pairs"].append(pair)
            for side in args.sides:
                print(f"pair {i + 1}/{args.pairs}: {side} (load {load()})", flush=True)
                pair[side] = (official if side == "official" else port)(args, Path(tmp), log)
                print(f"  {side}: " + ", ".join(f"{op} {s:.2f} s" for op, s in
                                                (pair[side]["seconds"] if side == "official"
                                                 else pair[side]["fp32"]["seconds"]).items()), flush=True)
                record["summary"] = summarise(record["pairs"])
                record["compile"] = compile_summary(record["pairs"])
                record["finished"] = stamp()
                path.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print(markdown(record["summary"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
