"""Pretrained weights that ship inside the package: zoo cannot download weights, so it carries them.

    zoo/weights/<name>/   a normal model directory (config.json, model.safetensors, tokenizer files, nested model
                          directories such as vae/, train_config.json) plus manifest.json

The manifest says how the weights were made (the exact `zoo train` command, the commit and whether zoo/ had
uncommitted changes, the machine, the wall time, the loss curve), what they score (the family's evaluation of
the shipped files themselves, after the cast to the storage dtype) and the sha256 of every file. Loading
verifies every hash and refuses files the manifest does not list, so what loads is exactly what was measured.

    ship(run_dir, name, command, wall_time_s)   a finished run -> zoo/weights/<name> (scripts/ship.py)
    remeasure(name)                             the shipped files scored again by today's evaluation
    load_shipped(name)                          verify, then load (zoo.load(name, pretrained=True) falls back here)
    reproduce(name, out)                        run the manifest's command again and compare (zoo reproduce)

ZOO_WEIGHTS_DIR replaces zoo/weights (tests, or weights kept outside the package).
"""

import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from zoo.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_pretrained, read_json_object
from zoo.config import config_to_dict, replace_config
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.evaluation import RUN_FILE, evaluate_directory
from zoo.registry import get_family
from zoo.utils import git_state, sha256_file, written_atomically

MANIFEST = "manifest.json"
LOG_FILE = "log.jsonl"
REPORT_FILE = "reproduce.json"
# The families' tokenizers: zoo_tokenizer.json (+ tokenizer.json for GPT's BPE), whisper_tokenizer.json, and the
# diffusion captions' tokenizer.json.
TOKENIZER_SUFFIX = "tokenizer.json"
STORAGE_DTYPES = ("float16", "bfloat16", "float32")
CURVE_POINTS = 200
WEIGHTS_VARIABLE = "ZOO_WEIGHTS_DIR"


class ShippedWeightsError(CorruptFileError):
    """A shipped directory that does not match its manifest: a changed, missing or unlisted file."""


# ----------------------------------------------------------------------------------------------------
# Finding and loading shipped weights


def weights_root() -> Path:
    return Path(os.environ.get(WEIGHTS_VARIABLE) or Path(__file__).resolve().parent / "weights")


def _valid_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and "/" not in name and os.sep not in name


def _check_name(name: str) -> str:
    if not _valid_name(name):
        raise InputError(f"{name!r} is not a shipped model name (a plain directory name, not starting with '.')")
    return name


def _measured(directory: Path, out_dir: Path | None = None, data_overrides: dict | None = None) -> dict[str, float]:
    """`zoo eval DIR`'s numeric figures (what a manifest records), as floats."""
    metrics = evaluate_directory(directory, out_dir=out_dir, data_overrides=data_overrides)
    return {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}


def _write_manifest(path: Path, manifest: dict) -> None:
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def shipped_names() -> list[str]:
    root = weights_root()
    if not root.is_dir():  # no weights shipped yet (or a wheel built without them)
        return []
    return sorted(p.name for p in root.iterdir() if _valid_name(p.name) and (p / MANIFEST).is_file())


def shipped_dir(name: str) -> Path | None:
    """zoo/weights/<name> when it holds shipped weights (a manifest), else None."""
    path = weights_root() / name
    return path if _valid_name(name) and (path / MANIFEST).is_file() else None


def _require(name: str) -> Path:
    directory = shipped_dir(name)
    if directory is None:
        names = shipped_names()
        raise InputError(f"no shipped weights named {name!r} in {weights_root()}; shipped: "
                         f"{', '.join(names) if names else 'none'}")
    return directory


def read_manifest(name: str) -> dict:
    return read_json_object(_require(name) / MANIFEST, "manifest")


