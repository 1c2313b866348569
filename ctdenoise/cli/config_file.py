"""A subcommand's options from a YAML or TOML file (``ctdenoise serve --config FILE``).

The file is one mapping. Its keys are the subcommand's long options without the leading dashes, spelt with
``_`` or ``-`` (``ae_title``, ``max-spool-size``); each value is what the option takes on the command line:
a number or a string, ``true``/``false`` for a flag, a list (or one value) for an option that takes several
values or may be repeated. An option given on the command line wins over the file; a repeatable option
given on the command line replaces the file's list. Relative paths are relative to the working directory,
as on the command line. An unknown key, a value of the wrong kind or a value the option refuses is a
:class:`ctdenoise.errors.ConfigError` naming the file and the key. The file is read by
:func:`ctdenoise.config_files.read_config_file`, as a training recipe is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctdenoise.config_files import read_config_file
from ctdenoise.errors import ConfigError

#: The attribute of the parsed arguments that holds the destinations of the options given on the command line.
GIVEN = "command_line_options"


def _recording(base: type[argparse.Action]) -> type[argparse.Action]:
    """``base`` (an argparse action class) that also adds its destination to ``args.command_line_options``."""

    class Recording(base):  # type: ignore[misc, valid-type]
        def __call__(self, parser, namespace, values, option_string=None):  # argparse's signature
            super().__call__(parser, namespace, values, option_string)
            setattr(namespace, GIVEN, frozenset({*getattr(namespace, GIVEN, ()), self.dest}))

    Recording.__name__ = f"Recording{base.__name__}"
    return Recording


def record_given_options(parser: argparse.ArgumentParser) -> None:
    """Make the options added to ``parser`` from now on (plain, ``store_true`` and ``append`` options) record
    in ``args.command_line_options`` which of them the command line gave, so a config file fills in only
    the others (:func:`apply_config_file`)."""
    store = _recording(argparse._StoreAction)
    for name, action in ((None, store), ("store", store), ("store_true", _recording(argparse._StoreTrueAction)),
                         ("append", _recording(argparse._AppendAction))):
        parser.register("action", name, action)
    parser.set_defaults(**{GIVEN: frozenset()})


def apply_config_file(args: argparse.Namespace, options: Sequence[argparse.Action], path: Path) -> None:
    """Set on ``args`` each of ``options`` that the file ``path`` gives and the command line did not
    (``args.command_line_options``, :func:`record_given_options`), converted and checked as the command line
    would (the option's type and choices)."""
    path = Path(path)
    by_dest = {action.dest: action for action in options}
    given: frozenset[str] = getattr(args, GIVEN, frozenset())
    for key, value in read_config_file(path).items():
        action = by_dest.get(str(key).replace("-", "_"))
        if action is None:
            raise ConfigError(str(key), f"unknown option; expected one of {', '.join(sorted(by_dest))}", source=path)
        converted = option_value(action, value, str(key), path)
        if action.dest not in given:
            setattr(args, action.dest, converted)


def option_value(action: argparse.Action, value: Any, key: str, path: Path) -> Any:
    """The value the option ``action`` gets from the file's ``value`` (under ``key`` in ``path``)."""
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise ConfigError(key, f"is a flag: give true or false, not {value!r}", source=path)
        return value
    if isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        return [_scalar(action, item, key, path) for item in items]
    if isinstance(value, list):
        raise ConfigError(key, f"takes one value, not a list ({value!r})", source=path)
    return _scalar(action, value, key, path)


def _scalar(action: argparse.Action, value: Any, key: str, path: Path) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(key, f"needs a number or a string, not {value!r}", source=path)
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        expected = {int: "an integer", float: "a number"}.get(action.type)  # type: ignore[call-overload]
        if isinstance(exc, argparse.ArgumentTypeError):  # the option's own message, naming the value
            problem = str(exc)
        else:
            problem = f"{value!r} is not {expected}" if expected else f"invalid value {value!r}: {exc}"
        raise ConfigError(key, problem, source=path) from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(map(str, action.choices))}", source=path)
    return converted
