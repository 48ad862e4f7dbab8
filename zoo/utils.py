"""Small helpers every part of zoo needs: write-then-rename publishing, reading safetensors files and caches,
eval mode for a while, the git state, a file's sha256.

None knows about models or families; they live here so that no module writes its own copy.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from zoo.errors import CorruptFileError


def publish(tmp: Path, final: Path, replace_existing: bool = True) -> Path:
    """Move a fully written file or directory `tmp` onto `final` with one rename (atomic on POSIX), so a
    reader sees the old version or the new one, never half of one.

    A directory cannot be renamed over a non-empty one: with replace_existing the old one is first renamed
    aside, then deleted once the new one is in place (a process killed in between leaves no `final`, never a
    half-deleted one that still looks whole); without, an existing `final` wins (the copy another process
    finished first) and `tmp` is dropped. An old copy that a killed process left aside is deleted by the next
    replacement of the same directory: once a new `final` is in place, every old one is superseded.
    """
    tmp, final = Path(tmp), Path(final)
    if tmp.is_dir() and final.exists():
        if not replace_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return final
        return _replace_dir(tmp, final)
    elif final.exists() and not replace_existing:
        tmp.unlink()
        return final
    os.replace(tmp, final)
    return final


def _replace_dir(tmp: Path, final: Path) -> Path:
    old = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)  # the old version back rather than none
        raise
    for superseded in final.parent.iterdir():  # ours, and any a process killed before its rmtree left behind
        if superseded.name.startswith(f".{final.name}.old-"):
            shutil.rmtree(superseded, ignore_errors=True)
    return final


@contextlib.contextmanager
def written_atomically(final: str | os.PathLike, directory: bool = False,
                       replace_existing: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of `final` to write (a fresh directory if `directory`); publish it on success,
    delete it on any error. Concurrent writers (several ranks filling one cache) each write their own sibling.

        with written_atomically(cache / "images.safetensors") as tmp:
            save_file(tensors, str(tmp))
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        publish(tmp, final, replace_existing)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def read_safetensors(path: str | os.PathLike, framework: str = "pt") -> dict:
    """Every tensor of a safetensors file (torch tensors on the CPU, or numpy arrays with framework "np"); a
    malformed file is a CorruptFileError naming it."""
    try:
        with safe_open(str(path), framework=framework) as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as error:
        raise CorruptFileError(f"{path} is not a valid safetensors file ({error})") from None


def read_cache(path: str | os.PathLike, keys: Sequence[str], framework: str = "pt") -> dict | None:
    """A cache of tensors that zoo derived from data (rendered images, log-mels, latents) and wrote with
    written_atomically: its tensors, or None when the caller must build it: absent, or damaged (cut short by a
    full disk, a bad copy, an edit), or without one of `keys`. A damaged cache is deleted with a warning that
    names it; building it again loses nothing."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        tensors = read_safetensors(path, framework)
    except CorruptFileError as error:
        problem = str(error)
    else:
        missing = [key for key in keys if key not in tensors]
        if not missing:
            return tensors
        problem = f"{path} lacks {', '.join(missing)}"
    warnings.warn(f"damaged cache: {problem}; deleting it and building it again", stacklevel=2)
    path.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off (and norms in inference mode) for the duration; the model's previous mode is restored after,
    even on error, so evaluation in the middle of training leaves training as it was."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def unwrapped(model: nn.Module) -> nn.Module:
    """The family's own model inside the trainer's wrapper: DDP keeps it in .module (FSDP2 shards it in place).
    Read attributes such as .config from it; compute through the wrapper's forward, which DDP needs to sync."""
    return getattr(model, "module", model)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the zoo package: HEAD's sha, and whether zoo/ has uncommitted
    changes. (None, None) where there is no such checkout (an installed wheel, no git): provenance is recorded
    when it can be, and never fails a run.

    zoo/weights is left out of "dirty": shipped weights are data, each hash-verified against its own manifest,
    and a model trained before the previous one's weights are committed ran the same code all the same."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None, None  # zoo installed somewhere inside another repository's tree
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "zoo", ":(exclude)zoo/weights"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks: weights need not fit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
