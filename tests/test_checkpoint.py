"""The model format: save/load, validation before allocation, Hub cache and offline behaviour."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import magvit_cli
from magvit_cli.checkpoint import load_model, save_model
from magvit_cli.errors import ModelError
from magvit_cli.metric_weights import save_safetensors
from magvit_cli.model import Magvit, ModelConfig

from conftest import tiny_model_config


def copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_round_trip_keeps_every_tensor_and_the_config(tiny_model_dir):
    model = load_model(tiny_model_dir)
    stored = load_file(str(tiny_model_dir / "model.safetensors"))
    state = model.state_dict()
    assert set(stored) == set(state)
    assert any(k.startswith("tokenizer.") for k in stored) and any(k.startswith("transformer.") for k in stored)
    for name, tensor in stored.items():
        assert torch.equal(tensor, state[name]), name
    assert model.config.to_dict() == tiny_model_config().to_dict()
    card = (tiny_model_dir / "README.md").read_text()
    assert "frame_prediction" in card and "16 frames at 32x32" in card


def test_tokenizer_only_model_is_valid(tmp_path):
    config = tiny_model_config()
    config.transformer, config.tasks, config.class_names = None, [], []
    save_model(tmp_path, Magvit(config))
    model = magvit_cli.load_model(tmp_path)
    assert model.transformer is None
    assert magvit_cli.load_tokenizer(tmp_path).quantizer.codebook.shape == (32, 16)


def test_saved_files_are_readable_by_others_under_the_umask(tmp_path):
    # safetensors creates owner-only files; saved weights follow the umask instead.
    old = os.umask(0o022)
    try:
        save_model(tmp_path / "m", Magvit(tiny_model_config()))
        save_safetensors({"w": torch.ones(2)}, tmp_path / "i3d.safetensors")
    finally:
        os.umask(old)
    for path in [tmp_path / "m" / name for name in ("model.safetensors", "config.json", "README.md")] + [tmp_path / "i3d.safetensors"]:
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_shape_mismatch_names_the_tensor(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["tokenizer"]["embedding_dim"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"tensor tokenizer\.\S+ has shape"):
        load_model(folder)


def test_missing_and_unexpected_tensors_are_named(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    removed = sorted(state)[0]
    del state[removed]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match=f"lacks tensor {removed}"):
        load_model(folder)
    state[removed] = torch.zeros(1)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="unexpected tensor extra.weight"):
        load_model(folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_corrupt_or_missing_weights(tiny_model_dir, tmp_path, damage):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    weights = folder / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        weights.unlink()
    with pytest.raises(ModelError):
        load_model(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(num_frames=-3), "num_frames"),
    (lambda c: c["tokenizer"].update(filters=10**9), "filters"),
    (lambda c: c["transformer"].update(hidden_size=10**7), "hidden_size"),
    (lambda c: c.update(tasks=["frame_prediction", "teleport"]), "teleport"),
    (lambda c: c.update(resolution="big"), "resolution"),
    (lambda c: c.update(format_version=99), "format version 99"),
    (lambda c: c.update(class_names=["a"]), "classes"),
    (lambda c: c["transformer"].update(latent_shape=[4, 4, 4]), "latent_shape"),
])
def test_hostile_config_values_fail_before_allocation(tiny_model_dir, tmp_path, edit, message):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message):
        load_model(folder)


def test_invalid_json_and_missing_folder(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(folder)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="not a magvit model"):
        load_model(tmp_path)


def test_local_folder_wins_over_hub_id(tiny_model_dir, tmp_path, monkeypatch):
    copy_model(tiny_model_dir, tmp_path / "someone" / "model")
    monkeypatch.chdir(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("huggingface_hub must not be called for a local folder")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_network)
    assert load_model("someone/model").config.tasks == tiny_model_config().tasks


def make_hub_cache(root: Path, repo: str, source: Path, commit: str = "a" * 40) -> Path:
    """Lay a model out exactly as huggingface_hub caches it."""
    repo_dir = root / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    blobs = repo_dir / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, name in enumerate(("config.json", "model.safetensors", "README.md")):
        blob = blobs / f"{i:040d}"
        blob.write_bytes((source / name).read_bytes())
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def run_python(code: str, hf_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_hub_repo_loads_from_the_cache_offline(tiny_model_dir, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    make_hub_cache(tmp_path, "magvit-test/tiny", tiny_model_dir, commit)
    code = (
        "import magvit_cli\n"
        "m = magvit_cli.load_model('magvit-test/tiny')\n"
        f"r = magvit_cli.load_model('magvit-test/tiny@{commit}')\n"
        "print(sorted(m.config.tasks) == sorted(r.config.tasks), m.config.resolution)\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "True (32, 32)" in done.stdout


def test_uncached_repo_offline_is_a_clear_error(tmp_path):
    code = (
        "import time, magvit_cli\n"
        "from magvit_cli.errors import ModelError\n"
        "t = time.time()\n"
        "try:\n"
        "    magvit_cli.load_model('nobody/no-such-model')\n"
        "except ModelError as e:\n"
        "    print('ERR', e, round(time.time() - t, 1))\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ERR" in done.stdout and "HF_HUB_OFFLINE" in done.stdout and "magvit download" in done.stdout
    assert float(done.stdout.split()[-1]) < 5, "offline failure must not wait for network retries"