def verify(directory: str | Path) -> dict:
    """Check every file of a shipped directory against its manifest; return the manifest. A file whose sha256
    differs, a listed file that is missing and a file the manifest does not list are each a ShippedWeightsError."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise ShippedWeightsError(f"{directory} holds no {MANIFEST}: not a shipped model directory")
    manifest = read_json_object(directory / MANIFEST, "manifest")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        raise ShippedWeightsError(f"{directory / MANIFEST} has no 'files' object mapping each file to its sha256")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise ShippedWeightsError(f"{directory / unlisted[0]} is not listed in {directory / MANIFEST}; shipped "
                                  f"weights hold exactly the files their manifest lists")
    for relative, expected in sorted(listed.items()):
        path = directory / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ShippedWeightsError(f"{directory / MANIFEST} lists {relative!r}, a path outside its directory")
        if not path.is_file():
            raise ShippedWeightsError(f"{path} is missing (listed in {directory / MANIFEST})")
        actual = sha256_file(path)
        if actual != expected:
            raise ShippedWeightsError(f"{path} does not match its manifest: sha256 expected {expected}, "
                                      f"actual {actual}")
    return manifest


def load_shipped(name: str, **overrides):
    """The shipped model `name`, after every file is checked against its manifest."""
    directory = _require(name)
    verify(directory)
    return load_pretrained(directory, **overrides)


# ----------------------------------------------------------------------------------------------------
# Shipping a finished run


def ship(run_dir: str | Path, name: str, command: str, wall_time_s: float, dtype: str = "float16",
         data_overrides: dict | None = None, root: str | Path | None = None) -> Path:
    """Copy the loadable files of a finished run into ROOT/name (default zoo/weights) with floating tensors cast to
    `dtype`, evaluate that copy as `zoo eval` does, and write its manifest last. ROOT/name is replaced in one
    rename once the new copy is complete. data_overrides change train_config.json's data section (so a shipped
    model names other shipped models rather than the maintainer's run paths)."""
    run_dir = Path(run_dir)
    _check_name(name)
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"dtype={dtype!r}; allowed: {', '.join(STORAGE_DTYPES)}")
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (run_dir / required).is_file():
            raise MissingFileError(f"{run_dir} is not a finished run: {required} is missing")
    root = Path(root) if root is not None else weights_root()
    run = json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
    with written_atomically(root / name, directory=True) as tmp:
        files = copy_loadable(run_dir, tmp, getattr(torch, dtype))
        if data_overrides:
            override_data(tmp / RUN_FILE, data_overrides)
        metrics = _measured(tmp)
        commit, dirty = (run["commit"], run.get("dirty")) if run.get("commit") else git_state()
        manifest = {
            "name": name, "command": command, "commit": commit, "dirty": dirty,
            "trained_at": _utc((run_dir / WEIGHTS_FILE).stat().st_mtime),  # when training wrote its final weights
            "machine": machine(), "wall_time_s": float(wall_time_s), "dtype": dtype, "metrics": metrics,
            "curve": loss_curve(run_dir / LOG_FILE),
            "files": {relative: sha256_file(tmp / relative) for relative in files},
        }
        _write_manifest(tmp / MANIFEST, manifest)
        verify(tmp)  # nothing else landed in the copy (evaluation writes no file without an out_dir)
    return root / name


def remeasure(name: str, root: str | Path | None = None, data_overrides: dict | None = None) -> dict[str, float]:
    """Score the shipped copy ROOT/name again as `zoo eval` does now and rewrite its manifest's metrics, for when
    the evaluation or its test data change (a sampler, a metric, a corpus fix); the weights, command, commit and
    wall time stay. The manifest then also records metrics_commit and metrics_dirty: the code that measured the
    figures, which is no longer the training commit's. data_overrides ({"corpus.train_clips": 1}) shrink data the
    evaluation does not read: every split is a pure function of (seed, split, index), so the test splits, and
    the figures, are the same. Returns the new metrics."""
    directory = (Path(root) if root is not None else weights_root()) / _check_name(name)
    manifest = verify(directory)
    metrics = _measured(directory, data_overrides=data_overrides)
    commit, dirty = git_state()
    manifest.update(metrics=metrics, metrics_commit=commit, metrics_dirty=dirty)
    with written_atomically(directory / MANIFEST) as tmp:
        _write_manifest(tmp, manifest)
    verify(directory)
    return metrics


