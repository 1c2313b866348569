"""Config files: one reader of YAML/TOML files and one strict builder of (nested) frozen dataclasses.

Used by training (``ctdenoise train --config``, :func:`ctdenoise.training.config.load_train_config`) and by
the options files of subcommands (``ctdenoise serve --config``, :mod:`ctdenoise.cli.config_file`). Every
problem is a :class:`~ctdenoise.errors.ConfigError` naming the file and the key: :data:`FILE_KEY` for the
file as a whole, else the dotted path of the entry (``optim.lr``).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from ctdenoise.errors import ConfigError

FILE_KEY = "<file>"
"""The key of a ConfigError about the file as a whole (unreadable, not YAML/TOML, not a mapping)."""
SUFFIXES = (".yaml", ".yml", ".toml")
"""The file names a config file may have: YAML (.yaml, .yml) or TOML (.toml)."""

T = TypeVar("T")
#: How a field of one dataclass type is built instead of field by field: ``build(value, key)``.
Builders = Mapping[type, Callable[[Any, str], Any]]


def read_config_file(path: Path) -> dict[Any, Any]:
    """The mapping in the YAML (.yaml, .yml) or TOML (.toml) file ``path`` ({} for an empty file); ConfigError
    naming the file when it has another suffix, cannot be read, is not valid YAML/TOML or holds no mapping."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(FILE_KEY, "a config file must be YAML (.yaml, .yml) or TOML (.toml)", source=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(FILE_KEY, f"cannot read the config file: {exc}", source=path) from None
    if suffix == ".toml":
        if sys.version_info < (3, 11):  # tomllib came with 3.11
            raise ConfigError(FILE_KEY, "reading TOML needs Python 3.11 or later; use a YAML file", source=path)
        else:  # a version branch, so that type checkers for 3.10 skip it
            import tomllib

            try:
                raw: Any = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(FILE_KEY, f"not valid TOML: {exc}", source=path) from None
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(FILE_KEY, f"not valid YAML: {exc}", source=path) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(FILE_KEY, f"must hold a mapping (key: value), got {type(raw).__name__}", source=path)
    return raw


def load_dataclass(cls: type[T], path: Path | str, builders: Builders | None = None) -> T:
    """The dataclass ``cls`` built strictly (:func:`build_dataclass`) from the config file ``path``
    (:func:`read_config_file`); every ConfigError names the file."""
    path = Path(path)
    raw = read_config_file(path)
    try:
        return build_dataclass(cls, raw, builders)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.problem, source=path) from None


def build_dataclass(cls: type[T], raw: Any, builders: Builders | None = None, prefix: str = "") -> T:
    """Instantiate the dataclass ``cls`` from the nested dicts ``raw``, strictly: an unknown key, a missing
    required one, or a value whose type does not match the field's annotation (numbers, str, bool,
    Literal, Optional, tuples, nested dataclasses; lists become tuples) is a ConfigError whose key is the
    dotted path from the top (``prefix`` first). ``builders`` build the fields of the dataclass types they
    name instead. The dataclasses' own checks (``__post_init__`` raising ConfigError) get the path too."""
    section = prefix.rstrip(".") or "<top level>"
    if not isinstance(raw, dict):
        raise ConfigError(section, f"must be a mapping of settings, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"unknown setting; expected one of {', '.join(sorted(known))}")
    missing = [
        name for name, f in known.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}", "is required")
    values = {key: _convert(hints[key], value, f"{prefix}{key}", builders or {}) for key, value in raw.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        key = exc.key if exc.key.startswith(prefix) else f"{prefix}{exc.key}"
        raise ConfigError(key, exc.problem) from None


def _convert(hint: Any, value: Any, key: str, builders: Builders) -> Any:
    """Check ``value`` against the type annotation ``hint`` and convert lists to tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint in builders:
            return builders[hint](value, key)
        return build_dataclass(hint, value, builders, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key, builders)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"must be a list, got {type(value).__name__} {value!r}")
        if args[-1] is Ellipsis:
            return tuple(_convert(args[0], v, key, builders) for v in value)
        if len(value) != len(args):
            raise ConfigError(key, f"must be a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, key, builders) for a, v in zip(args, value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint in (int, bool, str):
        wrong_bool = isinstance(value, bool) and hint is not bool
        if wrong_bool or not isinstance(value, hint):
            raise ConfigError(key, f"must be {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {key}")  # a programming error, not a user error
