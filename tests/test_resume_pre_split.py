"""Run folders written before train.py was split (tests/fixtures/pre-split-runs, made by
tests/fixtures/make_pre_split_runs.py with the code of commit 26bff0f; the tokenizer's large
tensors there are stripped to their means) still resume: the step counter continues from
the checkpoint, the old metrics stay and the new losses are finite."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from test_data import make_folder

OUT = Path(__file__).resolve().parent / "fixtures" / "pre-split-runs"
STEPS = 3  # steps of each stored run
MORE = 2  # steps the test adds
COMMON = ["num_workers=0", "log_every=1", "save_every=0", "preview_every=0", "warmup_steps=1", "lr=1e-3",
          "batch_size=2"]
TOKENIZER = ["num_frames=4", "resolution=16,16", "tokenizer.channel_multipliers=1,1",
             "tokenizer.temporal_downsample=true", "tokenizer.embedding_dim=8", "tokenizer.codebook_size=32",
             "discriminator_filters=4", "lecam_weight=0.1"]
TRANSFORMER = ["transformer.hidden_size=16", "transformer.num_layers=1", "transformer.num_heads=2",
               "transformer.mlp_dim=32", "tasks=frame_prediction,full_generation"]


# `settings` is the module holding preset/apply_overrides: magvit_cli.train before the
# split (when the fixture was made), magvit_cli.train_config after it.
def tokenizer_config(settings, steps: int = STEPS):
    return settings.apply_overrides(settings.preset("tokenizer", "tiny"), TOKENIZER + COMMON + [f"steps={steps}"])


def transformer_config(settings, steps: int = STEPS):
    return settings.apply_overrides(settings.preset("transformer", "tiny"), TRANSFORMER + COMMON + [f"steps={steps}"])


def random_tokenizer(folder: Path, config) -> Path:
    """The transformer runs' frozen tokenizer: seeded random weights in a model folder."""
    from magvit_cli.checkpoint import save_model
    from magvit_cli.model import Magvit, ModelConfig

    torch.manual_seed(0)
    return save_model(folder, Magvit(ModelConfig(tokenizer=config, num_frames=4, resolution=(16, 16))))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("videos"), count=4)


def _resumed(folder: Path, summary: dict) -> list[dict]:
    from magvit_cli import train

    log = [json.loads(line) for line in (folder / train.METRICS_FILE).read_text().splitlines()]
    assert summary["steps"] == STEPS + MORE
    assert [r["step"] for r in log] == list(range(1, STEPS + MORE + 1))  # the old lines kept, the new ones after
    assert torch.load(folder / train.STATE_FILE, weights_only=True)["step"] == STEPS + MORE
    new = log[STEPS:]
    assert all(math.isfinite(v) for r in new for v in r.values())
    return new


def test_pre_split_runs_resume(videos, tmp_path):
    from magvit_cli import train, train_config
    from magvit_cli.checkpoint import load_model

    shutil.copytree(OUT, tmp_path / "runs")
    tokenizer_run, transformer_run = tmp_path / "runs" / "tokenizer", tmp_path / "runs" / "transformer"
    for run in (tokenizer_run, transformer_run):
        assert torch.load(run / train.STATE_FILE, weights_only=True)["step"] == STEPS

    summary = train.train_tokenizer(tokenizer_config(train_config, STEPS + MORE), videos, tokenizer_run,
                                    resume=True, quiet=True)
    new = _resumed(tokenizer_run, summary)
    assert {"g_loss", "d_loss", "reconstruction", "lecam"} <= set(new[0])
    assert load_model(tokenizer_run).transformer is None

    tokenizer = random_tokenizer(tmp_path / "frozen", tokenizer_config(train_config).tokenizer)
    summary = train.train_transformer(transformer_config(train_config, STEPS + MORE), videos, tokenizer,
                                      transformer_run, resume=True, quiet=True)
    new = _resumed(transformer_run, summary)
    assert {"loss", "grad_norm", "mask_ratio"} <= set(new[0])
    assert summary["class_names"] == ["jump", "walk"]
    assert load_model(transformer_run).config.tasks == ["frame_prediction", "full_generation"]