def copy_loadable(source: Path, target: Path, dtype: torch.dtype, prefix: str = "") -> list[str]:
    """Copy what loading and evaluating the model in `source` needs: config.json, model.safetensors (floating
    tensors cast to dtype), train_config.json, tokenizer files, and each subdirectory that is itself a model
    directory (by the same rule). Checkpoints, logs, TensorBoard files and plots stay behind. Returns the copied
    paths relative to the top directory."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.iterdir()):
        relative = prefix + path.name
        if path.is_dir():
            if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
                copied += copy_loadable(path, target / path.name, dtype, relative + "/")
        elif path.name == WEIGHTS_FILE:
            cast_weights(path, target / path.name, dtype)
            copied.append(relative)
        elif path.name in (CONFIG_FILE, RUN_FILE) or path.name.endswith(TOKENIZER_SUFFIX):
            shutil.copyfile(path, target / path.name)
            copied.append(relative)
    return copied


def cast_weights(source: Path, target: Path, dtype: torch.dtype):
    """Rewrite a safetensors file with its floating tensors in dtype; integer tensors and the metadata (which
    names the tied parameters stored once) are kept."""
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    cast = {}
    for key, tensor in tensors.items():
        cast[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        if tensor.is_floating_point() and not torch.isfinite(cast[key]).all() and torch.isfinite(tensor).all():
            raise InputError(f"{source}: tensor {key!r} overflows {dtype} (largest magnitude "
                             f"{tensor.abs().max().item():.3g}); ship it in a wider dtype")
    save_file(cast, str(target), metadata=metadata)


def override_data(run_file: Path, overrides: dict):
    """Set data.* fields in a copied train_config.json, validated against the family's data config."""
    if not run_file.is_file():
        raise MissingFileError(f"data overrides need the run's {RUN_FILE}, which is missing")
    run = json.loads(run_file.read_text())
    family = get_family(run["family"])
    if family.data_config is None:
        raise InputError(f"family {family.name!r} has no data settings to override")
    data = replace_config(replace_config(family.data_config(), run.get("data", {}), "data"), overrides, "data")
    run["data"] = config_to_dict(data)
    run_file.write_text(json.dumps(run, indent=2) + "\n")


def loss_curve(log_file: Path, points: int = CURVE_POINTS) -> dict:
    """The training and validation loss of a run's log.jsonl, each evenly subsampled to at most `points`."""
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()] \
        if log_file.is_file() else []
    train = _subsample([(r["step"], r["loss"]) for r in records if "loss" in r], points)
    val = _subsample([(r["step"], r["val_loss"]) for r in records if "val_loss" in r], points)
    return {"step": [s for s, _ in train], "loss": [_finite(v) for _, v in train],
            "val_step": [s for s, _ in val], "val_loss": [_finite(v) for _, v in val]}


def _subsample(pairs: list, points: int) -> list:
    """At most `points` of them, evenly spaced, the first and the last kept."""
    if len(pairs) <= points:
        return pairs
    return [pairs[i] for i in sorted({round(k * (len(pairs) - 1) / (points - 1)) for k in range(points)})]


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None  # JSON has no NaN


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc).isoformat(timespec="seconds")


def machine() -> str:
    """What a wall time was measured on: the CPU by name, vector width and bf16 units, the GPU if any, torch.
    Not the kernel release, which differs between hosts of one kind (older manifests have it)."""
    from zoo.train.strategy import describe_cpu

    cuda = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{platform.system()} {platform.machine()}, {describe_cpu()}, {os.cpu_count()} CPUs{cuda}, "
            f"torch {torch.__version__}")


# ----------------------------------------------------------------------------------------------------
# Reproducing shipped weights


def reproduce_argv(command: str, out: Path) -> tuple[dict[str, str], list[str]]:
    """The manifest's shell command as (environment, argv) with its --out replaced by `out` (added if absent).
    Leading VAR=value words become environment variables; `zoo` and `python` are this interpreter's."""
    words = shlex.split(command)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words:
        raise InputError(f"the manifest's command {command!r} runs nothing")
    if words[0] == "zoo":
        script = Path(sys.executable).with_name("zoo")  # the console script installed beside this interpreter
        words[:1] = [str(script)] if script.is_file() else [sys.executable, "-m", "zoo.cli"]
    elif words[0] in ("python", "python3"):
        words[0] = sys.executable
    for i, word in enumerate(words):
        if word == "--out" and i + 1 < len(words):
            words[i + 1] = str(out)
            break
        if word.startswith("--out="):
            words[i] = f"--out={out}"
            break
    else:
        words += ["--out", str(out)]
    return env, words


