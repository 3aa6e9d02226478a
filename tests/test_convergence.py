"""Both stages actually learn (issue #6's bar), on a CPU in a few minutes: the tokenizer's
reconstruction PSNR on its training clips rises far above where it starts, and the
transformer trained on it lowers its masked-token loss until frame prediction beats
copying the last known frame on those clips.

The clips are textures sliding 3 pixels per frame, where copying the last frame is a
poor guess. Slow (about 5 minutes on 2 cores, 10 with other work running): run with
`pytest -m slow tests/test_convergence.py`."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from magvit_cli import train, train_config

from conftest import write_clip

pytestmark = pytest.mark.slow

TOKENIZER = ["num_frames=8", "resolution=32,32", "tokenizer.channel_multipliers=1,1,1",
             "tokenizer.temporal_downsample=true,true", "tokenizer.embedding_dim=16", "tokenizer.codebook_size=64",
             "adversarial_weight=0", "r1_weight=0", "batch_size=4", "lr=1e-3", "beta1=0.9", "warmup_steps=10",
             "ema_decay=0.9", "num_workers=0", "log_every=10", "save_every=0", "preview_every=0", "steps=400"]
TRANSFORMER = ["num_workers=0", "transformer.hidden_size=64", "transformer.num_layers=2", "transformer.num_heads=2",
               "transformer.mlp_dim=256", "transformer.dropout=0.0", "tasks=frame_prediction", "batch_size=4",
               "lr=1e-3", "warmup_steps=10", "log_every=10", "save_every=0", "preview_every=0", "steps=300"]


def sliding_texture(seed: int, frames: int = 16, size: int = 32, speed: int = 3) -> np.ndarray:
    """uint8 [T, H, W, 3]: a smooth random colour texture moving left by `speed` px per frame."""
    coarse = torch.rand(1, 3, size // 4, size, generator=torch.Generator().manual_seed(seed))
    texture = F.interpolate(coarse, size=(size, 4 * size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    clip = torch.stack([texture[:, :, speed * t:speed * t + size] for t in range(frames)])  # [T, 3, H, W]
    return (clip.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def test_both_stages_learn_and_prediction_beats_copying_the_last_frame(tmp_path):
    data = tmp_path / "clips"
    for i in range(4):
        write_clip(data / "slide" / f"clip{i}.mp4", sliding_texture(i))

    tokenizer_config = train_config.apply_overrides(train_config.preset("tokenizer", "tiny"), TOKENIZER)
    tokenizer = train.train_tokenizer(tokenizer_config, data, tmp_path / "tokenizer", quiet=True)
    print("tokenizer", {k: tokenizer[k] for k in ("psnr_start", "psnr_end_raw", "psnr_end", "seconds")})
    assert tokenizer["psnr_end"] > tokenizer["psnr_start"] + 8  # measured: 6.2 dB -> 17.0 dB in 400 steps

    transformer_config = train_config.apply_overrides(train_config.preset("transformer", "tiny"), TRANSFORMER)
    transformer = train.train_transformer(transformer_config, data, tmp_path / "tokenizer", tmp_path / "model",
                                          quiet=True)
    print("transformer", {k: transformer[k] for k in ("eval_loss_start", "eval_loss_end", "frame_prediction_psnr",
                                                      "copy_last_frame_psnr", "seconds")})
    assert transformer["eval_loss_end"] < transformer["eval_loss_start"] / 2  # measured: 4.18 -> 1.75
    # Measured: 12.7 dB against 10.5 dB (the tokenizer's own round trip caps it at 17 dB).
    assert transformer["frame_prediction_psnr"] > transformer["copy_last_frame_psnr"] + 1
