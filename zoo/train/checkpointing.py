"""Atomic training checkpoints with exact resume.

A checkpoint is a directory `checkpoints/step_00000010/`. It is written under a temporary name
(`.tmp_step_00000010`), its files and directory are fsynced, the `COMPLETE` marker goes in last, then the
directory is renamed into place: a run killed mid-write leaves only a `.tmp_*` directory that resume ignores,
and the last good checkpoint untouched. Old checkpoints are renamed away (`.trash_*`) before they are
deleted, so a kill mid-delete never leaves a `step_*` directory with its marker but not its files. The next
save removes whatever a killed run left (every name starting with "." is a temporary).

A save that fails with an OS error (disk full, quota, I/O) removes its temporary directory and raises
CheckpointError naming the previous checkpoint, which nothing has touched: the run can resume from it.

Contents: model + optimizer + tensors laid out like the parameters (the EMA weights), written the way the
strategy keeps them (zoo/train/strategy.py: one file from rank 0, or DCP shards from every rank under
FSDP), the trainer state (step, data position, grad scaler, EMA settings, non-finite counters) and each
rank's RNG states (python, numpy, torch, cuda). Everything is read back with `weights_only=True` or DCP:
no arbitrary unpickling.
"""

import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from zoo.checkpoint import torch_load
from zoo.errors import CheckpointError, CorruptFileError
from zoo.train.distributed import any_rank
from zoo.train.strategy import Single
from zoo.utils import publish

MARKER = "COMPLETE"
STEP_DIR = re.compile(r"step_(\d+)")
TMP, TRASH = ".tmp_", ".trash_"  # being written, being deleted


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": numpy_state[2],
                       "has_gauss": numpy_state[3], "cached_gaussian": numpy_state[4]}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return []
    done = [d for d in root.iterdir() if STEP_DIR.fullmatch(d.name) and (d / MARKER).exists()]
    return sorted(done, key=step_of)


def step_of(checkpoint: Path) -> int:
    return int(STEP_DIR.fullmatch(checkpoint.name)[1])


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(run_dir: Path, step: int, strategy: Single, model, optimizer, trainer_state: dict,
                    sharded: dict, keep: int = 2) -> Path:
    """Every rank calls this. Rank 0 publishes the directory once all ranks have written their parts, then
    deletes all but the newest `keep` checkpoints (keep <= 0 deletes none)."""
    env = strategy.env
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step:08d}", root / f"{TMP}step_{step:08d}"
    previous = latest_checkpoint(run_dir)

    def prepare():
        remove_leftovers(root)
        tmp.mkdir(parents=True)

    def write():
        strategy.save(model, optimizer, tmp, sharded)
        if env.is_main:
            torch.save(trainer_state, tmp / "trainer.pt")
        torch.save(rng_state(), tmp / f"rng_rank{env.rank}.pt")

    def finish():
        # Data on disk before the marker and the rename, so a crash of the machine (not only of the process)
        # cannot leave a published checkpoint whose files are empty; DCP's writer fsyncs its shards the same way.
        fsync_tree(tmp)
        (tmp / MARKER).write_text(json.dumps({"step": step, "world_size": env.world_size,
                                              "strategy": strategy.name}))
        fsync_path(tmp / MARKER)
        fsync_path(tmp)
        publish(tmp, final)  # the checkpoint appears whole or not at all
        fsync_path(root)  # the rename itself

    # Each phase ends with every rank learning whether any rank failed (an all-reduce, which also orders the
    # phases as a barrier would), so all ranks stop together instead of waiting on one that gave up.
    for phase, everywhere in ((prepare, False), (write, True), (finish, False)):
        error = attempt(phase) if everywhere or env.is_main else None
        if any_rank(error is not None, env.device):
            if env.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(failure_message(step, final, failure_reason(error), previous))
    if env.is_main:
        for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
            delete_dir(old)
    env.barrier()
    return final


