"""Before a run: how much memory and time it will take, and whether it fits.

`estimate_memory` is arithmetic on the sizes (model weights, the tokenizer's and the
transformer's largest activations, the source frames a job holds), checked against
measured peaks by benchmarks/long_video.py. `measure_speed` times one model window on
the device (used by --dry-run). `check_fits` refuses up front a run that cannot fit.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from . import decoding
from . import geometry as geo
from . import video as vio
from .errors import OutOfMemoryError
from .decoding import DecodeOptions
from .config import ModelConfig
from .model import Magvit

GIB = 1024 ** 3
RUNTIME_BYTES = 100 * 1024 ** 2  # buffers the first model call allocates (oneDNN, allocator caches)
MAX_AUTO_BATCH = {"cpu": 4, "cuda": 8}
FRAME_BUDGET = 512 * 1024 ** 2  # host memory for held source frames when picking the batch


def model_bytes(config: ModelConfig) -> int:
    """Weights of both stages (float32), from the config alone."""
    with torch.device("meta"):
        model = Magvit(config)
    return sum(p.numel() * 4 for p in model.parameters())


def activation_bytes(config: ModelConfig, batch: int, guidance: bool = False) -> int:
    """Peak working memory of one model call on `batch` windows (float32).

    Tokenizer: a few feature maps of its widest level alive at once (a residual block
    holds input, two convolutions and the normalised copy). Transformer: per layer the
    hidden states and MLP of every token plus the attention scores; decoding keeps
    logits, Gumbel noise and probabilities over the codebook for every latent. Measured
    on CPU (bair-b tokenizer + B transformer at 64x64, batch 1): 251 MiB, estimated 259."""
    tok = config.tokenizer
    T, (H, W) = config.num_frames, config.resolution
    levels = len(tok.channel_multipliers)
    widest = 0
    t, h, w = T, H, W
    for level, mult in enumerate(tok.channel_multipliers):
        widest = max(widest, tok.filters * mult * t * h * w)
        if level < levels - 1:
            h, w = h // 2, w // 2
            t = t // 2 if tok.temporal_downsample[level] else t
    tokenizer = 6 * widest
    transformer = 0
    if config.transformer is not None:
        tr = config.transformer
        L, D = tr.seq_length, tr.hidden_size
        per_pass = L * (6 * D + 2 * tr.mlp_dim) + tr.num_heads * L * L * 2 + L * tr.vocab_size
        transformer = per_pass * (2 if guidance else 1) + 4 * tr.num_latents * tr.codebook_size
    return batch * 4 * max(tokenizer, transformer) + RUNTIME_BYTES


def frame_bytes(source: tuple[int, int], canvas: tuple[int, int], held_frames: int) -> int:
    """Host memory for the frames a job holds (uint8) and one output frame's float work."""
    return held_frames * source[0] * source[1] * 3 + 12 * canvas[0] * canvas[1] * 3 * 4


def estimate_memory(job, config: ModelConfig, batch: int, device: torch.device, guidance: bool = False) -> dict:
    """Bytes the run adds to a process that holds the model already: `device` (CUDA
    activations; 0 on CPU) and `host` (frames, plus the activations on CPU); and the
    expected peaks of the whole process: `peak_host`, `peak_device`."""
    work = activation_bytes(config, batch, guidance)
    frames = frame_bytes(job.source.size, job.canvas, job.held_frames(batch))
    if device.type == "cuda":
        need = {"device": work, "host": frames}
        peak_device = model_bytes(config) + work
    else:
        need = {"device": 0, "host": work + frames}
        peak_device = 0
    return {**need, "peak_host": _rss() + need["host"], "peak_device": peak_device}


def auto_batch(job, config: ModelConfig, device: torch.device, guidance: bool = False) -> int:
    """Windows per model call when --batch is not given: the most (up to 4 on CPU, 8 on
    CUDA) whose estimate fits a quarter of the device's total memory (total, not free:
    the same machine always picks the same batch, so a seed gives the same output) and
    whose source frames stay within FRAME_BUDGET (large frames run one window at a time)."""
    budget = total_memory(device) / 4
    batch = 1
    for b in (2, 4, 8):
        if b > MAX_AUTO_BATCH.get(device.type, 1) or b > job.model_windows:
            break
        need = estimate_memory(job, config, b, device, guidance)
        if need["peak_device" if device.type == "cuda" else "peak_host"] > budget:
            break
        if frame_bytes(job.source.size, job.canvas, job.held_frames(b)) > FRAME_BUDGET:
            break
        batch = b
    return batch


def check_fits(need: dict, device: torch.device) -> None:
    """Refuse a run whose estimate exceeds what is free, before any work is done."""
    free_host = available_host_memory()
    if free_host is not None and need["host"] > free_host:
        raise OutOfMemoryError(f"this run needs about {need['host'] / GIB:.1f} GiB more memory but "
                               f"{free_host / GIB:.1f} GiB are available",
                               "use --batch 1, a smaller --window or a smaller input")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need["device"] > free:
            raise OutOfMemoryError(f"this run needs about {need['device'] / GIB:.1f} GiB more on {device} but "
                                   f"{free / GIB:.1f} GiB are free",
                                   "use --batch 1, a smaller --window, or --device cpu")


def total_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return _meminfo("MemTotal") or 8 * GIB


def available_host_memory() -> int | None:
    return _meminfo("MemAvailable")


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss() -> int:
    """Resident memory of this process now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure_speed(model: Magvit, batch: int, options: DecodeOptions) -> dict:
    """Seconds of one model call on `batch` windows on the model's device: the tokenizer's
    encode and decode timed once, one transformer pass timed after a warm-up and counted
    `steps` times (twice with guidance); on CUDA also the peak memory."""
    device = model.device
    config = model.config
    T, (H, W) = config.num_frames, config.resolution
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()

    with torch.inference_mode(), decoding.autocast(device, options.dtype):
        video = torch.zeros(batch, 3, T, H, W, device=device)
        start = clock()
        codes = model.tokenizer.encode(video)
        encoded = clock()
        model.tokenizer.decode(codes)
        decoded = clock()
        seconds_per_pass = 0.0
        if model.transformer is not None:
            tokens = torch.zeros(batch, config.transformer.seq_length, dtype=torch.long, device=device)
            model.transformer(tokens)
            before = clock()
            model.transformer(tokens)
            seconds_per_pass = clock() - before
    passes = options.steps * (2 if options.guidance > 0 else 1)
    result = {"seconds_per_call": (encoded - start) + (decoded - encoded) + passes * seconds_per_pass}
    if cuda:
        result["device_peak"] = torch.cuda.max_memory_allocated(device)
    return result


def measure_frame_io(size: tuple[int, int], canvas: tuple[int, int], model_size: tuple[int, int]) -> float:
    """Seconds per output frame spent outside the model: decoding a source frame, resampling
    it to the model's size and back, and encoding an output frame (H.264, 4 frames timed)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, *canvas, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.mp4"
        start = time.perf_counter()
        vio.write_video(path, iter(frames), 25)
        for _ in vio.iter_frames(path):
            pass
        io = (time.perf_counter() - start) / len(frames)
    view = geo.letterbox(size, model_size)
    sampler = geo.Sampler(view, size)
    source = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    start = time.perf_counter()
    image = sampler.to_model(source)
    geo.from_model(geo.letterbox(canvas, model_size), (0, 0, canvas[1], canvas[0]), image)
    return io + time.perf_counter() - start
