"""`evaluate`: every task on a small folder of clips with the tiny random model, protocols,
clip sampling, folds, seeds, the JSON result, and errors. The tests use a cheap stand-in for
the I3D (colour statistics as features) so that the loop, not the network, is what runs (the
I3D itself is tested in test_i3d.py); a slow test runs the real I3D from a weight file made here."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from magvit_cli import i3d as i3d_module
from magvit_cli.checkpoint import load_model
from magvit_cli.data import VideoClipDataset
from magvit_cli.errors import InputError, ModelError, UnsupportedError, UsageError
from magvit_cli.evaluate import PROTOCOLS, TASKS, Protocol, RealClips, evaluate, format_table
from magvit_cli.i3d import I3D
from magvit_cli.metric_weights import save_safetensors
from magvit_cli.model import Magvit

from conftest import write_clip


def moving_square(seed: int, frames: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((frames, size, size, 3), np.uint8)
    out[:] = rng.integers(0, 256, 3)
    color = rng.integers(0, 256, 3)
    for t in range(frames):
        out[t, 8:20, (2 * t) % 20:(2 * t) % 20 + 12] = color
    return out


class StubI3D(torch.nn.Module):
    """I3D's interface at no cost: per-channel mean and std of a clip as its 6 features."""

    def __init__(self):
        super().__init__()
        self.clips = 0

    def features(self, video: torch.Tensor) -> torch.Tensor:
        self.clips += video.shape[0]
        return torch.cat([video.mean(dim=(2, 3, 4)), video.std(dim=(2, 3, 4))], dim=1)