def attempt(phase: Callable[[], None]) -> BaseException | None:
    """Run one phase of a save; return the write error it raised (any other exception is a bug and propagates)."""
    try:
        phase()
    except BaseException as error:  # DCP's CheckpointException is a BaseException, not an Exception
        if not is_write_error(error):
            raise
        return error
    return None


def is_write_error(error: BaseException) -> bool:
    """An OSError (disk full, quota, I/O, permissions), also when DCP gathers one from any rank into its
    CheckpointException. DCP's module is looked up, not imported: it is loaded only if a strategy used it."""
    if isinstance(error, OSError):
        return True
    api = sys.modules.get("torch.distributed.checkpoint.api")
    return (api is not None and isinstance(error, api.CheckpointException)
            and any(isinstance(exc, OSError) for exc, _ in error.failures.values()))


def failure_reason(error: BaseException | None) -> str:
    """The OS errors behind a failed save, the same text on every rank (a collective: every rank calls it)."""
    if error is None:
        mine = None
    elif isinstance(error, OSError):
        mine = str(error)
    else:  # DCP's CheckpointException, already gathered from every rank: its errors without their tracebacks
        mine = "; ".join(f"rank {rank}: {exc}" for rank, (exc, _) in error.failures.items())
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return mine
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return "; ".join(dict.fromkeys(reason if reason.startswith("rank ") else f"rank {rank}: {reason}"
                                   for rank, reason in enumerate(everyone) if reason is not None))


def failure_message(step: int, final: Path, reason: str, previous: Path | None) -> str:
    message = f"could not write the checkpoint at step {step} to {final} ({reason}). "
    if previous is None:
        return message + "No earlier checkpoint exists, so the run cannot be resumed; free space and start again."
    return (message + f"The previous checkpoint {previous} (step {step_of(previous)}) "
            f"is intact: free space and rerun with --resume to continue from it.")


def fsync_path(path: Path):
    """Flush a file's data, or a directory's entries (new names, renames), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path):
    for parent, _, files in os.walk(directory):
        for name in files:
            fsync_path(Path(parent) / name)
        fsync_path(Path(parent))


def delete_dir(directory: Path):
    """Rename away first (one atomic step: the checkpoint leaves checkpoint_dirs whole), then delete. A process
    killed mid-delete leaves a `.trash_*` directory, never a checkpoint with its marker but not its files."""
    trash = directory.with_name(TRASH + directory.name)
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(directory, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_leftovers(root: Path):
    """What killed runs left: half-written `.tmp_*` and half-deleted `.trash_*` directories (publish's own
    temporaries start with "." too). The run's ranks are all inside this save, so none is still being written."""
    if root.exists():
        for path in root.iterdir():
            if path.name.startswith(".") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith("."):
                path.unlink(missing_ok=True)


def load_checkpoint(path: Path, strategy: Single, model, optimizer, sharded: dict) -> tuple[dict, dict]:
    """Restore model, optimizer and this rank's RNG in place; returns (trainer state, the saved `sharded`).
    Every file is read with torch.load(weights_only=True) (zoo.checkpoint.torch_load): a pickle of anything but
    tensors and plain containers is an UnsafeFileError, a damaged file a CorruptFileError, each naming the file."""
    trainer_file = path / "trainer.pt"
    trainer_state = torch_load(trainer_file, map_location="cpu")  # first: a bad file fails before anything changes
    if not isinstance(trainer_state, dict):
        raise CorruptFileError(f"{trainer_file} is not a zoo trainer state: it holds a {type(trainer_state).__name__}"
                               f", expected a dict")
    saved = strategy.load(model, optimizer, path, sharded)
    rng_file = path / f"rng_rank{strategy.env.rank}.pt"
    if rng_file.exists():  # a different world size has no RNG file for new ranks: they keep their seed
        state = torch_load(rng_file)
        try:
            set_rng_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CorruptFileError(f"{rng_file} is not a zoo RNG state ({type(error).__name__}: {error})") from None
    return trainer_state, saved
