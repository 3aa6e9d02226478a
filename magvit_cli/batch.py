"""Many inputs in one call.

Inputs are paths, glob patterns and folders (a folder of videos stands for its videos; a
folder of images is one frame-folder video). Each input gets one output (in --output-dir
or next to it), skipped when it exists unless --overwrite, so an interrupted batch resumes
where it stopped. A bad file is reported and the batch goes on; the exit code says whether
any failed. Under `torchrun` every rank takes every world_size-th input on its own device
and rank 0 prints the merged report.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import planning
from . import video as vio
from .errors import EXIT_INTERNAL, EXIT_MEMORY, MagvitError, UsageError

VIDEO_INPUTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m4v", ".gif", ".ts")
TASK_TAGS = ("predict", "interpolate", "outpaint", "inpaint", "generate", "reconstruct", "preview")
GLOB_CHARACTERS = "*?["


def expand_inputs(items: Sequence[str | os.PathLike]) -> tuple[list[Path], bool]:
    """The input videos, in order, without duplicates; and whether they came from more than
    one item, a pattern or a folder of videos (a batch even if it holds a single file).

    Folders list their videos (not their sub-folders), leaving out earlier outputs
    (clip.inpaint.mp4 and the like)."""
    if not items:
        raise UsageError("no input given", "give one or more videos, folders or glob patterns")
    paths: list[Path] = []
    expanded = len(items) > 1
    for item in items:
        text = str(item)
        path = Path(text).expanduser()
        if not path.exists() and any(c in text for c in GLOB_CHARACTERS):
            matches = sorted(glob.glob(str(path), recursive=True), key=_natural_key)
            if not matches:
                raise UsageError(f"no file matches {text}")
            paths += [Path(m) for m in matches]
            expanded = True
        elif path.is_dir() and _videos_in(path):
            paths += _videos_in(path)
            expanded = True
        else:
            paths.append(path)
    unique = list(dict.fromkeys(p.resolve() if p.exists() else p for p in paths))
    return unique, expanded


def _videos_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_INPUTS
             and not p.name.startswith(".") and not _is_output(p)]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _natural_key(text: str) -> list:
    """clip2 before clip10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


def _is_output(path: Path) -> bool:
    stem = path.stem.lower()
    return any(stem.endswith("." + tag) for tag in TASK_TAGS)


def output_for(source: Path, task: str, output_dir: Path | None) -> Path:
    """clip.mp4 -> clip.TASK.mp4, next to the input or in `output_dir`."""
    default = vio.default_output_path(source, task)
    return default if output_dir is None else output_dir / default.name


def model_revision(folder: Path, name: str | None) -> str:
    """What pins the weights: the Hub revision asked for, the snapshot's commit, or for a
    local folder the SHA-256 of its weights file (first 16 hex digits)."""
    if name and "@" in str(name) and not Path(str(name)).exists():
        return str(name).partition("@")[2]
    if folder.parent.name == "snapshots":
        return folder.name
    digest = hashlib.sha256()
    try:
        with open(folder / "model.safetensors", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return "unknown"
    return "sha256:" + digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- ranks


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        try:
            return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                       int(os.environ.get("LOCAL_RANK", "0")))
        except ValueError:
            raise UsageError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> str:
        """Under torchrun, --device auto (or cuda) means this rank's own GPU."""
        if self.distributed and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    def start(self, device: torch.device) -> None:
        if self.distributed and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def shard(self, items: list) -> list:
        return items[self.rank::self.world_size]

    def gather(self, results: list[dict]) -> list[dict] | None:
        """Every rank's results on rank 0 (None elsewhere), in input order."""
        if not self.distributed:
            return results
        gathered = [None] * self.world_size if self.rank == 0 else None
        torch.distributed.gather_object(results, gathered, dst=0)
        if self.rank != 0:
            return None
        return sorted((r for part in gathered for r in part), key=lambda r: r["index"])

    def agree(self, code: int) -> int:
        """Rank 0's exit code for every rank, once rank 0 has printed the report."""
        if not self.distributed:
            return code
        box = [code]
        torch.distributed.broadcast_object_list(box, src=0)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        return box[0]


# ---------------------------------------------------------------------------- running


def run_files(jobs: list[tuple[int, Path, Path]], process: Callable[[Path, Path], dict], overwrite: bool,
              device: torch.device, on_start: Callable[[int, Path], None] | None = None) -> list[dict]:
    """Run `process(input, output)` for each (index, input, output); a failure is recorded
    and the next file runs. Peak memory: the device's for CUDA, else the process's peak
    resident memory so far."""
    results = []
    for index, source, output in jobs:
        entry = {"index": index, "input": str(source), "output": str(output)}
        if output.exists() and not overwrite:
            results.append({**entry, "status": "skipped", "reason": "output exists (--overwrite replaces it)"})
            continue
        if on_start is not None:
            on_start(index, source)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        try:
            entry.update(process(source, output))
            entry["status"] = "ok"
        except MagvitError as e:
            entry.update(status="failed", error=str(e), exit_code=e.exit_code)
        except torch.OutOfMemoryError:
            entry.update(status="failed", error="out of memory", exit_code=EXIT_MEMORY)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - one broken file must not stop the batch
            entry.update(status="failed", error=f"internal error: {type(e).__name__}: {e}", exit_code=EXIT_INTERNAL)
        entry["seconds"] = round(time.perf_counter() - started, 3)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else planning.peak_rss()
        entry["peak_memory_mb"] = round(peak / 2 ** 20, 1)
        results.append(entry)
    return results


def summary(results: list[dict]) -> tuple[dict, int]:
    """Counts, overall status and the exit code: 0, or the first failure's code."""
    counts = {status: sum(1 for r in results if r["status"] == status) for status in ("ok", "skipped", "failed")}
    failed = [r for r in results if r["status"] == "failed"]
    code = failed[0]["exit_code"] if failed else 0
    return {"status": "failed" if failed else "ok", **counts}, code
