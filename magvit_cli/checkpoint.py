"""The model format and where models come from.

A model is a folder (or a Hugging Face Hub repo) holding
  config.json        architecture of both stages, clip size, tasks, class names
  model.safetensors  tensors under `tokenizer.*` and `transformer.*`
  README.md          the model card (written when the project saves a model)

`load_model` takes a local folder, a Hub repo id (`owner/name` or
`owner/name@revision`) or nothing (the default model bundled in `weights/`).
Nothing here ever unpickles: weights are safetensors only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from typing import TYPE_CHECKING

from .config import ModelConfig
from .errors import ModelError, OutputError

if TYPE_CHECKING:  # the network (and torch) load only with the weights: reading configs stays fast
    import torch

    from .model import Magvit

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
MODEL_FILES = [CONFIG_FILE, WEIGHTS_FILE, CARD_FILE]
DAMAGED = "the file is damaged: download or convert the model again"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

# Sizes a model file may describe. Far above any MAGVIT (the L transformer has 306 M
# parameters, the paper's largest clips are 16x128x128) and far below what would exhaust a
# machine before the first tensor is made: a hostile config.json fails here, not in malloc.
MAX_PARAMETERS = 10_000_000_000
MAX_CLIP_VOXELS = 1 << 24  # frames x height x width of one clip, e.g. 16 x 1024 x 1024


def default_model_dir() -> Path:
    """The bundled default model: `weights/` in a source checkout, or the copy
    installed inside the package (`magvit_cli/weights`)."""
    env = os.environ.get("MAGVIT_DEFAULT_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "weights", here / "weights"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return here.parent / "weights"


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """Return a local folder for a model name, downloading from the Hub if needed.

    A local folder always wins over a Hub id of the same spelling, and is
    detected before `huggingface_hub` is ever called (it retries for ~20 s
    when there is no network).
    """
    if name_or_path is None or str(name_or_path) in ("", "default"):
        folder = default_model_dir()
        if not (folder / CONFIG_FILE).is_file():
            raise ModelError(
                f"the bundled default model is missing ({folder})",
                hint="reinstall magvit, or pass --model with a model folder or Hub repo id",
            )
        return folder
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {path} is a file, not a model folder",
                             hint=f"point --model at the folder holding {CONFIG_FILE} and {WEIGHTS_FILE}")
        return path
    text = str(name_or_path)
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise ModelError(f"model folder {text} does not exist",
                         hint="pass an existing folder or a Hub repo id like owner/name[@revision]")
    repo_id, _, revision = text.partition("@")
    return download(repo_id, revision or None)


def download(repo_id: str, revision: str | None = None) -> Path:
    """Fetch a model repo into the Hugging Face cache (or find it there) and
    return its local folder. The cache is tried first so that cached models
    load instantly offline."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ModelError("huggingface_hub is not installed", hint="pip install huggingface-hub") from e

    kwargs = dict(repo_id=repo_id, revision=revision, allow_patterns=MODEL_FILES)
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except LocalEntryNotFoundError:
        pass  # not cached (or this revision not cached): go online below
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ModelError(f"model {repo_id}: {e}", hint="check the repo id and revision") from e
    if _offline():
        raise ModelError(
            f"model {repo_id}{'@' + revision if revision else ''} is not in the local cache and HF_HUB_OFFLINE is set",
            hint=f"run `magvit download {repo_id}` on a machine with network access, or pass a local folder",
        )
    try:
        return Path(snapshot_download(**kwargs))
    except RevisionNotFoundError as e:
        raise ModelError(f"model {repo_id} has no revision {revision!r}", hint="check the revision after '@'") from e
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ModelError(f"model {repo_id} was not found on the Hub (or is private)",
                         hint="check the repo id, or log in with `huggingface-cli login`") from e
    except LocalEntryNotFoundError as e:
        raise ModelError(f"model {repo_id} could not be downloaded: no network",
                         hint="connect, or pass a local model folder") from e
    except OSError as e:
        raise ModelError(f"model {repo_id} could not be downloaded: {e}",
                         hint="retry, or pass a local model folder") from e


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def read_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{folder} is not a magvit model: {CONFIG_FILE} is missing",
                         hint=f"point --model at a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}")
    if path.stat().st_size > 10_000_000:
        raise ModelError(f"{path} is implausibly large for a model config", hint=DAMAGED)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path} is not valid JSON: {e}", hint=DAMAGED) from e
    except (RecursionError, ValueError) as e:  # nesting or integers beyond what Python parses
        raise ModelError(f"{path} is not a plausible model config: {e}", hint=DAMAGED) from None
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from None
    config = ModelConfig.from_dict(data)
    check_sizes(config, path)
    return config


def transformer_parameters(config) -> int:
    """Parameters of `Transformer(config)` (the layout of transformer.py), counted without building it."""
    d, m, v = config.hidden_size, config.mlp_dim, config.vocab_size
    layer = 4 * (d * d + d) + (d * m + m) + (m * d + d) + 2 * 2 * d  # attention, MLP, two LayerNorms
    return v * d + config.seq_length * d + 2 * d + config.num_layers * layer + (d * d + d) + 2 * d + v


