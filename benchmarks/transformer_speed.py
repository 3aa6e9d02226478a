"""Transformer forward speed: tokens/s, model FLOPs utilisation (MFU) and peak memory.

One forward pass over the full 1026-token sequence of a multi-task model (4x16x16 latents),
as each COMMIT decoding step runs it, with random weights (speed does not depend on the
values). MFU = FLOPs of the pass (matmuls and attention, see `forward_flops`) / seconds / the
peak measured in the same dtype in the same run (see common.py).

    python benchmarks/transformer_speed.py                          # B size, CPU or CUDA
    python benchmarks/transformer_speed.py --size l --batch 1 8 --device cuda --compile
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from common import DTYPES, TRANSFORMER_SIZES as SIZES, PeakMemory, autocast, compiled, dense_peak, device_name, \
    print_table, setup, timed, utilisation, write_json
from magvit_cli.transformer import Transformer, TransformerConfig



def build(size: str, device: torch.device) -> Transformer:
    config = dataclasses.replace(SIZES[size], codebook_size=1024, num_classes=101, multi_task=True,
                                 latent_shape=(4, 16, 16), dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    return Transformer(config).to(device).eval().requires_grad_(False)


def forward_flops(config: TransformerConfig, batch: int) -> int:
    """Matmul FLOPs of one forward pass (a multiply-add counts 2): per token and layer the four
    attention projections, the MLP, and the attention scores and weighted sum over L keys;
    then the output head (dense + tied vocabulary projection)."""
    d, length = config.hidden_size, config.seq_length
    per_token_layer = 2 * (4 * d * d + 2 * d * config.mlp_dim) + 2 * 2 * length * d
    head = 2 * (d * d + d * config.vocab_size)
    return batch * length * (config.num_layers * per_token_layer + head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="b")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dtype", choices=list(DTYPES), nargs="+", default=["float32", "bfloat16"],
                        help="float32, or bfloat16 autocast (what decoding uses on GPUs and bf16-capable CPUs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/transformer_speed-<device>.json)")
    args = parser.parse_args()

    device = setup(args.device, args.threads)
    model = build(args.size, device)
    variants = [("eager", model)] + ([("compiled", compiled(model))] if args.compile else [])
    params = sum(p.numel() for p in model.parameters())
    print(f"{device_name(device)}; transformer {args.size}: {params / 1e6:.1f} M parameters, "
          f"sequence {model.config.seq_length}", flush=True)
    rows = []
    for dtype_name in args.dtype:
        dtype = DTYPES[dtype_name]
        measured = dense_peak(device, dtype)
        print(f"measured {dtype_name} peak: matmul {measured['matmul_gflops']}, convolution {measured['conv_gflops']} "
              "GFLOP/s", flush=True)
        for batch in args.batch:
            tokens = torch.randint(0, 1024, (batch, model.config.seq_length), device=device)
            for mode, net in variants:
                def forward():
                    with torch.inference_mode(), autocast(device, dtype):
                        return net(tokens)

                flops = forward_flops(model.config, batch)
                with PeakMemory(device) as memory:
                    seconds = timed(forward, device, warmup=2 if mode == "compiled" else 1, iters=args.iters)
                rows.append({
                    "size": args.size, "mode": mode, "dtype": dtype_name, "batch": batch,
                    "ms_per_forward": round(seconds * 1e3, 1),
                    "tokens_per_s": round(batch * model.config.seq_length / seconds),
                    "gflop_per_forward": round(flops / 1e9, 1),
                    "achieved_gflops": round(flops / seconds / 1e9, 1),
                    "matmul_gflops": measured["matmul_gflops"],
                    **utilisation(flops, seconds, measured),
                    "peak_mib": None if memory.mib is None else round(memory.mib),
                })
                row = rows[-1]
                print(f"  {mode} {dtype_name} batch {batch}: {row['ms_per_forward']} ms, "
                      f"{row['tokens_per_s']} tokens/s, MFU {row['mfu']}", flush=True)
    print_table(rows, "\ntransformer forward (one COMMIT step)")
    write_json("transformer_speed", rows, device, args.out, parameters=params)


if __name__ == "__main__":
    main()
