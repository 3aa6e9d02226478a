"""Wall time of COMMIT decoding vs an autoregressive baseline on the same machine.

COMMIT: 12 parallel steps over the full 1026-token sequence (spec §8).
Autoregressive: the same transformer (same size and weights) run causally with a
key/value cache, one token per step, 1024 sequential steps — the baseline of the
paper's Tab. 6 and its "60× faster than autoregressive" claim (abstract, §4.3).

    python benchmarks/decode_speed.py --size small          # a quick check
    python benchmarks/decode_speed.py --size b --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import threading
import time

import torch
import torch.nn.functional as F

from magvit_cli.decoding import autocast_dtype, decode
from magvit_cli.tasks import prefix_tokens
from magvit_cli.transformer import TRANSFORMER_PRESETS, Transformer, TransformerConfig

SIZES = {
    "small": TransformerConfig(hidden_size=256, num_layers=4, num_heads=4, mlp_dim=1024),
    **TRANSFORMER_PRESETS,
}
PAPER_SPEEDUP = 60


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or resident set size on CPU (sampled)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@torch.inference_mode()
def autoregressive(model: Transformer, prefix: torch.Tensor, generator: torch.Generator,
                   dtype: torch.dtype = torch.float32, count: int | None = None) -> torch.Tensor:
    """Sample `count` (default N) codes one at a time with causal attention and a key/value cache."""
    config = model.config
    count = count or config.num_latents
    batch, num_prefix = prefix.shape
    heads, head_dim = config.num_heads, config.hidden_size // config.num_heads
    total = num_prefix + count
    cache = [(prefix.new_zeros(batch, heads, total, head_dim, dtype=dtype),
              prefix.new_zeros(batch, heads, total, head_dim, dtype=dtype)) for _ in model.layers]

    def forward(tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Logits of the last position after appending `tokens` at positions start..."""
        length = tokens.shape[1]
        end = start + length
        positions = torch.arange(start, end, device=tokens.device)
        x = model.embeddings_ln(model.word_embeddings(tokens) + model.position_embeddings(positions))
        for layer, (keys, values) in zip(model.layers, cache):
            attention = layer.attention
            q, k, v = (proj(x).view(batch, length, heads, head_dim).transpose(1, 2)
                       for proj in (attention.query, attention.key, attention.value))
            keys[:, :, start:end], values[:, :, start:end] = k, v
            # The prefix is filled in one causal pass (start = 0); later steps attend to the whole cache.
            y = F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end], is_causal=length > 1)
            x = layer.attention_ln(x + attention.out(y.transpose(1, 2).reshape(batch, length, -1)))
            x = layer.mlp_ln(x + layer.mlp_out(F.gelu(layer.mlp_in(x), approximate="tanh")))
        h = model.head_ln(F.gelu(model.head_dense(x[:, -1]), approximate="tanh"))
        return F.linear(h, model.word_embeddings.weight, model.head_bias)[:, :config.codebook_size].float()

    codes = torch.empty(batch, count, dtype=torch.long, device=prefix.device)
    logits = forward(prefix, 0)
    for i in range(count):
        u = torch.rand(logits.shape, generator=generator, device=generator.device).to(logits.device)
        codes[:, i] = torch.argmax(logits - torch.log(-torch.log(u.clamp_min(1e-20))), dim=-1)
        if i + 1 < count:
            logits = forward(codes[:, i:i + 1], num_prefix + i)
    return codes


def timed(device: torch.device, fn):
    if device.type == "cuda":
        torch.cuda.synchronize()
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, memory.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16 (autocast)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12, help="COMMIT decoding steps")
    args = parser.parse_args()

    device = torch.device(args.device)
    config = dataclasses.replace(SIZES[args.size], codebook_size=1024, num_classes=0, multi_task=True,
                                 latent_shape=(4, 16, 16), dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = Transformer(config).to(device).eval()
    amp = autocast_dtype(device, args.dtype)
    autocast = (torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext())
    prefix = prefix_tokens(config, "frame_prediction", batch_size=args.batch).to(device)
    cond_tokens = torch.zeros(args.batch, config.num_latents, dtype=torch.long, device=device)
    cond_mask = torch.zeros(args.batch, config.num_latents, dtype=torch.bool, device=device)
    generator = torch.Generator(device).manual_seed(0)

    def commit(steps=args.steps):
        decode(model, prefix, cond_tokens, cond_mask, steps=steps, generator=generator, dtype=args.dtype)

    def ar(count=None):
        with autocast:
            autoregressive(model, prefix, generator, dtype=amp or torch.float32, count=count)

    tokens = args.batch * config.num_latents
    params = sum(p.numel() for p in model.parameters())
    print(f"device {device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else f"device {device}")
    print(f"model  {args.size}: {params / 1e6:.1f} M parameters, sequence {config.seq_length}, "
          f"batch {args.batch}, autocast {amp or 'off (float32)'}")
    commit(steps=1)  # warm-up: kernels, allocator, thread pools
    ar(count=8)
    print(f"{'method':<16}{'steps':>7}{'seconds':>10}{'tokens/s':>11}{'peak MiB':>10}", flush=True)
    commit_s, commit_mem = timed(device, commit)
    print(f"{'COMMIT':<16}{args.steps:>7}{commit_s:>10.2f}{tokens / commit_s:>11.0f}{commit_mem / 2**20:>10.0f}",
          flush=True)
    ar_s, ar_mem = timed(device, ar)
    print(f"{'autoregressive':<16}{config.num_latents:>7}{ar_s:>10.2f}{tokens / ar_s:>11.0f}{ar_mem / 2**20:>10.0f}")
    print(f"speed-up of COMMIT: {ar_s / commit_s:.1f}x (paper: {PAPER_SPEEDUP}x vs the autoregressive TATS)")
    print("peak MiB: CUDA allocator peak, or the process's resident set size on CPU")


if __name__ == "__main__":
    main()
