"""weights/recipe/evaluate.py's tokenizer bar: reconstruction against the bicubic thumbnail of
the model's own token grid, overall and per source, flagged where a source is more than 1 dB below."""

import dataclasses
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, tiny_model_config, write_clip

sys.path.insert(0, str(REPO / "weights" / "recipe"))
spec = importlib.util.spec_from_file_location("recipe_evaluate", REPO / "weights" / "recipe" / "evaluate.py")
recipe_evaluate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe_evaluate)
del sys.path[0]


def test_thumbnail_keeps_smooth_frames_and_loses_pixel_detail():
    from magvit_cli.metrics import psnr

    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    smooth = torch.stack([0.2 + 0.6 * x, 0.2 + 0.6 * y, 0.5 + 0.2 * x * y])[:, None].expand(3, 4, 32, 32)[None]
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().expand(1, 3, 4, 32, 32)
    kept = recipe_evaluate.thumbnail(smooth, (8, 8))
    lost = recipe_evaluate.thumbnail(checker, (8, 8))
    assert kept.shape == smooth.shape and lost.shape == checker.shape
    assert psnr(kept, smooth).item() > 40  # a gradient survives a 4x shrink
    assert (lost - 0.5).abs().max() < 0.05  # a one-pixel checkerboard becomes its mean


def test_tokenizer_report_sets_the_model_beside_its_thumbnail_per_source(tmp_path, monkeypatch):
    from magvit_cli.checkpoint import save_model
    from magvit_cli.metrics import psnr
    from magvit_cli.model import Magvit

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    save_model(model_dir, Magvit(dataclasses.replace(tiny_model_config(), transformer=None, tasks=[], class_names=[])))
    rng = np.random.default_rng(0)
    for folder, name in (("camera", "street_0"), ("camera", "street_1"), ("people", "face_0")):
        base = rng.integers(40, 200, size=(1, 8, 8, 3))
        frames = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2).repeat(16, axis=0).astype(np.uint8)
        write_clip(tmp_path / "data" / "heldout" / folder / f"{name}.mp4", frames)
    (tmp_path / "data" / "manifest.jsonl").write_text("")  # prepare_data.py writes it beside the split
    out = tmp_path / "eval"
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--model", str(model_dir), "--data", str(tmp_path / "data"),
                                      "--out", str(out)])
    recipe_evaluate.main()

    results = json.loads((out / "results.json").read_text())
    row = results["tokenizer_all_heldout"]
    assert list(row["by_source"]) == ["camera/street", "people/face"]
    clips, _ = recipe_evaluate.load_clips(tmp_path / "data" / "heldout", 16, (32, 32))
    expected = psnr(recipe_evaluate.thumbnail(clips, (8, 8)), clips)
    assert abs(row["thumbnail_psnr"] - float(expected.mean())) < 0.01
    assert abs(row["by_source"]["people/face"]["thumbnail_psnr"] - float(expected[2])) < 0.01
    assert row["psnr"] < row["thumbnail_psnr"] - 1  # an untrained tokenizer: far below
    table = (out / "tables.md").read_text()
    assert "| people/face |" in table and table.count("**") == 4  # both sources flagged, in bold


def test_native_resolution_windows_are_the_held_out_windows_of_each_real_source(tmp_path):
    data = tmp_path / "data"
    frames = np.zeros((40, 40, 48, 3), dtype=np.uint8)
    frames += (np.arange(40) * 6).astype(np.uint8)[:, None, None, None]  # frame i has grey level 6 i
    write_clip(data / "sources" / "carphone_pristine.mp4", frames)
    talker = np.pad(frames[::-1], ((0, 0), (0, 2), (0, 2), (0, 0)), mode="edge")  # 42 x 50: cut to 40 x 48
    write_clip(data / "sources" / "talker.mp4", talker)
    rows = [{"split": "heldout", "class": "camera", "source": "carphone", "start": s} for s in (0, 4, 8, 12, 16)]
    rows += [{"split": "heldout", "class": "people", "source": "grid_heldout", "file": "talker.mp4", "start": 20},
             {"split": "heldout", "class": "people", "source": "grid_heldout", "file": "talker.mp4", "start": 30},
             {"split": "train", "class": "camera", "source": "bikes", "start": 0},
             {"split": "heldout", "class": "shapes", "source": "procedural"}]
    (data / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    segments = recipe_evaluate.heldout_segments(data, 16)
    assert [name for name, _ in segments] == ["carphone_0", "carphone_1", "carphone_2", "grid_heldout_0"]
    levels = [float(video[:, 0].mean() * 255 / 6) for _, video in segments]
    assert np.allclose(levels, [0, 8, 16, 39 - 20], atol=0.5)  # first frames of windows 0, 2, 4; talker from 20
    assert all(video.shape == (3, 16, 40, 48) for _, video in segments)  # the file's own resolution, to whole 4 px


def test_native_resolution_edits_each_window_at_its_own_size_against_the_fills(tmp_path, tiny_model_dir):
    from magvit_cli.checkpoint import load_model
    from magvit_cli.decoding import DecodeOptions
    from magvit_cli.metrics import region_psnr
    from magvit_cli.tasks import nearest_fill

    model = load_model(tiny_model_dir, device="cpu").eval()
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 56), indexing="ij")
    truth = torch.stack([x, y, 0.5 * (x + y)])[:, None].repeat(1, 16, 1, 1)  # [3, 16, 40, 56]
    table = recipe_evaluate.native_resolution(model, [("clip_0", truth)], DecodeOptions(seed=0, steps=2), tmp_path)

    assert set(table) == {task for task, _, _ in recipe_evaluate.NATIVE}
    assert all(row["segments"] == ["clip_0"] and np.isfinite(row["model_sampled"]) for row in table.values())
    keep = torch.zeros(1, 1, 1, 40, 56, dtype=torch.bool)
    keep[..., 10:30, 14:42] = True  # outpainting_c keeps the central half of each side
    expected = region_psnr(nearest_fill(truth[None], keep), truth[None], ~keep)
    assert abs(table["outpainting_c"]["edge_replicate_padding"] - float(expected)) < 0.01
    assert (tmp_path / "sheet_native_inpainting_c.png").is_file()


def test_sources_more_than_one_db_below_their_thumbnail_are_flagged():
    def scores(model, thumb):
        return {"psnr": model, "ssim": 0.5, "thumbnail_psnr": thumb, "thumbnail_ssim": 0.5}

    overall = scores(20.0, 21.0) | {"codes_used_pct": 90.0, "perplexity": 500.0}
    results = {"clips": {"real": 2, "all_heldout": 3}, "tokenizer_real": overall,
               "tokenizer_all_heldout": overall | {"by_source": {"a": scores(20.0, 20.9), "b": scores(20.0, 21.1),
                                                                  "c": scores(22.0, 21.0)}}}
    rows = {line.split(" | ")[0][2:]: line for line in recipe_evaluate.tokenizer_tables(results) if line.startswith("| ")}
    assert "| -0.90 |" in rows["a"] and "**-1.10**" in rows["b"] and "| +1.00 |" in rows["c"]


def test_a_data_folder_without_the_held_out_split_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "eval")])
    with pytest.raises(SystemExit) as exit_info:
        recipe_evaluate.main()
    assert exit_info.value.code == 2
    assert "prepare_data.py --out" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()
