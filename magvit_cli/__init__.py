"""magvit: video editing with MAGVIT, the Masked Generative Video Transformer.

    import magvit_cli
    model = magvit_cli.load_model()            # bundled default, a folder, or a Hub repo id
    new = model.predict(video, frames=11)      # video: float tensor [B, 3, T, H, W] in [0, 1]
"""

__version__ = "0.1.0"

from .checkpoint import load_model, save_model  # noqa: E402
from .model import DecodeOptions, Magvit, ModelConfig  # noqa: E402


def load_tokenizer(name_or_path=None, device=None):
    """Load only the tokenizer stage of a model (the transformer, if any, is dropped)."""
    return load_model(name_or_path, device=device).tokenizer


__all__ = ["DecodeOptions", "Magvit", "ModelConfig", "load_model", "load_tokenizer", "save_model", "__version__"]
