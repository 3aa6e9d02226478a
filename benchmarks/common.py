"""Helpers shared by the benchmark scripts: device, timing, peak memory, FLOPs, the measured
matmul peak (for model FLOPs utilisation), and the table / JSON output.

MFU here = achieved FLOP/s of the model / the FLOP/s of a large square matmul in the same dtype,
on the same device, in the same run (not a datasheet number; on a shared machine both move
together, so the ratio is steadier than either). The rows also give `mfu_vs_best`, against the
faster of that matmul and a large 3D convolution: on some CPUs (MKL's sgemm on AMD) the oneDNN
convolution kernels run well above the matmul, so a convolutional model can exceed "100%".
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from magvit_cli.tokenizer import TokenizerConfig
from magvit_cli.transformer import TRANSFORMER_PRESETS, TransformerConfig

RESULTS = Path(__file__).resolve().parent / "results"

# Layouts of the scripts' "tiny" and "small" settings: random models that make a dry run take
# seconds on a CPU (tiny is the test suite's model, tests/conftest.py).
TINY_TOKENIZER = TokenizerConfig(filters=32, channel_multipliers=(1, 1, 1), num_enc_res_blocks=1,
                                 num_dec_res_blocks=1, embedding_dim=16, codebook_size=32)
TRANSFORMER_SIZES = {"tiny": TransformerConfig(hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64),
                     "small": TransformerConfig(hidden_size=256, num_layers=4, num_heads=4, mlp_dim=1024),
                     **TRANSFORMER_PRESETS}


def setup(device_name: str, threads: int | None) -> torch.device:
    """The device to measure; `threads` limits CPU threads (on a busy shared machine one thread per
    free core avoids the spin-waiting that makes small operations many times slower)."""
    if threads:
        torch.set_num_threads(threads)
    return pick_device(device_name)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int = 1, iters: int = 3) -> float:
    """Median seconds per call of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class PeakMemory:
    """Peak memory of a block in MiB: the CUDA allocator's peak, or on the CPU the process's
    peak resident set (Linux VmHWM, reset at entry; it includes the ~0.5 GB of Python and PyTorch)."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, None

    def __enter__(self):
        sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        sync(self.device)
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            try:
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.mib = int(line.split()[1]) / 1024
            except OSError:
                pass


def _onednn_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call's matmuls and convolutions (a multiply-add counts 2), including the
    oneDNN convolutions the tokenizer calls directly on CPUs."""
    mapping = {torch.ops.aten.mkldnn_convolution: _onednn_conv_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, iters: int = 8) -> float:
    """FLOP/s of the best of `iters` square matmuls of `size` (default 4096 on GPUs, 2048 on CPUs)."""
    size = size or (4096 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return 2 * size**3 / _best_time(lambda: a @ b, device, iters)


def conv_peak(device: torch.device, dtype: torch.dtype, iters: int = 4) -> float:
    """FLOP/s of the best of `iters` large 3x3x3 convolutions (256 -> 256 channels)."""
    shape = (4, 256, 16, 32, 32) if device.type == "cuda" else (1, 256, 8, 32, 32)
    x = torch.randn(shape, device=device).to(dtype)
    w = torch.randn(256, 256, 3, 3, 3, device=device).to(dtype)
    flops = 2 * 256 * 27 * x.numel()
    with torch.inference_mode():
        return flops / _best_time(lambda: F.conv3d(x, w, padding=1), device, iters)


def dense_peak(device: torch.device, dtype: torch.dtype) -> dict:
    """Measured peaks: a large matmul (the MFU reference) and a large convolution."""
    matmul, conv = matmul_peak(device, dtype), conv_peak(device, dtype)
    return {"matmul": matmul, "best": max(matmul, conv),
            "matmul_gflops": round(matmul / 1e9, 1), "conv_gflops": round(conv / 1e9, 1)}


def utilisation(flops: float, seconds: float, measured: dict) -> dict:
    return {"mfu": round(flops / seconds / measured["matmul"], 3),
            "mfu_vs_best": round(flops / seconds / measured["best"], 3)}


def _best_time(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    fn()
    best = float("inf")
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def compiled(fn):
    """torch.compile with fixed shapes. COMPILE_BACKEND=eager (the CPU dry run of gpu_session.sh)
    traces without generating code, which checks the wiring in seconds instead of minutes."""
    return torch.compile(fn, dynamic=False, backend=os.environ.get("COMPILE_BACKEND", "inductor"))


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to `dtype`, or nothing for float32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def print_table(rows: list[dict], title: str) -> None:
    if not rows:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    print(title)
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in text:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)), flush=True)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_json(name: str, rows: list[dict], device: torch.device, out: str | None, **meta) -> Path:
    """Write rows and run metadata to `out` (default benchmarks/results/<name>-<cpu|cuda>.json)."""
    path = Path(out) if out else RESULTS / f"{name}-{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "device": device_name(device),
        "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **meta,
        "rows": rows,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path
