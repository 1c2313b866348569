"""The model folder ``ctdenoise adapt`` writes: the usual checkpoint, its strength table and a model card.

The folder is built under a temporary name and renamed into place (:func:`ctdenoise.io.atomic.atomic_write_dir`).
It holds ``model.safetensors`` + ``config.json`` (stored in float16 when the base model was), ``strength.json``
(the base model's points, re-recorded for the new tensors, with the reason) and ``MODEL_CARD.md``: a section on
the adaptation (base model, method, number of series and slices, settings, guard scores, date) followed by the
base model's card. Nothing about the input series is written but counts and slice spacings: no names, paths or UIDs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctdenoise.io.atomic import atomic_write_dir
from ctdenoise.model import CLIPDenoiser, read_checkpoint_config, save_checkpoint
from ctdenoise.registry import MODEL_CARD_FILE, model_card
from ctdenoise.strength_table import StrengthTable, read_strength_table, write_strength_table

INHERITED_TABLE_REASON = (
    "inherited from the base model: a strength table is fitted on paired low/normal-dose data, which a site "
    "adapting on its noisy series alone does not have; refit it with `ctdenoise strength fit` when such "
    "pairs exist"
)


def write_adapted_model(model: CLIPDenoiser, output: Path, base_dir: Path, summary: dict[str, Any]) -> Path:
    """Write the adapted ``model`` as the model folder ``output`` (which must not exist), with ``summary``
    (from the adaptation, JSON) in its config and card; returns ``output``."""
    half = bool(read_checkpoint_config(base_dir).get("tensors", {}).get("half", False))
    summary = {**summary, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    with atomic_write_dir(output) as staging:
        save_checkpoint(model, staging, training_summary={"adaptation": summary}, include_encoder=True, half=half)
        table = _base_table(base_dir)
        if table is not None:
            write_strength_table(staging, table.points,
                                 {"inherited_from_tensors_sha256": table.tensors_sha256, "reason": INHERITED_TABLE_REASON},
                                 "ctdenoise adapt (inherited)")
        card = adaptation_section(summary, table is not None) + "\n" + _base_card(base_dir)
        (staging / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return output


def _base_table(base_dir: Path) -> StrengthTable | None:
    return read_strength_table(base_dir) if (base_dir / "strength.json").is_file() else None


def _base_card(base_dir: Path) -> str:
    card = model_card(base_dir)
    return f"## Base model card\n\n{card}" if card else "## Base model card\n\nThe base model has no card.\n"


def adaptation_section(summary: dict[str, Any], inherited_table: bool) -> str:
    """The Markdown section of the card that says how the model was adapted."""
    guard = summary["guard"]
    settings = summary["settings"]
    rows = [
        ("base model", f"`{summary['adapted_from']['model']}` (tensors sha256 `{summary['adapted_from']['tensors_sha256']}`)"),
        ("method", f"{summary['method']} ({summary['method_reason']})"),
        ("data", f"{summary['series']} series, {summary['slices']} slices ({summary['held_out_slices']} held out for "
                 f"the guard), slice spacing {', '.join(f'{s:g}' for s in summary['slice_spacing_mm']) or 'n/a'} mm; "
                 f"{summary['skipped_inputs']} input(s) skipped"),
        ("settings", f"{summary['iterations']} iterations; " + ", ".join(f"{k} {v}" for k, v in settings.items())),
        ("guard (no-reference score, HU, lower is better)",
         f"base {guard['base']['score']}, adapted {guard['adapted']['score']}"
         + (" - **refused by the guard, written with --force**" if guard["refused"] else "")),
        ("strength table", "inherited from the base model" if inherited_table else "none (the base model has none)"),
        ("date", summary["date"]),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return ("# Adapted model (`ctdenoise adapt`)\n\n"
            "Fine-tuned self-supervised on a site's noisy series only (docs: Adapting to your scanner). "
            "Research software, **not for clinical use**.\n\n| | |\n|---|---|\n" + table + "\n\n"
            "The full record is in `config.json` under `training_summary.adaptation`.\n")
