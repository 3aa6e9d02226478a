"""End-to-end task speed: seconds per clip and per output frame for each task family, peak
memory, and where the time goes (tokenizer encode, COMMIT decoding, tokenizer decode).

One model window per call (`Magvit.run_task`): the condition clip is tokenized, 12 COMMIT steps
run, the tokens are decoded. Output frames are the new frames only: T - 1 for FP, T - 2 for FI,
all T for outpainting, inpainting and class-conditional generation.

    python benchmarks/task_speed.py                        # the bundled model, or a tiny random one
    python benchmarks/task_speed.py --preset bair --threads 1   # MAGVIT-B at 16x64x64 (minutes on a CPU)
    python benchmarks/task_speed.py --model path/or/hub-id --device cuda
"""

from __future__ import annotations

import argparse

import torch

from common import TINY_TOKENIZER, TRANSFORMER_SIZES, PeakMemory, compiled, device_name, print_table, setup, timed, \
    write_json
from magvit_cli import decoding, tasks
from magvit_cli.decoding import DecodeOptions
from magvit_cli.model import Magvit, ModelConfig
from magvit_cli.tokenizer import TOKENIZER_PRESETS, TokenizerConfig
from magvit_cli.transformer import TRANSFORMER_PRESETS, TransformerConfig

FAMILIES = {  # family: (task, new frames out of T)
    "FP": ("frame_prediction", lambda t: t - 1),
    "FI": ("frame_interpolation", lambda t: t - 2),
    "OP": ("outpainting_c", lambda t: t),
    "IP": ("inpainting_c", lambda t: t),
    "CG": ("full_generation", lambda t: t),
}
PRESETS = {  # name: (tokenizer, transformer size, resolution)
    "tiny": (TINY_TOKENIZER, TRANSFORMER_SIZES["tiny"], (32, 32)),
    "bair": (TOKENIZER_PRESETS["bair-b"], TRANSFORMER_PRESETS["b"], (64, 64)),
    "ucf": (TOKENIZER_PRESETS["ucf-b"], TRANSFORMER_PRESETS["b"], (128, 128)),
}


def random_model(preset: str) -> Magvit:
    tokenizer, size, resolution = PRESETS[preset]
    model = with_random_transformer(tokenizer, size, resolution)
    model.source = f"random {preset}"
    return model