class StubC3D(torch.nn.Module):
    def logits(self, video: torch.Tensor) -> torch.Tensor:
        return 10 * video.mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three labelled 20-frame videos (classes named as the tiny model's)."""
    root = tmp_path_factory.mktemp("eval-clips")
    for i in range(3):
        write_clip(root / f"class_{i % 2}" / f"v{i}.mp4", moving_square(i, frames=20))
    return root


def run(model, task, clips, **kwargs):
    kwargs = {"samples": 2, "folds": 1, "steps": 2, "i3d": StubI3D(), **kwargs}
    return evaluate(model, task, clips, **kwargs)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_runs_and_reports(model, clips, task):
    result = run(model, task, clips)
    expected = ["fvd"] if task == "cg" else ["fvd", "psnr", "ssim"]
    assert list(result["metrics"]) == expected
    for name, score in result["metrics"].items():
        assert score["metric"] == name and np.isfinite(score["value"]) and score["samples"] == 2
        assert len(score["folds"]) == 1 and score["std"] == 0.0
    assert result["task"] == task and result["samples_per_fold"] == 2 and result["folds"] == 1
    assert result["model_revision"].startswith("sha256:") and result["seed"] == 0
    if task == "recon":
        assert result["task_id"] == "reconstruction" and result["decoding"] is None
    else:
        assert result["decoding"]["steps"] == 2 and result["decoding"]["schedule"] == "cosine"
    json.loads(json.dumps(result))  # JSON-ready


def test_folds_cycle_the_real_clips_and_score_each_real_clip_once(model, clips):
    stub = StubI3D()
    result = run(model, "fp", clips, samples=2, folds=2, i3d=stub, batch_size=4)
    fvd = result["metrics"]["fvd"]
    assert len(fvd["folds"]) == 2 and fvd["samples"] == 2 and result["real_clips"] == 3
    assert fvd["value"] == pytest.approx(np.mean(fvd["folds"])) and fvd["std"] == pytest.approx(np.std(fvd["folds"]))
    assert stub.clips == 3 + 4  # four samples on clips 0, 1, 2, 0: each real clip scored once


def test_a_seed_reproduces_a_result_and_another_seed_changes_it(model, clips):
    first = run(model, "opc", clips, seed=3)["metrics"]
    again = run(model, "opc", clips, seed=3)["metrics"]
    other = run(model, "opc", clips, seed=4)["metrics"]
    assert first == again
    assert first["psnr"]["value"] != other["psnr"]["value"]


def test_recon_is_deterministic_and_its_fvd_compares_recon_with_real(model, clips):
    result = run(model, "recon", clips, samples=3, metrics=["fvd", "psnr"])
    assert result["metrics"] == run(model, "recon", clips, samples=3, seed=9, metrics=["fvd", "psnr"])["metrics"]
    assert result["metrics"]["fvd"]["value"] > 0  # a random tokenizer does not reconstruct


def test_a_tokenizer_only_model_evaluates_reconstruction_only(model, clips):
    tokenizer_only = Magvit(dataclasses.replace(model.config, transformer=None, tasks=[]))
    tokenizer_only.tokenizer.load_state_dict(model.tokenizer.state_dict())
    assert run(tokenizer_only, "recon", clips)["metrics"] == run(model, "recon", clips)["metrics"]
    with pytest.raises(UnsupportedError, match="tokenizer-only"):
        run(tokenizer_only, "fp", clips)


def test_protocol_presets_set_clips_decoding_and_best_of(model, clips):
    result = run(model, "fp", clips, protocol="bair-standard", samples=4)
    assert result["protocol"]["name"] == "bair-standard" and result["protocol"]["clips"] == "first"
    assert result["decoding"]["schedule"] == "exp" and result["decoding"]["choice_temperature"] == 400.0
    psnr = result["metrics"]["psnr"]
    # Best of 100 per real clip, with 4 samples over 3 clips: clip 0 has two trials, the others one.
    assert psnr["std"] is None and psnr["trials"] == 1 and psnr["clips"] == 3
    mean = run(model, "fp", clips, protocol="bair-standard", samples=4, best_of_trials=0)["metrics"]["psnr"]
    assert psnr["value"] >= mean["value"] - 1e-12
    rendered = _render(format_table(result))
    assert "best of 1" in rendered and "FVD" in rendered


def test_decoding_and_condition_overrides(model, clips):
    result = run(model, "fp", clips, protocol="k600-fp", samples=2, cond_frames=2, schedule="pow2",
                 choice_temperature=1.5, guidance=0.5)
    assert result["protocol"]["cond_frames"] == 2 and result["protocol"]["metric_resolution"] == 64
    assert result["decoding"]["schedule"] == "pow2" and result["decoding"]["choice_temperature"] == 1.5
    assert result["decoding"]["guidance"] == 0.5


def test_class_conditional_generation_and_inception_score(model, clips):
    result = run(model, "cg", clips, protocol="ucf-cg", samples=3, folds=2, c3d=StubC3D())
    assert list(result["metrics"]) == ["fvd", "is"] and len(result["metrics"]["is"]["folds"]) == 2
    assert all(score >= 1.0 for score in result["metrics"]["is"]["folds"])


def test_real_clip_windows_and_crops(tmp_path):
    write_clip(tmp_path / "long.mp4", moving_square(0, frames=30))
    dataset = VideoClipDataset(tmp_path, num_frames=16, resolution=(32, 32), train=False)

    def starts(**protocol):
        real = RealClips(dataset, Protocol("test", "", **protocol), 16, seed=0)
        return [(c.start, c.offset) for c in real.fixed]

    assert starts(clips="first") == [(0, 0.5)]
    assert starts(clips="center") == [(7, 0.5)]
    assert [s for s, _ in starts(clips="uniform", clips_per_video=15)] == list(range(15))  # BAIR debiased
    assert [s for s, _ in starts(clips="uniform", clips_per_video=14)] == [int(v) for v in np.linspace(0, 14, 14)]
    assert starts(clips="first", spatial_crops=3) == [(0, 0.0), (0, 0.5), (0, 1.0)]
    real = RealClips(dataset, PROTOCOLS["ucf-cg"], 16, seed=0)
    drawn = [real.for_sample(i) for i in range(20)]
    assert all(0 <= c.start <= 14 for c in drawn) and len({c.start for c in drawn}) > 1
    assert drawn == [RealClips(dataset, PROTOCOLS["ucf-cg"], 16, seed=0).for_sample(i) for i in range(20)]
    clip = real.load(drawn[0])
    assert clip.shape == (3, 16, 32, 32) and 0 <= clip.min() and clip.max() <= 1


def test_output_json_is_written(model, clips, tmp_path):
    path = tmp_path / "result.json"
    result = run(model, "fi", clips, output=path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    assert result["feature_extractors"] == {"fvd": "StubI3D given in memory"}


def test_errors_are_clear(model, clips, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="unknown task"):
        run(model, "superres", clips)
    with pytest.raises(UsageError, match="unknown protocol"):
        run(model, "fp", clips, protocol="bair")
    with pytest.raises(UsageError, match="unknown metric"):
        run(model, "fp", clips, metrics=["fid"])
    with pytest.raises(UsageError, match="PSNR"):
        run(model, "cg", clips, metrics=["fvd", "psnr"])
    with pytest.raises(UsageError, match="--folds"):
        run(model, "fp", clips, folds=0)
    with pytest.raises(UsageError, match="at least 2 samples per fold"):
        run(model, "fp", clips, samples=1)
    # Metrics whose weights are missing are skipped, and said so, unless asked for by name.
    result = run(model, "cg", clips, protocol="ucf-cg", samples=4)
    assert "--c3d" in result["skipped"]["is"] and list(result["metrics"]) == ["fvd"]
    with pytest.raises(ModelError, match="--c3d"):
        run(model, "cg", clips, protocol="ucf-cg", metrics=["is"])
    monkeypatch.setattr(i3d_module, "installed_weights", lambda: None)
    result = run(model, "fp", clips, i3d=None)
    assert "--i3d" in result["skipped"]["fvd"] and {"psnr", "ssim"} <= set(result["metrics"])
    with pytest.raises(ModelError, match="--i3d"):
        run(model, "fp", clips, i3d=None, metrics=["fvd", "psnr"])
    unlabelled = tmp_path / "flat"
    write_clip(unlabelled / "a.mp4", moving_square(1, frames=20))
    with pytest.raises(InputError, match="need labels"):
        run(model, "cg", unlabelled)
    with pytest.raises(InputError, match="not found"):
        run(model, "fp", tmp_path / "missing")


def test_edited_region_and_baselines(model, clips):
    result = run(model, "ipc", clips, region="edited", baselines=True, composite=True)
    assert list(result["metrics"]) == ["fvd", "psnr"]  # SSIM needs whole frames: dropped from the defaults
    assert result["region"] == "edited" and set(result["baselines"]) == {"mean_colour_fill", "edge_replicate_fill"}
    whole = run(model, "ipc", clips, baselines=True, composite=True, metrics=["psnr"])
    # Composited outputs are exact outside the hole, so whole-frame PSNR is higher than the hole's.
    assert whole["metrics"]["psnr"]["value"] > result["metrics"]["psnr"]["value"] + 3
    for name in ("mean_colour_fill", "edge_replicate_fill"):
        assert whole["baselines"][name]["psnr"]["value"] > result["baselines"][name]["psnr"]["value"] + 3
    # The baselines are scored like the model: PSNR of the mean fill over the hole, by hand.
    dataset = VideoClipDataset(clips, num_frames=model.config.num_frames, resolution=model.config.resolution, train=False)
    real_clips = RealClips(dataset, PROTOCOLS["default"], model.config.num_frames, 0)
    real = torch.stack([real_clips.load(real_clips.for_sample(i)) for i in range(2)])
    keep = model.condition("inpainting_c", real).video_mask.expand(2, 1, *real.shape[2:])
    mean = (real * keep).sum((2, 3, 4), keepdim=True) / keep.sum((2, 3, 4), keepdim=True)
    mse = ((real - mean) ** 2).mean(1, keepdim=True)[~keep].view(2, -1).mean(1)
    expected = float((-10 * torch.log10(mse.double())).mean())
    assert result["baselines"]["mean_colour_fill"]["psnr"]["value"] == pytest.approx(expected, abs=1e-4)
    stub = StubI3D()
    run(model, "ipc", clips, samples=4, baselines=True, metrics=["fvd"], i3d=stub)
    assert stub.clips == 3 + 4 + 2 * 3  # real clips and each clip's two baselines once, every model sample
    fp = run(model, "fp", clips, baselines=True, protocol="bair-standard", samples=4, metrics=["psnr"])
    assert "trials" in fp["metrics"]["psnr"] and "trials" not in fp["baselines"]["repeat_last_frame"]["psnr"]
    rendered = _render(format_table(result))
    assert "edited pixels" in rendered and "mean colour fill" in rendered
    with pytest.raises(UsageError, match="known pixels"):
        run(model, "cg", clips, region="edited")
    with pytest.raises(UsageError, match="known pixels"):
        run(model, "recon", clips, baselines=True)
    with pytest.raises(UsageError, match="SSIM needs whole frames"):
        run(model, "ipc", clips, region="edited", metrics=["psnr", "ssim"])
    with pytest.raises(UsageError, match="unknown region"):
        run(model, "ipc", clips, region="hole")


@pytest.mark.slow  # four I3D passes at 224x224: tens of seconds on a small CPU
def test_real_i3d_from_a_weight_file(model, clips, tmp_path):
    torch.manual_seed(0)
    path = save_safetensors(I3D().state_dict(), tmp_path / "i3d.safetensors")
    result = run(model, "recon", clips, i3d=path, metrics=["fvd"])
    assert np.isfinite(result["metrics"]["fvd"]["value"]) and result["metrics"]["fvd"]["value"] > 0
    assert result["feature_extractors"] == {"fvd": str(path)}


def _render(table) -> str:
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()
