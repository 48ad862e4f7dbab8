"""The model directory format: `config.json` + `model.safetensors` (+ family extras such as a tokenizer).

Weights are only ever read with safetensors (no code runs on load); pickle files are refused. Tied
parameters (an LM head sharing the embedding) are stored once, via safetensors' save_model.

Loading trusts nothing in the directory, and every problem is a CorruptFileError naming the file:
- config.json must be a JSON object naming a registered family and a config that family accepts;
- model.safetensors must parse: safetensors checks that the header fits in the file and that the tensors' byte
  ranges tile the data exactly, without gaps or overlaps (https://github.com/huggingface/safetensors#format),
  so no length in the file can make the loader allocate more than the file holds;
- it must hold exactly the model's tensors, each of the shape the config gives it;
- dtypes: a floating tensor loads into a floating parameter of any width (shipped weights are fp16, cast up as
  they load); any other mix (an integer or bool tensor where a float parameter is, or the reverse) is refused
  rather than silently cast, since no saved model of zoo has it.
config.json is trusted as far as the architecture it describes: that model is built, and one that cannot be
built (too large to allocate, a NaN width) is refused. (Building it on the meta device first would bound the
memory by the weights file, but meta tensors run torch's Python reference kernels, whose first use imports
torch._dynamo: seconds added to every process that loads a model.)
"""

import json
import pickle
import re
from collections import defaultdict
from itertools import chain
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

import zoo
from zoo.config import config_from_dict, config_to_dict, replace_config
from zoo.errors import CorruptFileError, InputError, MissingFileError, UnsafeFileError, ZooError
from zoo.registry import Family, family_of_config, get_family
from zoo.utils import read_safetensors, written_atomically

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Write the model directory; each file appears whole (write then rename), weights before the config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    family = family_of_config(model.config)
    meta = {"zoo_version": zoo.__version__, "family": family.name, "name": getattr(model, "zoo_name", None),
            "config": config_to_dict(model.config)}
    with written_atomically(directory / WEIGHTS_FILE) as tmp:
        safetensors.torch.save_model(model, str(tmp))
    with written_atomically(directory / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    if family.save_extras is not None:
        family.save_extras(model, directory)
    return directory


def load_pretrained(directory: str | Path, **overrides) -> nn.Module:
    """The model saved in `directory` (see the module docstring for what is checked), with config overrides."""
    config_path, weights_path = model_files(Path(directory))
    meta = read_json_object(config_path, "zoo config")
    family, config = config_from_file(meta, config_path)
    if overrides:
        config = replace_config(config, overrides)
    tensors = read_safetensors(weights_path)
    model = build_described(family, config, config_path)
    where = f"the {family.name} config in {config_path}" + (f" with the overrides {overrides}" if overrides else "")
    # with overrides that change the architecture, the mismatch is the caller's, not the file's
    check_fit(model, tensors, weights_path, where, InputError if overrides else CorruptFileError)
    model.load_state_dict(tensors, strict=False)  # check_fit made it exact: only the second name of a tie is absent
    model.zoo_name = meta.get("name")
    if family.load_extras is not None:
        family.load_extras(model, config_path.parent)
        check_tokenizer_fits(model, config_path)
    return model


def model_files(directory: Path) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a model directory, refusing pickles and naming what is missing."""
    if not directory.exists():
        raise MissingFileError(f"no model directory {directory}")
    if directory.is_file():
        if directory.suffix in PICKLE_SUFFIXES:
            raise UnsafeFileError(f"refusing to load {directory}: pickle files can run arbitrary code; zoo loads "
                                  f"weights only from {WEIGHTS_FILE} (safetensors) in a model directory")
        raise InputError(f"{directory} is a file; zoo.load expects a model directory holding "
                         f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file():
        raise MissingFileError(f"{directory} is not a zoo model directory: {CONFIG_FILE} is missing")
    if not weights_path.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeFileError(f"refusing to load {directory / pickles[0]}: pickle files can run arbitrary "
                                  f"code; zoo loads weights only from {WEIGHTS_FILE} (safetensors)")
        raise MissingFileError(f"{weights_path} is missing")
    return config_path, weights_path


# ----------------------------------------------------------------------------------------------------------
# reading files that may be malformed


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in `path`; a file that is missing, not UTF-8 JSON or not an object is an error naming it."""
    if not path.is_file():
        raise MissingFileError(f"{path} is missing")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptFileError(f"{path} is not JSON ({error}); a {what} file is a UTF-8 JSON object") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} holds a JSON {type(data).__name__}, not an object; a {what} file is a "
                               f"JSON object")
    return data


def config_from_file(meta: dict, config_path: Path) -> tuple[Family, object]:
    """The family and config that config.json's {"family": ..., "config": {...}} names."""
    family_name, fields, name = meta.get("family"), meta.get("config"), meta.get("name")
    problem = ("its 'family' is not a string" if not isinstance(family_name, str) else
               "its 'config' is not an object" if not isinstance(fields, dict) else
               "its 'name' is neither a string nor null" if not isinstance(name, (str, type(None))) else None)
    if problem:
        raise CorruptFileError(f"{config_path} is not a valid zoo config: {problem}")
    try:
        family = get_family(family_name)
        return family, config_from_dict(family.config_class, fields)
    except (ZooError, ValueError, TypeError) as error:  # the config classes' validation, about this file's values
        raise CorruptFileError(f"{config_path} is not a valid zoo config: {error}") from None


