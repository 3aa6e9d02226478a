"""Training: discriminator, schedule, EMA, optimiser groups, loss, configs, both trainers,
resume, Ctrl-C, NaN guard and torchrun-style data parallelism (gloo, 2 processes)."""

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import Dataset

from magvit_cli import train, train_config
from magvit_cli.checkpoint import load_model, save_model
from magvit_cli.discriminator import DiscriminatorConfig, StyleGANDiscriminator, avg_pool_same
from magvit_cli.errors import ModelError, OutputError, UsageError
from magvit_cli.model import Magvit, ModelConfig
from magvit_cli.transformer import Transformer, TransformerConfig

from test_data import make_folder

# A tokenizer small enough for seconds-long CPU runs: 4 x 16² clips -> 2 x 8 x 8 tokens.
TINY_TOKENIZER = ["num_frames=4", "resolution=16,16", "tokenizer.channel_multipliers=1,1",
                  "tokenizer.temporal_downsample=true", "tokenizer.embedding_dim=8", "tokenizer.codebook_size=32",
                  "discriminator_filters=4", "batch_size=2", "num_workers=0", "log_every=1", "save_every=0",
                  "preview_every=0", "warmup_steps=1", "lr=1e-3"]
TINY_TRANSFORMER = ["transformer.hidden_size=32", "transformer.num_layers=1", "transformer.num_heads=2",
                    "transformer.mlp_dim=64", "transformer.dropout=0.1", "tasks=frame_prediction,full_generation",
                    "batch_size=4", "num_workers=0", "log_every=1", "save_every=0", "preview_every=0",
                    "warmup_steps=1", "lr=1e-3"]


def tokenizer_config(*extra):
    return train_config.apply_overrides(train_config.preset("tokenizer", "tiny"), TINY_TOKENIZER + list(extra))