def check_sizes(config: ModelConfig, source: Path | str = CONFIG_FILE) -> None:
    """Refuse a config whose weights or clips could not fit any machine (see MAX_PARAMETERS)."""
    parameters = config.tokenizer.num_parameters()
    if config.transformer is not None:
        parameters += transformer_parameters(config.transformer)
    if parameters > MAX_PARAMETERS:
        raise ModelError(f"{source} describes a model of {parameters:,} parameters, more than the "
                         f"{MAX_PARAMETERS:,} any magvit model has", hint="the file is damaged or not a magvit config")
    voxels = config.num_frames * config.resolution[0] * config.resolution[1]
    if voxels > MAX_CLIP_VOXELS:
        raise ModelError(f"{source} describes clips of {config.num_frames}x{config.resolution[0]}x"
                         f"{config.resolution[1]}, more than the {MAX_CLIP_VOXELS:,} voxels a model may work on",
                         hint="the file is damaged or not a magvit config")


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> Magvit:
    """Load a model folder, Hub repo id or (with None) the bundled default model."""
    import torch

    from .model import Magvit

    folder = resolve_model(name_or_path)
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}",
                         hint="magvit reads safetensors only (never pickles): convert or download the model again")
    with torch.device("meta"):
        skeleton = Magvit(config)
    expected = skeleton.state_dict()
    state = _read_safetensors(weights, expected)
    model = Magvit(config, source=str(name_or_path) if name_or_path else "default")
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def _read_safetensors(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read tensors after checking every name, shape and dtype against the
    architecture that config.json describes."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing = sorted(set(expected) - names)
            unexpected = sorted(names - set(expected))
            if missing:
                raise ModelError(f"{path.name} lacks tensor {missing[0]}{_more(missing)}",
                                 hint="the weights do not belong to this config.json")
            if unexpected:
                raise ModelError(f"{path.name} has unexpected tensor {unexpected[0]}{_more(unexpected)}",
                                 hint="the weights do not belong to this config.json")
            state = {}
            for name, ref in expected.items():
                piece = f.get_slice(name)
                shape = tuple(piece.get_shape())
                if shape != tuple(ref.shape):
                    raise ModelError(f"tensor {name} has shape {list(shape)} in {path.name} but config.json implies "
                                     f"{list(ref.shape)}", hint="the weights do not belong to this config.json")
                tensor = f.get_tensor(name)
                if tensor.dtype != ref.dtype:
                    if not tensor.is_floating_point():
                        raise ModelError(f"tensor {name} has dtype {tensor.dtype}, expected {ref.dtype}", hint=DAMAGED)
                    tensor = tensor.to(ref.dtype)
                state[name] = tensor
            return state
    except SafetensorError as e:
        raise ModelError(f"{path} is not a valid safetensors file: {e}", hint=DAMAGED) from e
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}", hint="check the file's permissions") from e


def _more(names: list[str]) -> str:
    return f" and {len(names) - 1} more" if len(names) > 1 else ""


def make_shareable(path: Path) -> None:
    """Give `path` the mode an ordinary new file gets under the process's umask:
    safetensors writes owner-only files, and weights are for sharing."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_model(folder: str | os.PathLike, model: Magvit, card: str | None = None) -> Path:
    """Write config.json, model.safetensors and the model card into `folder`.
    Each file is written next to its final name and renamed into place."""
    from safetensors.torch import save_file

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create model folder {folder}: {e.strerror}") from e
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config_text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    card = card if card is not None else model_card(model.config)

    def write(name: str, writer) -> None:
        tmp = folder / f".{name}.tmp"
        try:
            writer(tmp)
            make_shareable(tmp)
            os.replace(tmp, folder / name)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write {folder / name}: {e.strerror or e}") from e
            raise

    write(WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    write(CONFIG_FILE, lambda p: p.write_text(config_text, encoding="utf-8"))
    write(CARD_FILE, lambda p: p.write_text(card, encoding="utf-8"))
    return folder


def model_card(config: ModelConfig) -> str:
    tok = config.tokenizer
    lines = [
        "---",
        "library_name: magvit-cli",
        "tags: [video, magvit, masked-generative-video-transformer]",
        "---",
        "",
        "# MAGVIT model",
        "",
        f"- clip: {config.num_frames} frames at {config.resolution[0]}x{config.resolution[1]}",
        f"- tokenizer: 3D-VQ, filters {tok.filters}, multipliers {list(tok.channel_multipliers)}, "
        f"codebook {tok.codebook_size} x {tok.embedding_dim}",
    ]
    if config.transformer is not None:
        t = config.transformer
        lines.append(f"- transformer: {t.num_layers} layers, hidden {t.hidden_size}, {t.num_heads} heads, "
                     f"vocabulary {t.vocab_size}")
        lines.append(f"- tasks: {', '.join(config.tasks) or 'none'}")
    else:
        lines.append("- transformer: none (tokenizer-only model)")
    if config.class_names:
        lines.append(f"- classes ({len(config.class_names)}): {', '.join(config.class_names[:20])}"
                     + (" ..." if len(config.class_names) > 20 else ""))
    if config.training_data:
        lines += ["", "## Training data", "", config.training_data]
    lines += ["", "Load it with `magvit_cli.load_model(path_or_repo_id)` or `magvit ... --model path_or_repo_id`.", ""]
    return "\n".join(lines)

