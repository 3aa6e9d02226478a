"""magvit: video editing with MAGVIT, the Masked Generative Video Transformer.

    import magvit_cli
    from magvit_cli import edit
    model = magvit_cli.load_model()               # bundled default, a folder, or a Hub repo id
    edit.predict(model, "clip.mp4", frames=11)    # writes clip.predict.mp4
    longer = edit.predict(model, video, frames=11)  # video: float tensor [B, 3, T, H, W] in [0, 1]
"""

import importlib

__version__ = "0.1.0"

# The API is imported on first use (PEP 562), so that `magvit --help` and the command line's
# own errors come back without loading PyTorch.
_EXPORTS = {"load_model": "checkpoint", "save_model": "checkpoint", "DecodeOptions": "decoding", "Magvit": "model",
            "ModelConfig": "model"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_tokenizer(name_or_path=None, device=None):
    """Load only the tokenizer stage of a model (the transformer, if any, is dropped)."""
    from .checkpoint import load_model

    return load_model(name_or_path, device=device).tokenizer


__all__ = ["DecodeOptions", "Magvit", "ModelConfig", "load_model", "load_tokenizer", "save_model", "__version__"]