def transformer_config(*extra):
    return train_config.apply_overrides(train_config.preset("transformer", "tiny"), TINY_TRANSFORMER + list(extra))


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / train.METRICS_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("videos"), count=4)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A (random) tokenizer-only model of the tiny layout, as stage 1 would save it."""
    config = tokenizer_config()
    torch.manual_seed(0)
    model = Magvit(ModelConfig(tokenizer=config.tokenizer, num_frames=4, resolution=(16, 16)))
    return save_model(tmp_path_factory.mktemp("tokenizer"), model)


# ------------------------------------------------------------- discriminator

@pytest.mark.parametrize("filters, resolution, expected", [
    (64, 64, 11_734_465), (128, 64, 46_922_625),  # BAIR B / L: spec §1 11.7 M / 46.9 M
    (64, 128, 15_339_457), (128, 128, 61_341_569),  # UCF B / L: spec §1 15.3 M / 61.3 M
])
def test_discriminator_parameter_counts(filters, resolution, expected):
    config = DiscriminatorConfig.for_tokenizer(filters, 16, (resolution, resolution))
    assert config.channel_multipliers == ((2, 4, 4, 4) if resolution == 64 else (2, 4, 4, 4, 4))
    with torch.device("meta"):
        model = StyleGANDiscriminator(config)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert config.output_shape == (1, 4, 4)
    assert model.dense.in_features == 4 * 4 * filters * 4  # flatten 4096 (B) / 8192 (L), spec §3.6


def test_discriminator_shapes_and_length_one_time_axis():
    model = StyleGANDiscriminator(DiscriminatorConfig(4, (1, 2, 2, 2, 2), 4, (32, 32)))
    assert model.config.output_shape == (1, 1, 1)  # T: 4 -> 2 -> 1 -> 1 -> 1 -> 1
    assert model(torch.rand(3, 3, 4, 32, 32)).shape == (3, 1)
    x = torch.arange(30.0).reshape(1, 1, 1, 5, 6)
    pooled = avg_pool_same(x)  # TF 'SAME': a length-1 axis stays, an odd edge averages what exists
    assert pooled.shape == (1, 1, 1, 3, 3)
    assert pooled[0, 0, 0, 0, 0] == (0 + 1 + 6 + 7) / 4 and pooled[0, 0, 0, 2, 0] == (24 + 25) / 2


def test_discriminator_matches_official_parameter_tree(reference_dir):
    """Every leaf of the official `d_params` (fixture: filters 4, multipliers (1, 2), 16 x 32²)
    has a same-sized PyTorch parameter under the documented name mapping."""
    from magvit_cli.convert import read_flax_checkpoint

    d_params = read_flax_checkpoint(reference_dir / "tokenizer_ckpt")["d_params"]
    model = StyleGANDiscriminator(DiscriminatorConfig(4, (1, 2), 16, (32, 32)))
    names = {"Conv_0": "conv_in", "Conv_1": "conv_out", "Dense_0": "dense", "Dense_1": "head"}
    block = {"Conv_0": "conv1", "Conv_1": "shortcut", "Conv_2": "conv2"}
    state = model.state_dict()
    seen = set()
    for top, leaves in d_params.items():
        items = [(f"blocks.{top.split('_')[1]}.{block[k]}", v) for k, v in leaves.items()] \
            if top.startswith("ResBlock") else [(names[top], leaves)]
        for prefix, leaf in items:
            for kind, array in leaf.items():
                key = f"{prefix}.{'weight' if kind == 'kernel' else 'bias'}"
                shape = tuple(array.shape)
                if kind == "kernel":
                    shape = shape[::-1] if len(shape) == 2 else (shape[4], shape[3], *shape[:3])
                assert tuple(state[key].shape) == shape, key
                seen.add(key)
    assert seen == set(state)


def test_discriminator_flattens_channels_last():
    model = StyleGANDiscriminator(DiscriminatorConfig(4, (1,), 2, (8, 8)))
    features = {}
    model.dense.register_forward_hook(lambda m, i, o: features.update(x=i[0]))
    conv = {}
    model.conv_out.register_forward_hook(lambda m, i, o: conv.update(x=F.leaky_relu(o, 0.2)))
    model(torch.rand(1, 3, 2, 8, 8))
    assert torch.equal(features["x"], conv["x"].permute(0, 2, 3, 4, 1).flatten(1))


# ------------------------------------------------------------- mechanics

def test_learning_rate_schedule():
    lr = lambda s: train.learning_rate(s, 1e-4, 100, 1100)
    assert lr(0) == 0.0  # optax evaluates the schedule at the update count: the first update has lr 0
    assert lr(50) == pytest.approx(5e-5)
    assert lr(100) == pytest.approx(1e-4)
    assert lr(600) == pytest.approx(5e-5)  # half-way through the cosine
    assert lr(1100) == pytest.approx(0.0, abs=1e-20) and lr(5000) == pytest.approx(0.0, abs=1e-20)
    assert train.learning_rate(0, 1e-4, 0, 10) == pytest.approx(1e-4)


def test_ema_update():
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in ema.parameters()]
    train.ema_update(ema, model, 0.9)
    for old, new, p in zip(before, ema.parameters(), model.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * p)


def test_weight_decay_only_on_linear_weights():
    model = Transformer(TransformerConfig(codebook_size=8, latent_shape=(1, 2, 2), hidden_size=8, num_layers=2,
                                          num_heads=2, mlp_dim=16))
    decay, no_decay = train.weight_decay_groups(model, 0.045)
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert decay["weight_decay"] == 0.045 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == linear_weights
    named = {id(p): n for n, p in model.named_parameters()}
    skipped = {named[id(p)] for p in no_decay["params"]}
    assert {"word_embeddings.weight", "position_embeddings.weight", "head_bias", "embeddings_ln.weight",
            "head_dense.bias"} <= skipped
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_masked_token_loss_matches_the_formula():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 4, (2, 5))
    weights = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    eps = 0.1
    soft = F.one_hot(targets, 4) * (1 - eps) + eps / 4  # Scenic: on 1 - ε + ε/K, off ε/K
    ce = -(soft * logits[..., :4].log_softmax(-1)).sum(-1)
    expected = ((ce * weights).sum(1) / (weights.sum(1) + 1e-8)).mean()
    assert torch.allclose(train.masked_token_loss(logits, targets, weights, 4, eps), expected, atol=1e-6)


def test_gradient_clipping():
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    assert float(train.clip_grad_norm(params, 1.0)) == pytest.approx(5.0)
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.0])) and torch.allclose(params[1].grad, torch.tensor([0.0, 0.8]))


# ------------------------------------------------------------- configs

def test_presets_follow_the_official_recipes():
    bair = train_config.preset("tokenizer", "bair-b")
    assert (bair.batch_size, bair.steps, bair.warmup_steps, bair.lr, bair.beta1, bair.beta2) == (128, 135_200, 338, 1e-4, 0.0, 0.99)
    assert (bair.ema_decay, bair.adversarial_weight, bair.r1_weight, bair.lecam_weight) == (0.999, 0.1, 10.0, 0.0)
    assert train_config.preset("tokenizer", "ucf-l").resolution == (128, 128)
    mt = train_config.preset("transformer", "bair-mt8-b")
    assert len(mt.tasks) == 8 and mt.steps == 202_800 and mt.warmup_steps == 5000
    assert (mt.beta1, mt.beta2, mt.weight_decay, mt.grad_clip, mt.label_smoothing) == (0.9, 0.96, 0.045, 1.0, 1e-4)
    assert train_config.preset("transformer", "ucf-b").tasks == ("full_generation",)
    assert 1.5e6 < train_config.preset("tokenizer", "small").tokenizer.num_parameters() < 2.5e6
    with pytest.raises(UsageError, match="unknown tokenizer training preset"):
        train_config.preset("tokenizer", "huge")


def test_overrides_are_typed_and_validated(tmp_path):
    config = train_config.apply_overrides(train_config.preset("tokenizer", "small"),
                                          ["lr=2e-4", "steps=10", "flip=false", "resolution=32,48",
                                           "tokenizer.channel_multipliers=[1,1,2]", "perceptual_model=net.pt"])
    assert (config.lr, config.steps, config.flip, config.resolution) == (2e-4, 10, False, (32, 48))
    assert config.tokenizer.channel_multipliers == (1, 1, 2) and config.perceptual_model == "net.pt"
    for bad, message in [("lr=fast", "not a valid float"), ("nope=1", "unknown setting 'nope'"),
                         ("steps=0", "'steps'"), ("tokenizer.filters=33", "multiple of 32"),
                         ("resolution=1,2,3", "not a valid"), ("flip=maybe", "not a valid bool"), ("lr", "key=value")]:
        with pytest.raises(UsageError, match=message):
            train_config.apply_overrides(config, [bad])
    transformer = train_config.apply_overrides(train_config.preset("transformer", "tiny"),
                                               ["tasks=frame_prediction,inpainting_c"])
    assert transformer.tasks == ("frame_prediction", "inpainting_c")
    with pytest.raises(UsageError, match="unknown task"):
        train_config.apply_overrides(transformer, ["tasks=juggling"])
    weighted = train_config.apply_overrides(transformer, ["task_weights=3,1"])
    assert weighted.task_weights == (3.0, 1.0)
    for bad in ("task_weights=1", "task_weights=1,0", "task_weights=1,nan"):
        with pytest.raises(UsageError, match="task_weights"):
            train_config.apply_overrides(transformer, [bad])
    (tmp_path / "c.yaml").write_text("steps: 7\ntransformer:\n  num_layers: 3\n")
    (tmp_path / "c.json").write_text('{"batch_size": 6, "tasks": ["full_generation"]}')
    from_yaml = train_config.load_config_file(transformer, tmp_path / "c.yaml")
    assert from_yaml.steps == 7 and from_yaml.transformer.num_layers == 3
    assert train_config.load_config_file(transformer, tmp_path / "c.json").tasks == ("full_generation",)


# ------------------------------------------------------------- stage 1

class Interrupting(Dataset):
    """Wraps a dataset and sends this process SIGINT on its n-th item (None: never)."""

    def __init__(self, base, at=None):
        self.base, self.at, self.calls = base, at, 0
        self.class_names = base.class_names

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.base[index]


def test_tokenizer_overfits_one_clip(videos, tmp_path):
    config = tokenizer_config("steps=24", "overfit_one_clip=true", "batch_size=1")
    summary = train.train_tokenizer(config, videos, tmp_path, quiet=True)
    log = metrics(tmp_path)
    assert summary["steps"] == 24 and len(log) == 24 and summary["precision"] == "float32"
    first, last = log[0]["reconstruction"], sum(r["reconstruction"] for r in log[-4:]) / 4
    assert last < first / 5  # measured: 0.25 -> 0.01
    assert summary["psnr_end_raw"] > summary["psnr_start"] + 8  # measured: 5 dB -> 20 dB
    lines = train.summary_lines(summary)  # what `magvit train --overfit-one-clip` reports
    assert lines[0].startswith("tokenizer: 24 steps") and "final losses: reconstruction" in lines[1]
    assert f"on the training clip: PSNR {summary['psnr_start']:.2f} -> {summary['psnr_end']:.2f} dB" in lines[2]
    model = load_model(tmp_path)
    assert model.transformer is None and model.config.num_frames == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "metrics.jsonl",
                                                          "model.safetensors", "training_state.pt"]


def test_tokenizer_ctrl_c_saves_and_resume_repeats_the_run(videos, tmp_path):
    from magvit_cli.data import VideoClipDataset

    data = VideoClipDataset(videos, num_frames=4, resolution=(16, 16))
    config = tokenizer_config("steps=4", "preview_every=2")
    train.train_tokenizer(config, Interrupting(data), tmp_path / "full", quiet=True)
    # 4 preview clips are read first, then 2 per step: the 7th item is fetched for step 2.
    with pytest.raises(KeyboardInterrupt):
        train.train_tokenizer(config, Interrupting(data, at=7), tmp_path / "cut", quiet=True)
    state = torch.load(tmp_path / "cut" / train.STATE_FILE, weights_only=True)
    assert state["step"] == 2
    with pytest.raises(OutputError, match="already holds a training run"):
        train.train_tokenizer(config, data, tmp_path / "cut", quiet=True)
    with pytest.raises(UsageError, match="different settings: lr"):
        train.train_tokenizer(tokenizer_config("steps=4", "lr=1e-2"), data, tmp_path / "cut", resume=True, quiet=True)
    train.train_tokenizer(config, Interrupting(data), tmp_path / "cut", resume=True, quiet=True)
    # stop_at: the same cut by request (the learning-rate schedule still runs to steps=4).
    assert train.train_tokenizer(config, Interrupting(data), tmp_path / "stop", quiet=True, stop_at=2)["steps"] == 2
    assert torch.load(tmp_path / "stop" / train.STATE_FILE, weights_only=True)["step"] == 2
    train.train_tokenizer(config, Interrupting(data), tmp_path / "stop", resume=True, quiet=True)
    full = metrics(tmp_path / "full")
    for run in ("cut", "stop"):
        cut = metrics(tmp_path / run)
        assert [r["step"] for r in cut] == [1, 2, 3, 4]
        for a, b in zip(full, cut):
            assert {k: v for k, v in a.items() if k not in ("steps_per_s", "clips_per_s", "time")} == \
                   {k: v for k, v in b.items() if k not in ("steps_per_s", "clips_per_s", "time")}
        weights = load_file(tmp_path / run / "model.safetensors")
        assert load_file(tmp_path / "full" / "model.safetensors").keys() == weights.keys()
        for key, value in load_file(tmp_path / "full" / "model.safetensors").items():
            assert torch.equal(value, weights[key]), key


def test_without_gan_term_the_discriminator_is_skipped(videos, tmp_path):
    train.train_tokenizer(tokenizer_config("steps=2", "adversarial_weight=0", "lecam_weight=0.1"), videos, tmp_path,
                          quiet=True)
    log = metrics(tmp_path)
    assert "d_loss" not in log[-1] and log[-1]["g_loss"] == pytest.approx(log[-1]["reconstruction"] + log[-1]["quantizer"])
    state = torch.load(tmp_path / train.STATE_FILE, weights_only=True)
    assert state["d_optimizer"]["state"] == {}  # never stepped


def test_nan_guard_names_the_step(tmp_path):
    class Broken(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.full((3, 4, 16, 16), float("nan")), 0

    with pytest.raises(ModelError, match=r"training diverged at step 0: .*nan"):
        train.train_tokenizer(tokenizer_config("steps=3"), Broken(), tmp_path, quiet=True)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # TorchScript files are still accepted
@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
def test_perceptual_loss_hook(kind, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten()).eval()
    if kind == "pt2":
        batch = torch.export.Dim("batch")
        program = torch.export.export(net, (torch.rand(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
        torch.export.save(program, tmp_path / "net.pt2")
        path = tmp_path / "net.pt2"
    else:
        path = tmp_path / "net.pt"
        torch.jit.script(net).save(str(path))
    loss_fn = train.PerceptualLoss(str(path), torch.device("cpu"))
    real = torch.rand(1, 3, 3, 16, 16)
    fake = torch.rand(1, 3, 3, 16, 16, requires_grad=True)
    loss = loss_fn(real, fake)
    loss.backward()
    assert loss > 0 and fake.grad.abs().sum() > 0
    assert float(loss_fn(real, real.clone())) == 0.0
    with pytest.raises(ModelError, match="perceptual-loss network"):
        train.PerceptualLoss(str(tmp_path / "missing.pt"), torch.device("cpu"))


# ------------------------------------------------------------- stage 2

def test_transformer_ctrl_c_resume_and_the_saved_model(videos, tokenizer_dir, tmp_path):
    from magvit_cli.data import VideoClipDataset

    data = VideoClipDataset(videos, num_frames=4, resolution=(16, 16))
    config = transformer_config("steps=4")
    first = train.train_transformer(config, Interrupting(data), tokenizer_dir, tmp_path / "full", quiet=True)
    assert first["eval_loss_end"] < first["eval_loss_start"]
    # 4 preview clips, then 4 items per step: the 9th item is fetched for step 1.
    with pytest.raises(KeyboardInterrupt):
        train.train_transformer(config, Interrupting(data, at=9), tokenizer_dir, tmp_path / "cut", quiet=True)
    assert torch.load(tmp_path / "cut" / train.STATE_FILE, weights_only=True)["step"] == 2
    train.train_transformer(config, Interrupting(data), tokenizer_dir, tmp_path / "cut", resume=True, quiet=True)
    full, cut = metrics(tmp_path / "full"), metrics(tmp_path / "cut")
    assert [r["loss"] for r in full] == [r["loss"] for r in cut]
    assert [r["mask_ratio"] for r in full] == [r["mask_ratio"] for r in cut]

    assert {"frame_prediction_psnr", "copy_last_frame_psnr"} <= set(first)
    lines = train.summary_lines(first)
    assert lines[0].startswith("transformer: 4 steps") and lines[1].startswith("final losses: loss ")
    assert lines[2] == (f"on 4 fixed training clips: masked-token loss {first['eval_loss_start']:.3g} -> "
                        f"{first['eval_loss_end']:.3g}")
    assert lines[3] == (f"frame prediction PSNR: model {first['frame_prediction_psnr']:.2f} dB, "
                        f"copying the last frame {first['copy_last_frame_psnr']:.2f} dB")

    model = load_model(tmp_path / "cut")
    assert model.config.tasks == ["frame_prediction", "full_generation"]
    assert model.config.class_names == ["jump", "walk"] and model.transformer.config.num_classes == 2
    assert model.transformer.config.multi_task and model.config.latent_shape == (2, 8, 8)
    assert model.run_task("full_generation", None, model.labels("walk", 1)).shape == (1, 3, 4, 16, 16)
    from magvit_cli.cli import main

    assert main(["predict", str(videos / "walk" / "v0.mp4"), "--model", str(tmp_path / "cut"), "--frames", "3",
                 "-o", str(tmp_path / "out.mp4"), "--quiet", "--seed", "0"]) == 0
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_token_cache_trains_like_the_live_tokenizer(videos, tokenizer_dir, tmp_path):
    config = transformer_config("steps=2", "overfit_one_clip=true", "transformer.dropout=0.0",
                                "tasks=outpainting_c,full_generation")
    live = train.train_transformer(config, videos, tokenizer_dir, tmp_path / "live", quiet=True)
    cached = train.train_transformer(config, videos, tokenizer_dir, tmp_path / "cached", quiet=True,
                                     token_cache=tmp_path / "cache")
    assert (tmp_path / "cache" / "cond_outpainting_c.npy").is_file()
    assert [r["loss"] for r in metrics(tmp_path / "live")] == pytest.approx([r["loss"] for r in metrics(tmp_path / "cached")], abs=1e-6)
    assert live["eval_loss_end"] == pytest.approx(cached["eval_loss_end"], abs=1e-6)


def test_task_weights_set_how_often_each_task_is_trained(videos, tokenizer_dir, tmp_path):
    seen = []
    real_loss = train._transformer_loss

    def spy(model, tconfig, task, *args):
        seen.append(task)
        return real_loss(model, tconfig, task, *args)

    config = transformer_config("steps=12", "task_weights=5,1")
    train._transformer_loss = spy
    try:
        train.train_transformer(config, videos, tokenizer_dir, tmp_path / "run", quiet=True)
    finally:
        train._transformer_loss = real_loss
    trained = seen[2:14]  # the first two calls are the eval loss of each task before training
    expected = train.task_lib.TaskSchedule.create(config.tasks, (5, 1), seed=config.seed)
    assert trained == [expected.task_for_step(s) for s in range(12)]
    assert trained.count("frame_prediction") > trained.count("full_generation")


def test_init_starts_from_a_model_and_checks_it_matches(videos, tokenizer_dir, tmp_path):
    config = transformer_config("steps=3", "transformer.dropout=0.0")
    first = train.train_transformer(config, videos, tokenizer_dir, tmp_path / "first", quiet=True)
    tuned = train.train_transformer(config, videos, tokenizer_dir, tmp_path / "tuned", quiet=True,
                                    init=tmp_path / "first")
    # The same fixed clips score the same: the new run starts where the first one ended.
    assert tuned["eval_loss_start"] == pytest.approx(first["eval_loss_end"], abs=1e-5)
    fresh = train.train_transformer(config, videos, tokenizer_dir, tmp_path / "fresh", quiet=True)
    assert fresh["eval_loss_start"] > first["eval_loss_end"] + 0.01

    other_tasks = transformer_config("steps=1", "tasks=frame_prediction,inpainting_c")
    with pytest.raises(UsageError, match="cannot start from .*tasks"):
        train.train_transformer(other_tasks, videos, tokenizer_dir, tmp_path / "other", quiet=True,
                                init=tmp_path / "first")
    torch.manual_seed(1)
    other_tokenizer = save_model(tmp_path / "tok2", Magvit(ModelConfig(tokenizer=tokenizer_config().tokenizer,
                                                                      num_frames=4, resolution=(16, 16))))
    with pytest.raises(UsageError, match="its tokenizer differ"):
        train.train_transformer(config, videos, other_tokenizer, tmp_path / "other2", quiet=True,
                                init=tmp_path / "first")
    with pytest.raises(UsageError, match="--init"):
        train.train_transformer(config, videos, tokenizer_dir, tmp_path / "tuned", quiet=True, resume=True,
                                init=tmp_path / "first")


def test_decoder_only_fine_tune_keeps_the_tokens(videos, tokenizer_dir, tmp_path):
    """--init copies a model's tokenizer; decoder_only trains the decoder alone, so every clip
    gets the same tokens as before and a transformer trained on them still fits."""
    config = tokenizer_config("steps=3", "decoder_only=true", "ema_decay=0")
    summary = train.train_tokenizer(config, videos, tmp_path / "tuned", quiet=True, init=tokenizer_dir)
    base, tuned = load_model(tokenizer_dir), load_model(tmp_path / "tuned")
    clips = torch.rand(2, 3, 4, 16, 16)
    assert torch.equal(base.encode(clips), tuned.encode(clips))
    before, after = base.tokenizer.state_dict(), tuned.tokenizer.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("decoder.") for name in changed)
    assert summary["psnr_start"] == pytest.approx(train.train_tokenizer(
        tokenizer_config("steps=1"), videos, tmp_path / "again", quiet=True, init=tokenizer_dir)["psnr_start"])

    with pytest.raises(UsageError, match="cannot start from .*tokenizer shape"):
        train.train_tokenizer(tokenizer_config("steps=1", "tokenizer.codebook_size=64"), videos,
                              tmp_path / "other", quiet=True, init=tokenizer_dir)
    with pytest.raises(UsageError, match="--init"):
        train.train_tokenizer(config, videos, tmp_path / "tuned", quiet=True, resume=True, init=tokenizer_dir)


def test_class_conditional_tasks_need_labels(tokenizer_dir, tmp_path):
    flat = tmp_path / "flat"
    make_folder(flat, count=2, classes=("",))
    with pytest.raises(UsageError, match="need class labels"):
        train.train_transformer(transformer_config("steps=1"), flat, tokenizer_dir, tmp_path / "out", quiet=True)


# ------------------------------------------------------------- torchrun-style data parallelism

NO_DROPOUT = ("steps=2", "transformer.dropout=0.0", "transformer.attention_dropout=0.0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, videos: str, tokenizer: str, out: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        digests = {
            "transformer": train.train_transformer(transformer_config(*NO_DROPOUT), videos, tokenizer,
                                                   Path(out) / "transformer", quiet=True)["weights_sha256"],
            "tokenizer": train.train_tokenizer(tokenizer_config("steps=2"), videos, Path(out) / "tokenizer",
                                               quiet=True)["weights_sha256"],
        }
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(digests))  # every rank reports its own weights
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_two_processes_match_one_process(videos, tokenizer_dir, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(videos), str(tokenizer_dir), str(tmp_path / "ddp")), nprocs=2)
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # identical weights on both ranks, both stages

    train.train_transformer(transformer_config(*NO_DROPOUT), videos, tokenizer_dir, tmp_path / "one" / "transformer",
                            quiet=True)
    train.train_tokenizer(tokenizer_config("steps=2"), videos, tmp_path / "one" / "tokenizer", quiet=True)
    two = load_file(tmp_path / "ddp" / "transformer" / "model.safetensors")
    one = load_file(tmp_path / "one" / "transformer" / "model.safetensors")
    assert max(float((two[k] - one[k]).abs().max()) for k in one) < 1e-5  # lr 1e-3: float noise only
    losses = lambda p, key: [r[key] for r in metrics(p)]
    assert losses(tmp_path / "ddp" / "transformer", "loss") == pytest.approx(losses(tmp_path / "one" / "transformer", "loss"), abs=1e-6)
    # Stage 1: the entropy loss is computed over each process's own batch, as in the official
    # code (per device), so only what does not depend on it must match one process.
    for key in ("reconstruction", "d_loss", "r1"):
        assert losses(tmp_path / "ddp" / "tokenizer", key) == pytest.approx(losses(tmp_path / "one" / "tokenizer", key), abs=1e-6)
    state = lambda p: torch.load(p / "tokenizer" / train.STATE_FILE, weights_only=True)["discriminator"]
    two, one = state(tmp_path / "ddp"), state(tmp_path / "one")
    assert max(float((two[k] - one[k]).abs().max()) for k in one) < 1e-5


def test_sampler_splits_global_batches_and_resumes():
    def take(world, rank, start, count):
        sampler = train.EpochSampler(10, 4, train.Runtime(rank=rank, world_size=world), seed=0, shuffle=True,
                                     start_step=start)
        pairs = iter(sampler)
        return [next(pairs) for _ in range(count)]

    one = take(1, 0, 0, 4 * 6)  # 6 global batches: 2 per epoch of 10 items (the last 2 are dropped)
    assert [e for e, _ in one] == [0] * 8 + [1] * 8 + [2] * 8
    assert len(set(i for e, i in one if e == 0)) == 8
    two = [take(2, r, 0, 2 * 6) for r in range(2)]
    for k in range(6):  # global batch k = union of the ranks' local batches k
        assert sorted(one[4 * k:4 * k + 4]) == sorted(two[0][2 * k:2 * k + 2] + two[1][2 * k:2 * k + 2])
    assert take(1, 0, 3, 4 * 3) == one[12:]  # restarting at step 3 continues the same sequence
    tiny = take(1, 0, 0, 8)  # fewer items than a global batch: repeated
    small = train.EpochSampler(3, 4, train.Runtime(), seed=0, shuffle=False)
    assert [i for _, i in [next(iter(small)) for _ in range(1)]] == [0] and len(tiny) == 8
