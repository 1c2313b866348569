"""ctdenoise.config_files: the one reader of YAML/TOML config files and the strict dataclass builder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ctdenoise.config_files import FILE_KEY, build_dataclass, load_dataclass, read_config_file
from ctdenoise.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    size: int
    scale: float = 1.0


@dataclass(frozen=True)
class Outer:
    inner: Inner
    names: tuple[str, ...] = ()
    label: str | None = None


def test_yaml_and_toml_give_the_same_dataclass(tmp_path: Path):
    yaml_file, toml_file = tmp_path / "c.yaml", tmp_path / "c.toml"
    yaml_file.write_text("inner: {size: 3, scale: 2}\nnames: [a, b]\n", encoding="utf-8")
    toml_file.write_text('names = ["a", "b"]\n[inner]\nsize = 3\nscale = 2\n', encoding="utf-8")
    expected = Outer(Inner(3, 2.0), ("a", "b"))
    assert load_dataclass(Outer, yaml_file) == load_dataclass(Outer, toml_file) == expected


@pytest.mark.parametrize(("raw", "key", "problem"), [
    ({"inner": {"size": 3}, "colour": 1}, "colour", "unknown setting"),
    ({}, "inner", "is required"),
    ({"inner": {"size": True}}, "inner.size", "must be int"),
    ({"inner": {"size": 3, "scale": "big"}}, "inner.scale", "must be a number"),
    ({"inner": {"size": 3}, "names": "a"}, "names", "must be a list"),
    ({"inner": [3]}, "inner", "must be a mapping"),
])
def test_a_bad_value_is_a_config_error_naming_its_dotted_key(raw, key, problem):
    with pytest.raises(ConfigError, match=problem) as caught:
        build_dataclass(Outer, raw)
    assert caught.value.key == key


def test_a_builder_builds_the_fields_of_its_type():
    built = build_dataclass(Outer, {"inner": "7"}, {Inner: lambda value, key: Inner(int(value))})
    assert built.inner == Inner(7)


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("c.json", "{}", "must be YAML"),
    ("c.yaml", "- a\n", "must hold a mapping"),
    ("c.yaml", "a: [unclosed\n", "not valid YAML"),
    ("c.toml", "a = \n", "not valid TOML"),
])
def test_an_unusable_file_is_a_config_error_naming_the_file(tmp_path: Path, name, text, problem):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as caught:
        read_config_file(path)
    assert caught.value.key == FILE_KEY and str(path) in str(caught.value)


def test_load_dataclass_names_the_file_in_a_key_error(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("inner: {size: 1.5}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_dataclass(Outer, path)
    assert caught.value.key == "inner.size" and str(path) in str(caught.value)
