import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official fixtures: tests/fixtures/official-tiny (see its README), or MAGVIT_REFERENCE
    (e.g. the full set they were cut from, ../shared/reference/tiny in the development workspace)."""
    chosen = os.environ.get("MAGVIT_REFERENCE")
    path = Path(chosen) if chosen else REPO / "tests" / "fixtures" / "official-tiny"
    if not path.is_dir():
        pytest.fail(f"reference fixtures missing at {path}", pytrace=False)
    return path


def pytest_collection_modifyitems(items):
    # Every test that reads the official fixtures is a parity test: `pytest -m parity` runs exactly these.
    for item in items:
        if "reference_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.parity)


@pytest.fixture(scope="session")
def device():
    """Where parity tests run the official models: MAGVIT_TEST_DEVICE (default cpu)."""
    import torch

    name = os.environ.get("MAGVIT_TEST_DEVICE", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        message = f"MAGVIT_TEST_DEVICE={name!r} is not a torch device: {e}"
        raise pytest.fail.Exception(message, pytrace=False) from None  # without torch's traceback
    if device.type != "cuda":
        yield device
        return
    if not torch.cuda.is_available():
        pytest.fail(f"MAGVIT_TEST_DEVICE={name!r} but torch {torch.__version__} sees no CUDA device", pytrace=False)
    if (device.index or 0) >= torch.cuda.device_count():
        pytest.fail(f"MAGVIT_TEST_DEVICE={name!r} but only {torch.cuda.device_count()} CUDA device(s)", pytrace=False)
    # The tolerances are for full float32: TF32 (cuDNN's default for convolutions) rounds inputs to 10 bits.
    backends = torch.backends
    saved = backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.deterministic
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
    backends.cudnn.deterministic = True
    yield device
    backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.deterministic = saved


def tiny_model_config(tasks=None, num_classes=3):
    """A small random model (16x32x32 clips, 4x8x8 tokens) that runs every task in seconds."""
    from magvit_cli.model import ModelConfig
    from magvit_cli.tasks import TASKS
    from magvit_cli.tokenizer import TokenizerConfig
    from magvit_cli.transformer import TransformerConfig

    tokenizer = TokenizerConfig(filters=32, channel_multipliers=(1, 1, 1), temporal_downsample=(True, True, False),
                                num_enc_res_blocks=1, num_dec_res_blocks=1, embedding_dim=16, codebook_size=32)
    transformer = TransformerConfig(codebook_size=32, num_classes=num_classes, multi_task=True,
                                    latent_shape=(4, 8, 8), hidden_size=32, num_layers=1, num_heads=2,
                                    mlp_dim=64, dropout=0.0, attention_dropout=0.0)
    return ModelConfig(tokenizer=tokenizer, transformer=transformer, num_frames=16, resolution=(32, 32),
                       tasks=list(TASKS) if tasks is None else tasks,
                       class_names=[f"class_{i}" for i in range(num_classes)], fps=8.0,
                       training_data="random weights (tests)")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    import torch

    from magvit_cli.checkpoint import save_model
    from magvit_cli.model import Magvit

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    save_model(folder, Magvit(tiny_model_config()))
    return folder


def write_clip(path: Path, frames, fps: int = 8) -> Path:
    """Write uint8 frames [T, H, W, 3] as a high-quality MPEG-4 video."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def pack_flax(tree) -> bytes:
    """Encode like flax.serialization.msgpack_serialize (ExtType 1 arrays, 3 numpy scalars)."""
    import msgpack
    import numpy as np

    def default(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((list(x.shape), x.dtype.name, x.tobytes("C")), use_bin_type=True))
        if isinstance(x, np.generic):
            return msgpack.ExtType(3, msgpack.packb(((), x.dtype.name, np.asarray(x).tobytes()), use_bin_type=True))
        raise TypeError(type(x))

    return msgpack.packb(tree, default=default, strict_types=True, use_bin_type=True)
