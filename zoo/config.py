"""Typed config dataclasses: validated overrides (`zoo.load(..., dim=128)`, `--set model.dim=128`) and JSON."""

import dataclasses
import difflib
import json
import types
import typing
from typing import Any


def field_names(config_class) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]


def _suggest(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _field_type(config_class, name: str):
    hints = typing.get_type_hints(config_class)
    return hints[name]


def _coerce(value: Any, annotation, where: str):
    """Convert `value` (possibly a string from the command line) to the field's annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin is tuple:
        (item_type, *_) = typing.get_args(annotation) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} expects a list, got {value!r}")
        return tuple(_coerce(v, item_type, where) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError(f"{where} expects true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where} expects an integer, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.replace("_", ""))
        except ValueError:
            raise ValueError(f"{where} expects an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{where} expects a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} expects a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} expects a string, got {value!r}")
        return value
    return value


def replace_config(config, overrides: dict[str, Any], section: str | None = None):
    """dataclasses.replace with validation: unknown fields and badly typed values raise a ValueError that
    names the field and the allowed ones. String values (from `--set`) are parsed to the field's type."""
    allowed = field_names(type(config))
    changes = {}
    for name, value in overrides.items():
        where = f"{section}.{name}" if section else name
        if name not in allowed:
            raise ValueError(f"unknown field {where!r} for {type(config).__name__}{_suggest(name, allowed)}; "
                             f"allowed: {', '.join(allowed)}")
        changes[name] = _coerce(value, _field_type(type(config), name), where)
    return dataclasses.replace(config, **changes)


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(config_class, data: dict):
    """Rebuild a config from its JSON dict (lists back to tuples), refusing unknown keys."""
    defaults = config_class()
    return replace_config(defaults, data)


def dumps(config) -> str:
    return json.dumps(config_to_dict(config), indent=2, sort_keys=True)
