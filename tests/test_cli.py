"""The CLI end to end on a tiny random model: every task writes a valid video,
errors map to their exit codes, nothing partial is left behind."""

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from magvit_cli import errors, video as vio
from magvit_cli.cli import main
from magvit_cli.model import Magvit


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """20 frames of a moving gradient at 48x40, 12 fps."""
    path = tmp_path_factory.mktemp("clips") / "moving.mp4"
    t = np.arange(20)[:, None, None]
    y, x = np.mgrid[0:40, 0:48]
    frames = np.stack([(x * 5 + t * 6) % 256, (y * 6 + 0 * t) % 256, (x + y + t * 9) % 256], axis=-1).astype(np.uint8)
    vio.write_video(path, iter(frames), Fraction(12))
    return path


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_task_command(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("predict", "interpolate", "outpaint", "inpaint", "generate", "reconstruct", "convert",
                    "download", "info"):
        assert command in out


HELP_WITHOUT_TORCH = """
import sys
from magvit_cli.cli import app, main
import typer
group = typer.main.get_group(app)
commands = [[name] for name in group.commands] + [["train", name] for name in group.commands["train"].commands]
for argv in [["--help"]] + [c + ["--help"] for c in commands] + [["info", sys.argv[1]], ["info", sys.argv[1], "--json"]]:
    assert main(argv) == 0, argv
    assert "torch" not in sys.modules, f"magvit {' '.join(argv)} imported torch"
print(len(commands))
"""


def test_help_and_info_answer_without_importing_torch(clip):
    """`magvit --help`, every COMMAND --help and `magvit info` answer in a fraction of a second:
    PyTorch (seconds to import) is loaded only by commands that run a model."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH, str(clip)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) >= 12  # every command was asked


@pytest.mark.parametrize("args, expect", [
    (["predict", "--frames", "5"], dict(frames=20 + 5)),
    (["predict", "--frames", "20", "--class", "class_1"], dict(frames=20 + 20)),
    (["interpolate", "--factor", "3"], dict(frames=19 * 3 + 1, fps=Fraction(36))),
    (["interpolate", "--fps", "30"], dict(frames=48, fps=Fraction(30))),  # 19 * 30/12 + 1, rounded down
    (["outpaint", "--direction", "all"], dict(frames=20, size=(80, 96))),  # 50% more on every side
    (["outpaint", "--direction", "horizontal"], dict(frames=20, size=(40, 96))),
    (["outpaint", "--direction", "vertical"], dict(frames=20, size=(80, 48))),
    (["outpaint", "--direction", "right"], dict(frames=20, size=(40, 72))),
    (["outpaint", "--direction", "up", "--amount", "10"], dict(frames=20, size=(50, 48))),
    (["outpaint", "--direction", "dynamic"], dict(frames=20, size=(40, 96))),
    (["inpaint", "--mask", "box"], dict(frames=20)),
    (["inpaint", "--mask", "dynamic-box"], dict(frames=20)),
    (["inpaint", "--mask", "box", "--no-composite"], dict(frames=20, size=(32, 32))),  # raw, the model's size
])
def test_tasks_write_valid_videos(clip, tiny_model_dir, tmp_path, capsys, args, expect):
    """Outputs keep the input's size (48x40) and rate unless the task changes them."""
    out_path = tmp_path / "out.mp4"
    code, out, err = run([args[0], clip, *args[1:], "--model", tiny_model_dir, "-o", out_path, "--seed", "1",
                          "--steps", "2", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "ok" and result["output"] == str(out_path)
    assert result["seed"] == 1 and result["settings"]["steps"] == 2
    info = vio.probe(out_path)
    assert info.num_frames == expect["frames"] == result["frames"]
    assert (info.height, info.width) == expect.get("size", (40, 48))
    assert info.fps == expect.get("fps", Fraction(12))


def test_generate_numbers_several_outputs(tiny_model_dir, tmp_path, capsys):
    base = tmp_path / "gen.mp4"
    code, out, err = run(["generate", "--class", "2", "--count", "2", "--model", tiny_model_dir, "-o", base,
                          "--steps", "3", "--json"], capsys)
    assert code == 0, err
    outputs = [Path(p) for p in json.loads(out)["outputs"]]
    assert [p.name for p in outputs] == ["gen.0.mp4", "gen.1.mp4"]
    for p in outputs:
        info = vio.probe(p)
        assert (info.num_frames, info.height, info.width, info.fps) == (16, 32, 32, Fraction(8))


def test_generate_in_batches_keeps_the_first_clips(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """Clips are made a batch at a time (batch i with seed + i): asking for more clips
    with the same seed adds clips after the ones a smaller --count gave."""
    import magvit_cli
    from magvit_cli import edit

    monkeypatch.setattr(edit, "GENERATE_BATCH", 2)
    model = magvit_cli.load_model(tiny_model_dir)
    options = magvit_cli.DecodeOptions(seed=5, steps=2, dtype="float32")
    two, three = (edit.generate(model, 1, count, options=options) for count in (2, 3))
    assert three.shape == (3, 3, 16, 32, 32) and torch.equal(two, three[:2])
    frames = {}
    for count in (2, 3):
        base = tmp_path / f"c{count}" / "gen.mp4"
        base.parent.mkdir()
        code, out, err = run(["generate", "--class", "1", "--count", str(count), "--model", tiny_model_dir,
                              "-o", base, "--steps", "2", "--seed", "5", "--dtype", "float32", "--json"], capsys)
        assert code == 0, err
        frames[count] = [vio.read_video(p)[0] for p in json.loads(out)["outputs"]]
    assert len(frames[3]) == 3

    def distance(a, b) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    # Same clips, up to the lossy H.264 round trip (one full-suite run on a loaded machine
    # saw 10 % of the 8-bit values of later frames off by a few levels; never alone), and far
    # closer to each other than two different clips are.
    apart = distance(frames[3][0], frames[3][1])
    assert apart > 5
    for a, b in zip(frames[2], frames[3][:2]):
        assert distance(a, b) < apart / 10


def test_same_seed_same_output(tiny_model_dir):
    import magvit_cli
    from magvit_cli import edit

    model = magvit_cli.load_model(tiny_model_dir)
    video = torch.rand(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    options = magvit_cli.DecodeOptions(seed=7, steps=5)
    a = edit.inpaint(model, video, mask="box", options=options)
    b = edit.inpaint(model, video, mask="box", options=options)
    c = edit.inpaint(model, video, mask="box", options=magvit_cli.DecodeOptions(seed=8, steps=5))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_inpaint_tensor_keeps_known_pixels(tiny_model_dir):
    """The tensor API edits like the command: only the hole (the central half, 4 px cells)
    and a feathered band of half a cell around it change; the rest is the input's 8-bit value."""
    import magvit_cli
    from magvit_cli import edit

    model = magvit_cli.load_model(tiny_model_dir)
    video = torch.rand(3, 16, 32, 32, generator=torch.Generator().manual_seed(1)).mul(255).round().div(255)
    out = edit.inpaint(model, video, mask="box", options=magvit_cli.DecodeOptions(seed=0, steps=3))
    assert out.shape == video.shape
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[6:26, 6:26] = False
    assert torch.equal(out[..., outside], video[..., outside])
    hole = torch.zeros(32, 32, dtype=torch.bool)
    hole[8:24, 8:24] = True
    assert (out[..., hole] - video[..., hole]).abs().mean() > 0.05


def test_default_output_name_and_no_partial_file_on_interrupt(clip, tiny_model_dir, capsys, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Magvit, "run_task", interrupted)
    code, _, err = run(["inpaint", clip, "--model", tiny_model_dir], capsys)
    assert code == errors.EXIT_INTERRUPTED and "interrupted" in err
    assert sorted(p.name for p in clip.parent.iterdir()) == [clip.name]


def test_errors_map_to_exit_codes(clip, tiny_model_dir, tmp_path, capsys):
    cases = [
        (["predict", tmp_path / "missing.mp4", "--model", tiny_model_dir], errors.EXIT_INPUT),
        (["predict", clip, "--model", tmp_path / "no-model"], errors.EXIT_MODEL),
        (["predict", clip, "--model", tiny_model_dir, "--device", "cuda"], errors.EXIT_UNSUPPORTED),
        (["predict", clip, "--model", tiny_model_dir, "-o", clip], errors.EXIT_OUTPUT),
        (["predict", clip, "--model", tiny_model_dir, "-o", tmp_path / "no" / "dir" / "x.mp4"], errors.EXIT_OUTPUT),
        (["predict", clip, "--model", tiny_model_dir, "--steps", "0"], errors.EXIT_USAGE),
        (["predict", clip, "--model", tiny_model_dir, "--frames", "-2"], errors.EXIT_USAGE),
        (["predict", clip, "--model", tiny_model_dir, "--class", "99"], errors.EXIT_USAGE),
        (["predict", clip, "--no-such-option"], errors.EXIT_USAGE),
        (["outpaint", clip, "--model", tiny_model_dir, "--direction", "sideways"], errors.EXIT_USAGE),
        (["outpaint", clip, "--model", tiny_model_dir, "--amount", "lots"], errors.EXIT_USAGE),
        (["inpaint", clip, "--model", tiny_model_dir, "--mask", "1,2,3"], errors.EXIT_USAGE),
        (["inpaint", clip, "--model", tiny_model_dir, "--mask", tmp_path / "nope.png"], errors.EXIT_INPUT),
        (["inpaint", clip, "--model", tiny_model_dir, "--overlap", "12"], errors.EXIT_USAGE),
        (["interpolate", clip, "--model", tiny_model_dir, "--fps", "6"], errors.EXIT_USAGE),
        (["interpolate", clip, "--model", tiny_model_dir, "--factor", "2", "--fps", "30"], errors.EXIT_USAGE),
        (["predict", clip, clip, "--model", tiny_model_dir, "-o", tmp_path / "x.mp4"], errors.EXIT_USAGE),
        (["inpaint", clip, "--model", tiny_model_dir, "--start", "5"], errors.EXIT_USAGE),
        (["generate", "--class", "nope", "--model", tiny_model_dir], errors.EXIT_USAGE),
    ]
    if torch.cuda.is_available():
        cases = [c for c in cases if "cuda" not in c[0]]
    for args, expected in cases:
        code, out, err = run(args, capsys)
        assert code == expected, (args, err)
        assert "Traceback" not in err
        assert err.strip(), args
    assert sorted(p.name for p in clip.parent.iterdir()) == [clip.name]


def test_task_not_trained_is_unsupported_unless_forced(clip, tmp_path, capsys):
    from magvit_cli.checkpoint import save_model

    from conftest import tiny_model_config

    folder = tmp_path / "fp-only"
    save_model(folder, Magvit(tiny_model_config(tasks=["frame_prediction"])))
    code, _, err = run(["inpaint", clip, "--model", folder], capsys)
    assert code == errors.EXIT_UNSUPPORTED and "not trained for IPC" in err
    code, _, err = run(["inpaint", clip, "--model", folder, "--force", "--steps", "2", "-o", tmp_path / "f.mp4"],
                       capsys)
    assert code == 0, err


def test_every_error_class_has_its_exit_code():
    table = {
        errors.UsageError: 2, errors.InputError: 3, errors.ModelError: 4, errors.UnsupportedError: 5,
        errors.OutputError: 6, errors.OutOfMemoryError: 7, errors.Interrupted: 130,
    }
    for cls, code in table.items():
        assert cls("x").exit_code == code
        assert code in errors.EXIT_CODES
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code in errors.EXIT_CODES:
        assert f"| {code} |" in readme


def test_info_reports_metadata_and_windows(clip, tiny_model_dir, capsys):
    code, out, err = run(["info", clip, "--model", tiny_model_dir, "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert (data["frames"], data["width"], data["height"], data["fps"]) == (20, 48, 40, "12")
    assert (data["variable_frame_rate"], data["bit_depth"]) == (False, 8)
    assert data["plan"]["windows"] == 2 and data["plan"]["tokens_per_window"] == "4x8x8"
    assert data["plan"]["overlap"] == 4  # windows 0-15 and 12-19


def test_reconstruct_writes_video_tokens_and_metrics(clip, tiny_model_dir, tmp_path, capsys):
    tokens = tmp_path / "tokens.npz"
    code, out, err = run(["reconstruct", clip, "--model", tiny_model_dir, "--tokens", tokens,
                          "-o", tmp_path / "rec.mp4", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert 0 < result["psnr"] < 100 and -1 <= result["ssim"] <= 1 and 1 <= result["codes_used"] <= 32
    grid = np.load(tokens)["codes"]
    assert grid.shape == (2, 4, 8, 8)
    code, out, err = run(["reconstruct", tokens, "--model", tiny_model_dir, "-o", tmp_path / "dec.mp4", "--json"],
                         capsys)
    assert code == 0, err
    assert vio.probe(tmp_path / "dec.mp4").num_frames == 20  # the padded last window is trimmed


def test_reconstruct_streams_windows_with_whole_clip_metrics(clip, tiny_model_dir, tmp_path, capsys):
    """reconstruct goes through the video a window at a time; its PSNR/SSIM are those of the
    whole clip's round trip (per-frame values averaged over every frame)."""
    import magvit_cli
    from magvit_cli import edit, metrics
    from magvit_cli.geometry import fit_center

    code, out, err = run(["reconstruct", clip, "--model", tiny_model_dir, "-o", tmp_path / "rec.mp4", "--json"],
                         capsys)
    assert code == 0, err
    result = json.loads(out)
    model = magvit_cli.load_model(tiny_model_dir)
    video, _ = fit_center(vio.frames_to_tensor(vio.read_video(clip)[0]).unsqueeze(0), model.config.resolution)
    recon = edit.reconstruct(model, video)  # the same windows, on a tensor
    assert result["frames"] == video.shape[2] == 20
    assert result["psnr"] == pytest.approx(float(metrics.psnr(recon, video)[0]), abs=1e-3)
    assert result["ssim"] == pytest.approx(float(metrics.ssim(recon, video)[0]), abs=1e-4)
    assert vio.probe(tmp_path / "rec.mp4").num_frames == 20


def test_info_on_an_example_clip_matches_the_container(tiny_model_dir, capsys):
    import av

    clip = Path(__file__).resolve().parents[1] / "examples" / "city.mp4"
    code, out, err = run(["info", clip, "--json", "--model", tiny_model_dir], capsys)
    assert code == 0, err
    data = json.loads(out)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (data["width"], data["height"]) == (stream.width, stream.height)
        assert Fraction(data["fps"]) == stream.average_rate
        assert data["frames"] == frames
        assert data["codec"] == stream.codec_context.name
        assert data["audio"] == bool(container.streams.audio)



def test_old_temperature_flag_still_sets_the_choice_temperature(clip, tiny_model_dir, tmp_path, capsys):
    """--temperature was the choice temperature's name: it keeps working, with a notice, and
    gives what --choice-temperature gives; --sample-temperature is the other temperature."""
    common = ["predict", clip, "--model", tiny_model_dir, "--steps", "2", "--seed", "4", "--frames", "4", "--json",
              "--no-composite"]
    code, out, err = run([*common, "--temperature", "0.5", "-o", tmp_path / "old"], capsys)
    assert code == 0 and "--choice-temperature" in err
    old = json.loads(out)
    code, out, err = run([*common, "--choice-temperature", "0.5", "-o", tmp_path / "new"], capsys)
    assert code == 0 and "note" not in err
    new = json.loads(out)
    assert old["settings"]["choice_temperature"] == new["settings"]["choice_temperature"] == 0.5
    assert np.array_equal(vio.read_video(tmp_path / "old")[0], vio.read_video(tmp_path / "new")[0])  # PNG frames
    code, out, err = run([*common, "--sample-temperature", "0.25", "-o", tmp_path / "cold.mp4"], capsys)
    assert code == 0 and json.loads(out)["settings"]["temperature"] == 0.25