def with_random_transformer(tokenizer: TokenizerConfig, size: TransformerConfig,
                            resolution: tuple[int, int]) -> Magvit:
    """A model of 16-frame clips at `resolution` with a transformer of `size` on the tokenizer's
    grid, every task and 101 classes, random weights (seed 0): its speed is the trained one's."""
    config = ModelConfig(tokenizer=tokenizer, transformer=None, num_frames=16, resolution=resolution,
                         tasks=list(tasks.TASKS), class_names=[f"class_{i}" for i in range(101)])
    config.transformer = TransformerConfig(
        codebook_size=tokenizer.codebook_size, num_classes=101, multi_task=True, latent_shape=config.latent_shape,
        hidden_size=size.hidden_size, num_layers=size.num_layers, num_heads=size.num_heads, mlp_dim=size.mlp_dim,
        dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    return Magvit(config).eval().requires_grad_(False)


def load(model_id: str | None, preset: str | None) -> Magvit:
    if preset:
        return random_model(preset)
    from magvit_cli.checkpoint import load_model
    from magvit_cli.errors import ModelError

    try:
        return load_model(model_id)
    except ModelError as error:
        if model_id is not None:
            raise
        print(f"no bundled model ({error}); using a tiny random one")
        return random_model("tiny")


def compile_model(model: Magvit) -> None:
    """torch.compile the transformer and the tokenizer's encoder and decoder in place (fixed shapes:
    a batch size of its own compiles anew)."""
    model.transformer = compiled(model.transformer)
    model.tokenizer.encoder = compiled(model.tokenizer.encoder)
    model.tokenizer.decoder = compiled(model.tokenizer.decoder)


def measure(model: Magvit, families: list[str], batch: int, dtype: str, mode: str, iters: int,
            device: torch.device) -> list[dict]:
    """Rows of one (batch, dtype, mode): per family seconds per clip and per new frame, with the
    stage times (tokenizer encode, COMMIT, tokenizer decode) of one batch."""
    config = model.config
    T = config.num_frames
    options = DecodeOptions(seed=0, dtype=dtype)
    video = torch.rand(batch, 3, T, *config.resolution, device=device)
    labels = torch.zeros(batch, dtype=torch.long)
    warmup = 1 if device.type == "cuda" or mode == "compiled" else 0  # CUDA kernels tune on first use
    latent = config.latent_shape
    codes = torch.randint(0, config.tokenizer.codebook_size, (batch, *latent), device=device)
    encode_s = timed(lambda: model.encode(video), device, warmup=1, iters=iters)
    decode_s = timed(lambda: model.decode(codes), device, warmup=1, iters=iters)
    n = latent[0] * latent[1] * latent[2]
    prefix = tasks.prefix_tokens(config.transformer, "frame_prediction", batch_size=batch).to(device)
    commit_s = timed(lambda: decoding.decode(model.transformer, prefix, codes.view(batch, n),
                                             torch.zeros(batch, n, dtype=torch.bool, device=device),
                                             dtype=dtype), device, warmup=warmup, iters=iters)
    print(f"batch {batch}, {dtype}, {mode}: tokenizer encode {encode_s:.3f} s, COMMIT decoding {commit_s:.3f} s, "
          f"tokenizer decode {decode_s:.3f} s", flush=True)
    rows = []
    for family in families:
        task, new_frames = FAMILIES[family]
        clip = None if task == "full_generation" else video
        with PeakMemory(device) as memory:
            seconds = timed(lambda: model.run_task(task, clip, labels if task == "full_generation" else None,
                                                   options), device, warmup=warmup, iters=iters)
        frames = new_frames(T) * batch
        rows.append({"family": family, "task": task, "batch": batch, "dtype": dtype, "mode": mode,
                     "seconds_per_clip": round(seconds / batch, 4), "clips_per_s": round(batch / seconds, 3),
                     "output_frames": new_frames(T), "seconds_per_frame": round(seconds / frames, 5),
                     "frames_per_s": round(frames / seconds, 2), "peak_mib": memory.mib and round(memory.mib),
                     "encode_s": round(encode_s, 4), "commit_s": round(commit_s, 4), "decode_s": round(decode_s, 4)})
        print(f"  {family}: {seconds / batch:.3f} s per clip, {batch / seconds:.2f} clips/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="model folder or Hub id (default: the bundled model)")
    source.add_argument("--preset", choices=list(PRESETS), help="a random model of this layout instead")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="clips per call (several: a sweep)")
    parser.add_argument("--dtype", nargs="+", default=["auto"], help="transformer autocast: auto, float32 or bfloat16")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd models instead of eager ones")
    parser.add_argument("--iters", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/task_speed-<device>.json)")
    args = parser.parse_args()

    device = setup(args.device, args.threads)
    model = load(args.model, args.preset).to(device)
    model.force = True  # time every family, whatever the model was trained for
    mode = "compiled" if args.compile else "eager"
    if args.compile:
        compile_model(model)
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    print(f"{device_name(device)}; model {model.source}: {params / 1e6:.1f} M parameters, "
          f"clip {config.num_frames}x{config.resolution[0]}x{config.resolution[1]}", flush=True)
    rows = []
    for dtype in args.dtype:
        for batch in args.batch:
            rows += measure(model, args.families, batch, dtype, mode, args.iters, device)
            # Written after every setting, so a run stopped at a time limit keeps what it measured.
            write_json("task_speed", rows, device, args.out, model=model.source, parameters=params,
                       clip=[config.num_frames, *config.resolution])
    print_table(rows, f"\nend-to-end, one model window per clip ({model.source}, {device_name(device)})")


if __name__ == "__main__":
    main()
