"""Helpers of the CPU comparisons (official_side_by_side.py, cpu_levers.py): what the CPU is and how
busy it was, the MAGVIT-B UCF layout with random weights, and median / range summaries.

Importing this module does not import torch: the parent process of the side-by-side benchmark
only starts the two sides and reads their JSON.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

# The CPU features that decide which kernels run: AVX2 / AVX-512 for float32, AVX512-BF16 and
# AMX for native bfloat16 (PyTorch's "auto" dtype picks bf16 only with one of them), VNNI for int8.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu() -> dict:
    """CPU model, core counts and the flags above, from /proc/cpuinfo."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "flags": {name: name in flags for name in FLAGS}}


def load() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def stamp() -> dict:
    """When and under what load a number was taken."""
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": load()}


def torch_environment() -> dict:
    import torch

    from magvit_cli import decoding

    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "auto_dtype": str(decoding.autocast_dtype("cpu", "auto") or torch.float32)}


def spread(values: list[float], digits: int = 4) -> dict:
    """Median and range."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def ucf_b(seed: int = 0):
    """MAGVIT-B in the official UCF-101 layout with random weights, in eval mode: the ucf-b tokenizer
    preset (16 x 128² -> 4 x 16 x 16 ids, codebook 1024) and the B transformer of the ucf-b
    transformer preset (class-conditional full generation, 101 classes, 1 + 1024 tokens)."""
    import dataclasses

    import torch

    from magvit_cli.model import Magvit, ModelConfig

    from magvit_cli.train_config import preset

    tokenizer, transformer = preset("tokenizer", "ucf-b"), preset("transformer", "ucf-b")
    layout = ModelConfig(tokenizer=tokenizer.tokenizer, num_frames=16, resolution=tokenizer.resolution)
    config = ModelConfig(
        tokenizer=tokenizer.tokenizer, num_frames=16, resolution=tokenizer.resolution, tasks=list(transformer.tasks),
        transformer=dataclasses.replace(transformer.transformer, codebook_size=tokenizer.tokenizer.codebook_size,
                                        num_classes=101, multi_task=len(transformer.tasks) > 1,
                                        latent_shape=layout.latent_shape))
    config.check()
    torch.manual_seed(seed)
    return Magvit(config).eval().requires_grad_(False)
