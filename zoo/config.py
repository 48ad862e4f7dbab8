"""Typed config dataclasses: validated overrides and JSON.

Overrides name fields; a nested config (GPTConfig.backbone: TransformerConfig) is reached with a dotted key
or a dict meaning a partial update:
    zoo.load("gpt-nano", backbone={"n_layers": 2})      zoo.load("gpt-nano", **{"backbone.n_layers": 2})
    zoo train gpt-nano --set model.backbone.n_layers=2
"""

import dataclasses
import difflib
import json
import types
import typing
from typing import Any

from zoo.errors import InputError


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
        raise InputError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin is tuple:
        (item_type, *_) = typing.get_args(annotation) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where} expects a list, got {value!r}")
        return tuple(_coerce(v, item_type, where) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise InputError(f"{where} expects true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise InputError(f"{where} expects an integer, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.replace("_", ""))
        except ValueError:
            raise InputError(f"{where} expects an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise InputError(f"{where} expects a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where} expects a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise InputError(f"{where} expects a string, got {value!r}")
        return value
    return value


def is_config_class(annotation) -> bool:
    """True for a dataclass type (a nested config such as GPTConfig.backbone: TransformerConfig)."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _nested_paths(config_class, name: str, prefix: str = "") -> list[str]:
    """Dotted paths of the nested fields called `name` (to point a flat `n_layers` at `backbone.n_layers`)."""
    paths = []
    for field in dataclasses.fields(config_class):
        annotation = _field_type(config_class, field.name)
        if is_config_class(annotation):
            inner = f"{prefix}{field.name}."
            if name in field_names(annotation):
                paths.append(inner + name)
            paths += _nested_paths(annotation, name, inner)
    return paths


def _unknown_field(config, name: str, prefix: str) -> InputError:
    allowed = field_names(type(config))
    nested = [prefix + path for path in _nested_paths(type(config), name)]
    hint = f" (it is a nested field: {' or '.join(nested)})" if nested else _suggest(name, allowed)
    return InputError(f"unknown field {prefix + name!r} for {type(config).__name__}{hint}; "
                      f"allowed: {', '.join(allowed)}")


def replace_config(config, overrides: dict[str, Any], section: str | None = None):
    """dataclasses.replace with validation: unknown fields and badly typed values raise a ValueError that
    names the field (its full dotted path) and the allowed ones. String values (from `--set`) are parsed to
    the field's type.

    Nested configs (a field typed as a dataclass, e.g. GPTConfig.backbone: TransformerConfig) take either
    dotted keys, {"backbone.n_layers": 4}, or a dict meaning a partial update, {"backbone": {"n_layers": 4}};
    the fields not named keep their values. Every level is rebuilt with dataclasses.replace, so each nested
    config's __post_init__ validation runs, innermost first.
    """
    config_class = type(config)
    prefix = f"{section}." if section else ""
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}  # field -> overrides for the nested config, in the order given
    for key, value in overrides.items():
        name, dot, rest = key.partition(".")
        where = prefix + key
        if name not in field_names(config_class):
            raise _unknown_field(config, name, prefix)
        annotation = _field_type(config_class, name)
        if is_config_class(annotation):
            if dot:
                nested.setdefault(name, {})[rest] = value
            elif isinstance(value, dict):
                nested.setdefault(name, {}).update(value)
            elif isinstance(value, annotation):
                changes[name] = value
                nested.pop(name, None)  # a whole config replaces earlier partial updates
            else:
                raise InputError(f"{where} is a {annotation.__name__}: give a dict of its fields or set them one "
                                 f"by one, e.g. {where}.{field_names(annotation)[0]}=...; got {value!r}")
        elif dot:
            raise InputError(f"unknown field {where!r}: {prefix + name!r} is not a nested config (its type is "
                             f"{getattr(annotation, '__name__', annotation)}), so it has no field {rest!r}")
        else:
            changes[name] = _coerce(value, annotation, where)
    for name, sub in nested.items():
        changes[name] = replace_config(changes.get(name, getattr(config, name)), sub, prefix + name)
    return dataclasses.replace(config, **changes)


def parse_sets(items, sections: tuple[str, ...] = ("model", "data", "train")) -> dict[str, dict[str, str]]:
    """Command-line `--set` items to per-section overrides for replace_config:
    ["model.backbone.n_layers=4", "train.lr=1e-3"] -> {"model": {"backbone.n_layers": "4"}, "data": {},
    "train": {"lr": "1e-3"}}. The key after the section may be dotted to any depth (nested configs)."""
    parsed: dict[str, dict[str, str]] = {section: {} for section in sections}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or section not in parsed or not field or "" in field.split("."):
            raise InputError(f"--set {item!r}: expected section.field=value with section one of "
                             f"{', '.join(sections)} (e.g. --set train.lr=3e-4, --set model.backbone.n_layers=4)")
        parsed[section][field] = value
    return parsed


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(config_class, data: dict):
    """Rebuild a config from its JSON dict (lists back to tuples, nested dicts back to nested configs at any
    depth), refusing unknown keys with their dotted path. Fields missing from `data` keep their defaults."""
    defaults = config_class()
    return replace_config(defaults, data)


def dumps(config) -> str:
    return json.dumps(config_to_dict(config), indent=2, sort_keys=True)
