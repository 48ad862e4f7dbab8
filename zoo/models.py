"""The user-facing entry points: `zoo.load(name_or_dir)` and `zoo.list_models(pattern)`.

    zoo.load("gpt-nano")                             random init from the named config
    zoo.load("gpt-nano", backbone={"n_layers": 2})   with validated config overrides (nested: a dict)
    zoo.load("gpt-nano", pretrained=True)            trained weights: the ones `zoo train gpt-nano` wrote to
                                                     $ZOO_HOME/gpt-nano if any, else those shipped inside zoo
                                                     (zoo/weights/gpt-nano, hash-verified: zoo.shipped)
    zoo.load("runs/my-gpt")                          a directory written by save_pretrained / zoo train --out
"""

import os
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import CONFIG_FILE, load_pretrained
from zoo.config import replace_config
from zoo.errors import InputError, InputTypeError, MissingFileError
from zoo.interop import hf_format, load_hf
from zoo.registry import families, get_family, get_model_entry, list_models, zoo_home
from zoo.shipped import load_shipped, shipped_dir, verify, weights_root

__all__ = ["build_model", "family_name", "list_models", "load", "load_trained", "require_family", "trained_dir"]


def build_model(name: str, **overrides) -> nn.Module:
    entry = get_model_entry(name)
    config = replace_config(entry.make_config(), overrides)
    model = get_family(entry.family).build(config)
    model.zoo_name = name
    return model


def load(name_or_dir: str | os.PathLike, pretrained: bool = False, device=None, dtype=None, **overrides) -> nn.Module:
    """Build a registered model, or rebuild a saved one (see the module docstring)."""
    path = Path(check_name_or_dir(name_or_dir))
    device, dtype = check_placement(device, dtype)  # before building: a typo should not cost a load
    if path.is_dir() and hf_format(path) is not None:  # a transformers / diffusers folder (zoo/interop.py)
        model = load_hf(path, **overrides)
    elif path.exists():
        model = load_pretrained(path, **overrides)
    else:
        if os.sep in str(name_or_dir) or str(name_or_dir).startswith("."):
            raise MissingFileError(f"no model directory {str(name_or_dir)!r} (and it is not a model name; "
                                   f"see zoo.list_models())")
        if pretrained:
            model = load_trained(str(name_or_dir), **overrides)
        else:
            model = build_model(str(name_or_dir), **overrides)
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model


def check_name_or_dir(name_or_dir) -> str | os.PathLike:
    allowed = "a registered model name (zoo.list_models()) or a model directory"
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise InputTypeError(f"a model is {allowed} (a str or path), got {type(name_or_dir).__name__}")
    if str(name_or_dir) == "":
        raise InputError(f"the model name is empty; allowed: {allowed}")
    return name_or_dir


def check_placement(device, dtype) -> tuple[torch.device | None, torch.dtype | None]:
    """device as torch.device (a str such as "cuda:0" is parsed now) and dtype a floating torch.dtype, or None."""
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device={device!r}; allowed: a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                             f"or None") from None
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputTypeError(f"dtype={dtype!r}; allowed: a floating torch.dtype such as torch.float32 or "
                             f"torch.bfloat16, or None")
    return device, dtype


def family_name(model: nn.Module) -> str | None:
    """The registered family whose config class the model's config is (None: not a zoo model)."""
    config = getattr(model, "config", None)
    return next((family.name for family in families() if type(config) is family.config_class), None)


def require_family(model: nn.Module, allowed: tuple[str, ...], call: str) -> nn.Module:
    """The model, if it belongs to one of the `allowed` families; otherwise an InputError saying what it is, so a
    GPT handed to transcribe() fails at the call, not deep inside the decoder with an AttributeError."""
    family = family_name(model)
    if family not in allowed:
        name = getattr(model, "zoo_name", None) or type(model).__name__
        what = f"a {family} model" if family else "not a zoo model"
        raise InputError(f"{call} takes a {' or '.join(allowed)} model; {name} is {what}")
    return model


def trained_dir(name_or_dir: str | os.PathLike) -> Path:
    """The model directory a command was pointed at: the directory itself, else a registered name's trained
    weights ($ZOO_HOME/NAME first, then the shipped ones, verified), so `zoo generate gpt-nano ...` works after
    install. Errors say what was looked for."""
    path = Path(check_name_or_dir(name_or_dir))
    if path.exists() or os.sep in str(name_or_dir):
        return path  # load_pretrained names a missing or malformed directory itself
    get_model_entry(str(name_or_dir))  # neither a directory nor a registered name: suggestions
    home = zoo_home() / str(name_or_dir)
    if (home / CONFIG_FILE).exists():
        return home
    shipped = shipped_dir(str(name_or_dir))
    if shipped is not None:
        verify(shipped)
        return shipped
    raise MissingFileError(f"no directory {str(name_or_dir)!r}, and no trained weights for the model of that name: "
                           f"none in {home} (ZOO_HOME) and none shipped; train them with `zoo train {name_or_dir}`")


def load_trained(name: str, **overrides) -> nn.Module:
    """The trained weights of a registered model: the user's own in $ZOO_HOME/NAME first (a model trained here
    wins over the one zoo ships), then the shipped ones, verified against their manifest."""
    get_model_entry(name)  # unknown names fail with suggestions first
    home = zoo_home() / name
    if (home / CONFIG_FILE).exists():
        return load_pretrained(home, **overrides)
    if shipped_dir(name) is not None:
        return load_shipped(name, **overrides)
    raise MissingFileError(f"no trained weights for {name!r}: none in {home} (ZOO_HOME) and none shipped in "
                           f"{weights_root() / name}; train them with `zoo train {name}` (or set ZOO_HOME)")