def slow_precision(name: str, sets: list[str]) -> bool:
    """Whether reproducing `name` (its recorded command, then `sets`) would train in bf16 on a device without bf16
    units: the precision and device its recipe gives, as the command's --set items and `sets` change them."""
    from zoo.config import parse_sets
    from zoo.registry import get_model_entry
    from zoo.train.distributed import setup
    from zoo.train.strategy import has_bf16_units, resolve_precision
    from zoo.train.trainer import TrainConfig

    words = shlex.split(read_manifest(name)["command"])
    items = [word for flag, word in zip(words, words[1:]) if flag == "--set"] + list(sets)
    settings = {"precision": TrainConfig.precision, "device": TrainConfig.device, **get_model_entry(name).train,
                **parse_sets(items)["train"]}  # the last --set of a field wins, as in `zoo train`
    device = setup(False, settings["device"]).device
    return resolve_precision(settings["precision"], device) == "bf16" and not has_bf16_units(device)


def reproduce(name: str, out: str | Path | None = None, sets: list[str] = (), resume: bool = False) -> dict:
    """Run the shipped model's training command again into `out` (default runs/reproduce/NAME), evaluate the
    result as `zoo eval` does and compare it with the shipped metrics; the report is also written to
    OUT/reproduce.json. `sets` (SECTION.FIELD=VALUE) are added after the recorded command's own --set items, so
    they win: e.g. train.precision=auto where the recorded bf16 has no bf16 units to run on. `resume` continues
    an interrupted reproduction from its latest checkpoint in `out` (the trainer refuses changed settings);
    without it a second reproduce starts over in its directory."""
    from zoo.config import parse_sets
    from zoo.train.checkpointing import latest_checkpoint
    from zoo.train.trainer import check_out_dir

    manifest = read_manifest(name)
    parse_sets(list(sets))  # a malformed item fails here, not after the data is prepared
    out = Path(out) if out is not None else Path("runs") / "reproduce" / name
    check_out_dir(out)  # before the training command starts, as it would refuse the same directory
    env, argv = reproduce_argv(manifest["command"], out)
    argv += [word for item in sets for word in ("--set", item)]
    resumed_from = latest_checkpoint(out) if resume and out.is_dir() else None
    argv = [word for word in argv if word not in ("--overwrite", "--resume")]
    argv.append("--resume" if resumed_from is not None else "--overwrite")
    print(f"reproducing {name}: {shlex.join(argv)}", flush=True)
    if slow_precision(name, sets):
        print(f"note: {name} was trained in bf16 and this machine has no bf16 units, so the run will take many times "
              f"its recorded wall time; `zoo reproduce {name} --set train.precision=auto` trains it in fp32 here",
              flush=True)
    start = time.perf_counter()
    status = subprocess.run(argv, env={**os.environ, **env}).returncode
    wall_time_s = time.perf_counter() - start
    if status != 0:
        raise InputError(f"the training command exited with status {status}: {shlex.join(argv)}")
    if not (out / "config.json").is_file():  # a SIGTERM stops the trainer at a checkpoint, exit 0, nothing exported
        latest = latest_checkpoint(out) if out.is_dir() else None
        raise InputError(f"the training command stopped before it exported a model into {out}"
                         + (f" (its latest checkpoint: {latest.name})" if latest is not None else "")
                         + f"; `zoo reproduce {name} --out {out} --resume` continues it")
    reproduced = _measured(out, out_dir=out)
    shipped = manifest["metrics"]
    names = [*shipped, *(key for key in reproduced if key not in shipped)]
    report = {
        "name": name, "command": shlex.join(argv), "shipped_command": manifest["command"], "out": str(out),
        "shipped_commit": manifest.get("commit"), "commit": git_state()[0], "machine": machine(),
        "shipped_wall_time_s": manifest.get("wall_time_s"), "wall_time_s": wall_time_s,
        # a resumed run's wall time is this last stretch's only, so it is not comparable with the shipped one
        "resumed_from": resumed_from.name if resumed_from is not None else None,
        "metrics": {key: {"shipped": shipped.get(key), "reproduced": reproduced.get(key),
                          "difference": reproduced[key] - shipped[key]
                          if key in shipped and key in reproduced else None} for key in names},
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
