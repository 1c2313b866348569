"""The command line answers at once where it has nothing heavy to do: ``--help``, ``serve --status`` and the
per-command help import neither torch nor MONAI, and a bad ``--model`` is a usage error before any input
is looked at."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from ctdenoise.cli import COMMAND_HELP, EXIT_USAGE, build_parser, main

STARTUP = """
import sys
from ctdenoise.cli import main
for argv in (["--help"], ["denoise", "--help"], ["serve", "--help"], ["strength", "fit", "--help"], ["export", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
main(["serve", "--spool", sys.argv[1], "--status"])
print("HEAVY", sorted(name for name in ("torch", "monai", "open_clip") if name in sys.modules))
"""


def test_help_and_serve_status_import_neither_torch_nor_monai(tmp_path):
    for folder in ("series", "done", "failed"):
        (tmp_path / "spool" / folder).mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", STARTUP, str(tmp_path / "spool")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout[result.stdout.index('{\n  "spool"'):result.stdout.index("HEAVY")])["counts"]
    assert result.stdout.strip().endswith("HEAVY []"), result.stdout[-300:]


def test_every_subcommand_registers_the_help_line_the_top_level_lists():
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert {name: registered[name] for name in COMMAND_HELP} == COMMAND_HELP


def test_a_bad_model_is_reported_before_the_inputs_are_scanned(tmp_path, monkeypatch, capsys):
    import ctdenoise.jobs.plan

    def scanned(*_args, **_kwargs):
        raise AssertionError("the inputs were scanned before the model was checked")

    monkeypatch.setattr(ctdenoise.jobs.plan, "find_series", scanned)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"format": "something else"}')
    (tmp_path / "in").mkdir()
    assert main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model)]) == EXIT_USAGE
    assert "not a ctdenoise-checkpoint config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["serve", "--spool", "s", "--output", "o"], ["denoise", "in", "-o", "out"]])
def test_a_model_folder_without_tensors_is_a_usage_error_naming_the_file(argv, tmp_path, tiny_checkpoint, capsys,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((tiny_checkpoint / "config.json").read_bytes())
    assert main([*argv, "--model", str(model)]) == EXIT_USAGE
    assert f"{model / 'model.safetensors'}: tensor file missing" in capsys.readouterr().err
