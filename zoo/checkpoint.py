"""The model directory format: `config.json` + `model.safetensors` (+ family extras such as a tokenizer).

Weights are only ever read with safetensors (no code runs on load); pickle files are refused. Tied
parameters (an LM head sharing the embedding) are stored once, via safetensors' save_model/load_model.
"""

import json
from pathlib import Path

import safetensors.torch
from torch import nn

import zoo
from zoo.config import config_from_dict, config_to_dict, replace_config
from zoo.errors import CorruptFileError, InputError, MissingFileError, UnsafeFileError
from zoo.registry import family_of_config, get_family
from zoo.utils import written_atomically

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
    directory = Path(directory)
    if not directory.exists():
        raise MissingFileError(f"no model directory {directory}")
    if directory.is_file():
        if directory.suffix in PICKLE_SUFFIXES:
            raise UnsafeFileError(f"refusing to load {directory}: pickle files can run arbitrary code; zoo loads "
                             f"weights only from {WEIGHTS_FILE} (safetensors) in a model directory")
        raise InputError(f"{directory} is a file; zoo.load expects a model directory holding "
                         f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.exists():
        raise MissingFileError(f"{directory} is not a zoo model directory: {CONFIG_FILE} is missing")
    if not weights_path.exists():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeFileError(f"refusing to load {directory / pickles[0]}: pickle files can run arbitrary code; "
                             f"zoo loads weights only from {WEIGHTS_FILE} (safetensors)")
        raise MissingFileError(f"{weights_path} is missing")
    try:
        meta = json.loads(config_path.read_text())
        family = get_family(meta["family"])
    except (json.JSONDecodeError, KeyError) as error:
        raise CorruptFileError(f"{config_path} is not a valid zoo config ({error})") from None
    config = config_from_dict(family.config_class, meta["config"])
    if overrides:
        config = replace_config(config, overrides)
    model = family.build(config)
    missing, unexpected = safetensors.torch.load_model(model, str(weights_path), strict=False)
    if missing or unexpected:
        raise CorruptFileError(f"{weights_path} does not match the {family.name} config in {config_path}: "
                         f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    model.zoo_name = meta.get("name")
    if family.load_extras is not None:
        family.load_extras(model, directory)
    return model


class PretrainedMixin:
    """Gives a model `save_pretrained(dir)`; the model needs a `config` dataclass of a registered family."""

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_pretrained(self, directory)
