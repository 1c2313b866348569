"""``ctdenoise serve --config FILE``: options from YAML or TOML, the command line overriding the file, clear errors,
and the example configuration of docs/dicom-node.md. No node is started: ``build_node`` is replaced by a stub
that records the options it was given."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

import ctdenoise.cli.serve as serve_cli
from ctdenoise.cli import build_parser, main
from ctdenoise.cli.config_file import GIVEN

ROOT = Path(__file__).resolve().parents[1]


class StubNode:
    def run(self, stop) -> None:
        pass


@pytest.fixture
def started(monkeypatch) -> list[argparse.Namespace]:
    """The options each ``ctdenoise serve`` run of the test would have built its node with."""
    seen: list[argparse.Namespace] = []

    def build_node(args: argparse.Namespace) -> StubNode:
        seen.append(args)
        return StubNode()

    monkeypatch.setattr(serve_cli, "build_node", build_node)
    monkeypatch.setattr(serve_cli.signal, "signal", lambda *_: None)  # the stub node needs no signal handlers
    return seen


def test_a_yaml_file_sets_the_options_and_the_command_line_overrides_it(tmp_path, started):
    config = tmp_path / "node.yaml"
    config.write_text(
        "spool: spool\nae-title: NODE1\nport: 4242\nforward: [ORTHANC@127.0.0.1:4242, BACKUP@10.0.0.2:104]\n"
        "allow_ae: [ORTHANC]\nseries_timeout: 30\ncompile: true\nstrength: 0.5\nprecision: fp32\n"
    )
    assert main(["serve", "--config", str(config)]) == 0
    assert main(["serve", "--port", "11113", "--config", str(config), "--forward", "OTHER@host:11112",
                 "--allow-ae", "A", "B", "--spool", str(tmp_path / "elsewhere")]) == 0
    first, second = started
    assert (first.spool, first.ae_title, first.port, first.series_timeout) == (Path("spool"), "NODE1", 4242, 30.0)
    assert first.forward == ["ORTHANC@127.0.0.1:4242", "BACKUP@10.0.0.2:104"] and first.allow_ae == ["ORTHANC"]
    assert (first.compile, first.strength, first.precision, first.host) == (True, 0.5, "fp32", "127.0.0.1")
    assert (second.port, second.forward, second.allow_ae) == (11113, ["OTHER@host:11112"], ["A", "B"])
    assert (second.spool, second.ae_title) == (tmp_path / "elsewhere", "NODE1")


def test_a_toml_file_gives_the_same_options(tmp_path, started):
    pytest.importorskip("tomllib", reason="TOML config files need Python 3.11")
    config = tmp_path / "node.toml"
    config.write_text('spool = "spool"\nport = 4242\nforward = "ORTHANC@127.0.0.1:4242"\nmax_spool_size = 20\n')
    assert main(["serve", "--config", str(config)]) == 0
    [args] = started
    assert (args.port, args.forward, args.max_spool_size, args.spool) == (4242, ["ORTHANC@127.0.0.1:4242"], 20.0,
                                                                          Path("spool"))


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("spool: s\noutput: o\naetitle: X\n", "aetitle", "unknown option; expected one of ae_title, allow_ae"),
    ("spool: s\noutput: o\nport: eleven\n", "port", "'eleven' is not an integer"),
    ("spool: s\noutput: o\nport: [1, 2]\n", "port", "takes one value"),
    ("spool: s\noutput: o\ncompile: 1\n", "compile", "is a flag: give true or false"),
    ("spool: s\noutput: o\nprecision: fp8\n", "precision", "'fp8' is not one of auto, fp32"),
    ("spool: s\noutput: o\nstrength: 2\n", "strength", "2 is outside 0..1"),
    ("spool: s\noutput: o\nstatus: true\n", "status", "unknown option"),
    ("- spool\n", "<file>", "must hold a mapping"),
    ("spool: [unclosed\n", "<file>", "not valid YAML"),
])
def test_a_bad_key_or_value_is_a_usage_error_naming_the_file_and_the_key(tmp_path, started, capsys, text, key,
                                                                          problem):
    config = tmp_path / "node.yaml"
    config.write_text(text)
    assert main(["serve", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"{config}: config key '{key}': {problem}" in error, error
    assert not started


def test_a_missing_or_unsupported_file_and_a_missing_spool_are_usage_errors(tmp_path, started, capsys):
    assert main(["serve", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert f"{tmp_path / 'absent.yaml'}: config key '<file>': cannot read the config file" in capsys.readouterr().err
    (tmp_path / "node.ini").write_text("[node]\n")
    assert main(["serve", "--config", str(tmp_path / "node.ini")]) == 2
    assert "must be YAML (.yaml, .yml) or TOML (.toml)" in capsys.readouterr().err
    (tmp_path / "empty.yaml").write_text("")
    assert main(["serve", "--config", str(tmp_path / "empty.yaml"), "--output", "out"]) == 2
    assert "give the spool folder: --spool DIR, or spool: DIR in the --config file" in capsys.readouterr().err
    assert not started


def test_status_reads_the_spool_from_the_file(tmp_path, capsys):
    for folder in ("series", "done", "failed"):
        (tmp_path / "spool" / folder).mkdir(parents=True)
    config = tmp_path / "node.yaml"
    config.write_text(f"spool: {tmp_path / 'spool'}\n")
    assert main(["serve", "--config", str(config), "--status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["spool"] == str(tmp_path / "spool") and status["counts"] == {"pending": 0, "done": 0, "failed": 0}


def sample_arguments(action: argparse.Action) -> list[str]:
    """A command line giving ``action`` a value it accepts."""
    flag = action.option_strings[-1]
    if action.nargs == 0:
        return [flag]
    return [flag, str(action.choices[0]) if action.choices else "1"]


def test_every_option_a_file_can_set_is_known_as_given_when_the_command_line_gives_it():
    """So the command line always overrides the file: a new option whose action does not record that it was
    given (another action kind) fails here."""
    parser = build_parser(["serve"])
    options = serve_cli.config_options()
    assert {"spool", "ae_title", "port", "forward", "stow", "allow_ae", "model", "strength", "compile"} <= {
        action.dest for action in options}
    assert not {"config", "status", "help", "verbose"} & {action.dest for action in options}
    assert getattr(parser.parse_args(["serve"]), GIVEN) == frozenset()
    for action in options:
        args = parser.parse_args(["serve", *sample_arguments(action)])
        assert getattr(args, GIVEN) == {action.dest}, action.dest


def fenced_blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_documented_orthanc_configuration_is_valid_in_yaml_and_toml(tmp_path, started):
    """The example files of docs/dicom-node.md (shown, not run, by the docs snippet tests) are read here."""
    page = ROOT / "docs" / "dicom-node.md"
    [yaml_text] = [block for block in fenced_blocks(page, "yaml") if "forward:" in block]
    blocks = {"node.yaml": yaml_text}
    try:
        import tomllib  # noqa: F401
        [blocks["node.toml"]] = fenced_blocks(page, "toml")
    except ModuleNotFoundError:  # Python 3.10 reads no TOML
        pass
    for name, text in blocks.items():
        (tmp_path / name).write_text(text)
        assert main(["serve", "--config", str(tmp_path / name)]) == 0, name
    for args in started:
        assert (args.spool, args.host, args.port, args.ae_title) == (Path("/var/spool/ctdenoise"), "0.0.0.0", 11112,
                                                                      "CTDENOISE")
        assert (args.allow_ae, args.forward, args.series_timeout, args.device) == (
            ["ORTHANC"], ["ORTHANC@pacs.example:4242"], 60.0, "cuda")
    assert len(started) == len(blocks)
