"""Wall time of COMMIT decoding vs an autoregressive baseline on the same machine.

COMMIT: 12 parallel steps over the full 1026-token sequence (spec §8).
Autoregressive: the same transformer (same size and weights) run causally with a
key/value cache, one token per step, 1024 sequential steps — the baseline of the
paper's Tab. 6 and its "60× faster than autoregressive" claim (abstract, §4.3).

Also the overhead of the decoding loop: a decoding step's time / one bare forward pass (measured
interleaved); the sampling, confidence and re-masking around the forward pass should cost little.

    python benchmarks/decode_speed.py --size small          # a quick check
    python benchmarks/decode_speed.py --size b --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics

import torch
import torch.nn.functional as F

from common import TRANSFORMER_SIZES as SIZES, PeakMemory, compiled, print_table, setup, timed, write_json
from magvit_cli.decoding import autocast_dtype, decode
from magvit_cli.tasks import prefix_tokens
from magvit_cli.transformer import Transformer

PAPER_SPEEDUP = 60


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

    slots = torch.arange(total, device=prefix.device)

    def forward(tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Logits of the last position after appending `tokens` at positions start..."""
        length = tokens.shape[1]
        end = start + length
        positions = torch.arange(start, end, device=tokens.device)
        # Every step attends over the whole static cache, masked to the positions written so far
        # (causal within the prefix pass): shapes stay the same from step to step, so no attention
        # kernel plans a new shape at each of the N steps (cuDNN's bf16 attention on CUDA does).
        visible = slots <= positions[:, None]
        x = model.embeddings_ln(model.word_embeddings(tokens) + model.position_embeddings(positions))
        for layer, (keys, values) in zip(model.layers, cache):
            attention = layer.attention
            q, k, v = (proj(x).view(batch, length, heads, head_dim).transpose(1, 2)
                       for proj in (attention.query, attention.key, attention.value))
            keys[:, :, start:end], values[:, :, start:end] = k, v
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible)
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


def measured(device: torch.device, fn) -> tuple[float, float | None]:
    """(seconds, peak MiB) of one call of `fn`."""
    with PeakMemory(device) as memory:
        seconds = timed(fn, device, warmup=0, iters=1)
    return seconds, memory.mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16 (autocast)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12, help="COMMIT decoding steps")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer for COMMIT and the bare forward pass (the "
                             "autoregressive loop stays eager: its growing cache would recompile at every length)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/decode_speed-<device>.json)")
    args = parser.parse_args()

    device = setup(args.device, args.threads)
    config = dataclasses.replace(SIZES[args.size], codebook_size=1024, num_classes=0, multi_task=True,
                                 latent_shape=(4, 16, 16), dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = Transformer(config).to(device).eval()
    net = compiled(model) if args.compile else model
    amp = autocast_dtype(device, args.dtype)
    autocast = (torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext())
    prefix = prefix_tokens(config, "frame_prediction", batch_size=args.batch).to(device)
    cond_tokens = torch.zeros(args.batch, config.num_latents, dtype=torch.long, device=device)
    cond_mask = torch.zeros(args.batch, config.num_latents, dtype=torch.bool, device=device)
    generator = torch.Generator(device).manual_seed(0)

    def commit(steps=args.steps):
        decode(net, prefix, cond_tokens, cond_mask, steps=steps, generator=generator, dtype=args.dtype)

    def ar(count=None):
        with autocast:
            autoregressive(model, prefix, generator, dtype=amp or torch.float32, count=count)

    def forward():
        with torch.inference_mode(), autocast:
            net(torch.cat([prefix, cond_tokens], dim=1))

    tokens = args.batch * config.num_latents
    params = sum(p.numel() for p in model.parameters())
    print(f"device {device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else f"device {device}")
    print(f"model  {args.size}: {params / 1e6:.1f} M parameters, sequence {config.seq_length}, "
          f"batch {args.batch}, autocast {amp or 'off (float32)'}", flush=True)
    commit(steps=1)  # warm-up: kernels, allocator, thread pools (and compilation)
    forward()
    ar(count=8)
    # Loop overhead: two decoding steps against two bare forward passes, interleaved so that a
    # shared machine's load changes hit both alike.
    pairs = [(timed(lambda: commit(steps=2), device, 0, 1), timed(lambda: (forward(), forward()), device, 0, 1))
             for _ in range(3)]
    overhead = statistics.median(c for c, _ in pairs) / statistics.median(f for _, f in pairs)
    forward_s = statistics.median(f for _, f in pairs) / 2
    commit_s, commit_mem = measured(device, commit)
    print(f"COMMIT: {commit_s:.2f} s; a decoding step costs {overhead:.2f} bare forward passes", flush=True)
    ar_s, ar_mem = measured(device, ar)
    rows = [
        {"method": "COMMIT", "mode": "compiled" if args.compile else "eager", "steps": args.steps, "seconds": round(commit_s, 3), "tokens_per_s": round(tokens / commit_s),
         "x_forward_passes": round(commit_s / forward_s, 2), "peak_mib": commit_mem and round(commit_mem)},
        {"method": "autoregressive", "mode": "eager", "steps": config.num_latents, "seconds": round(ar_s, 3),
         "tokens_per_s": round(tokens / ar_s), "x_forward_passes": round(ar_s / forward_s, 2),
         "peak_mib": ar_mem and round(ar_mem)},
    ]
    print_table(rows, f"\ndecoding one batch of {args.batch} (one forward pass: {forward_s:.3f} s)")
    print(f"speed-up of COMMIT: {ar_s / commit_s:.1f}x (paper: {PAPER_SPEEDUP}x vs the autoregressive TATS); "
          f"a decoding step costs {overhead:.2f} bare forward passes")
    print("peak MiB: CUDA allocator peak, or the process's peak resident set on CPU")
    write_json("decode_speed", rows, device, args.out, size=args.size, batch=args.batch, parameters=params,
               autocast=str(amp), forward_seconds=round(forward_s, 4),
               step_over_forward_pass=round(overhead, 3),
               commit_speedup_over_autoregressive=round(ar_s / commit_s, 2))

if __name__ == "__main__":
    main()
