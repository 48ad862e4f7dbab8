"""Running `zoo train` as real processes (one, or torchrun ranks) for the trainer tests (tests/test_train.py,
tests/test_resume_matrix.py): a tiny GPT recipe, the environment, the command, the logged losses, kill -9."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil  # a dependency of peft

TINY = ["--set", "data.tokenizer=char", "--set", "model.backbone.n_layers=2", "--set", "model.backbone.dim=32",
        "--set", "model.backbone.n_heads=2", "--set", "model.backbone.max_seq_len=16", "--set", "train.batch_size=8",
        "--set", "train.log_every=1", "--set", "train.eval_every=0", "--set", "train.tensorboard=false",
        "--set", "train.warmup=2", "--set", "train.lr=3e-3"]


def env_for(zoo_home) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ZOO_HOME": str(zoo_home), "PYTHONUNBUFFERED": "1"}


def zoo_train_cmd(nproc: int | None, *args) -> list[str]:
    if nproc is None:
        return [sys.executable, "-m", "zoo.cli", "train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "zoo.cli", "train", *args]


def losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def run(cmd, zoo_home, timeout=240):
    result = subprocess.run(cmd, env=env_for(zoo_home), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def kill_process_tree(process: subprocess.Popen):
    """kill -9 torchrun and its workers (started in their own sessions, so a process-group kill misses them)."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(tree, timeout=30)
    process.wait()