def build_described(family: Family, config, config_path: Path) -> nn.Module:
    """family.build(config) for a config read from config_path. What building raises is about the file: values
    that passed the config's checks but not the model's (a NaN or infinite width), or a model too large to
    allocate (torch: a RuntimeError "can't allocate memory", or an OverflowError past int64)."""
    try:
        return family.build(config)
    except (ZooError, ValueError, TypeError, OverflowError, MemoryError, RuntimeError) as error:
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise CorruptFileError(f"{config_path} describes a {family.name} model that cannot be built here "
                               f"({reason})") from error


def check_fit(model: nn.Module, tensors: dict[str, torch.Tensor], weights_path: Path, config_text: str,
              error_class: type[ZooError] = CorruptFileError):
    """Refuse `tensors` unless they are exactly the model's state: every tensor present once (of tied names, one),
    none extra, each of the model's shape and dtype kind."""
    def refuse(problem: str):
        raise error_class(f"{weights_path} does not fit {config_text}: {problem}")

    groups = tied_groups(model)
    missing, doubled = [], []
    for names in groups:
        present = [name for name in names if name in tensors]
        if not present:
            missing.append(names[0])
        elif len(present) > 1:
            doubled.append(present)
    unexpected = sorted(set(tensors) - {name for names in groups for name in names})
    if missing or unexpected:
        refuse(f"missing tensors {sorted(missing)[:5]}, unexpected tensors {unexpected[:5]}"
               + (f" ({len(missing)} missing, {len(unexpected)} unexpected in all)"
                  if max(len(missing), len(unexpected)) > 5 else ""))
    if doubled:
        refuse(f"it holds {' and '.join(doubled[0])}, which this model ties (one tensor stored once)")
    expected = model.state_dict()
    for name, tensor in tensors.items():
        want = expected[name]
        if tensor.shape != want.shape:
            refuse(f"tensor {name!r} has shape {list(tensor.shape)}; the config needs {list(want.shape)}")
        if dtype_kind(tensor.dtype) != dtype_kind(want.dtype):
            refuse(f"tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}, the model's is "
                   f"{str(want.dtype).removeprefix('torch.')}: a {dtype_kind(want.dtype)} tensor is needed (floating "
                   f"tensors of any width load into floating parameters; other dtypes are not cast)")


def check_tokenizer_fits(model: nn.Module, config_path: Path):
    """A tokenizer with more ids than the model's embedding has rows would fail only when such an id first
    reaches the model; the families keep the tokenizer as `model.tokenizer` and its size as config.vocab_size."""
    tokenizer, vocab_size = getattr(model, "tokenizer", None), getattr(model.config, "vocab_size", None)
    if tokenizer is not None and isinstance(vocab_size, int) and tokenizer.vocab_size > vocab_size:
        raise CorruptFileError(f"the tokenizer in {config_path.parent} has {tokenizer.vocab_size} tokens, more than "
                               f"the vocab_size={vocab_size} of {config_path}")


def tied_groups(model: nn.Module) -> list[tuple[str, ...]]:
    """The model's state_dict names grouped by the tensor they name: one name each, all names of a tied one."""
    saved = set(model.state_dict())
    by_tensor = defaultdict(list)
    for name, tensor in chain(model.named_parameters(remove_duplicate=False),
                              model.named_buffers(remove_duplicate=False)):
        if name in saved:
            by_tensor[id(tensor)].append(name)
    return [tuple(names) for names in by_tensor.values()]


def dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    return "floating" if dtype.is_floating_point else "complex" if dtype.is_complex else "integer"


# The weights-only unpickler's own reason ("Unsupported global: GLOBAL io.open was not an allowed global by
# default", "Unsupported operand 110"), without the rest of torch's message, which suggests loading it unsafely.
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)")
# Reasons that name an object the pickle would import or call (torch/_weights_only_unpickler.py); the others
# (an unknown opcode, an overlong string) are bytes that are no pickle it reads: a damaged file.
_NAMES_AN_OBJECT = re.compile(r"GLOBAL|allowlisted|unrecognized function")


def torch_load(path: Path, map_location=None):
    """torch.load(path, weights_only=True), the one place zoo unpickles (training checkpoints): tensors, numbers
    and plain containers load; a pickle naming any other object is an UnsafeFileError and is never retried
    without weights_only. A missing file is a MissingFileError, a truncated or garbled one a CorruptFileError."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} is missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = _UNPICKLER_REASON.search(str(error))
        reason = found.group(1) if found else str(error).splitlines()[0]
        if _NAMES_AN_OBJECT.search(reason):
            raise UnsafeFileError(f"refusing to load {path}: it pickles more than tensors, numbers and plain "
                                  f"containers ({reason}), and unpickling anything else can run arbitrary "
                                  f"code") from None
        raise CorruptFileError(f"{path} is not a valid torch file ({reason})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as error:  # what a truncated zip or pickle gives
        raise CorruptFileError(f"{path} is not a valid torch file ({type(error).__name__}: {error})") from None


class PretrainedMixin:
    """Gives a model `save_pretrained(dir)`; the model needs a `config` dataclass of a registered family."""

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_pretrained(self, directory)
