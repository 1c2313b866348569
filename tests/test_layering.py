"""The package's one-way layering, read from the source with ``ast`` (every import, also those inside functions):
io -> intensity -> model -> inference -> jobs -> serve -> cli, lower layers never importing higher ones;
the DICOM node uses the jobs' one-series function, not the batch runner; the batch and sharding runs are peers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ctdenoise"

#: Lowest first; a module may import its own layer and the layers before it, never one after it.
LAYERS = (
    ("ctdenoise.io",),
    ("ctdenoise.intensity",),
    ("ctdenoise.model", "ctdenoise.model_files", "ctdenoise.registry"),
    ("ctdenoise.inference", "ctdenoise.inference_options", "ctdenoise.accelerate", "ctdenoise.transfer",
     "ctdenoise.onnx_runtime"),
    ("ctdenoise.jobs",),
    ("ctdenoise.serve",),
    ("ctdenoise.cli",),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """The ctdenoise modules ``source`` (the text of ``module``, a package's ``__init__`` if ``is_package``)
    imports: ``from X import y`` gives X and X.y (y may be a submodule); relative imports are resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts[: len(parts) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "ctdenoise" or name.startswith("ctdenoise.")}


def package_imports() -> dict[str, set[str]]:
    """Every module of the package and the ctdenoise modules it imports."""
    return {module_name(path): imported_modules(path.read_text(encoding="utf-8"), module_name(path),
                                                path.name == "__init__.py")
            for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def upward_imports(imports: dict[str, set[str]]) -> list[str]:
    """'A imports B' for every import of a higher layer."""
    found = []
    for module, targets in imports.items():
        rank = layer_of(module)
        for target in sorted(targets):
            target_rank = layer_of(target)
            if rank is not None and target_rank is not None and target_rank > rank:
                found.append(f"{module} imports {target}")
    return found


def test_lower_layers_never_import_higher_ones():
    imports = package_imports()
    assert {"ctdenoise.io.read", "ctdenoise.jobs.series", "ctdenoise.serve.derive", "ctdenoise.cli.serve"} <= set(imports)
    assert upward_imports(imports) == []


def test_the_checker_finds_an_upward_import():
    """A lower layer importing the jobs, the node or the CLI, also inside a function or relatively, is found."""
    sources = {
        "ctdenoise.io.read": "def f():\n    from ctdenoise.jobs.series import denoise_series\n",
        "ctdenoise.inference": "import ctdenoise.serve.node\n",
        "ctdenoise.jobs.batch": "from ctdenoise.cli import main\n",
        "ctdenoise.jobs.runner": "from ..serve import derive\n",
    }
    imports = {module: imported_modules(text, module) for module, text in sources.items()}
    imports["ctdenoise.model"] = imported_modules("from .. import cli\n", "ctdenoise.model", is_package=True)
    assert upward_imports(imports) == [
        "ctdenoise.io.read imports ctdenoise.jobs.series",
        "ctdenoise.io.read imports ctdenoise.jobs.series.denoise_series",
        "ctdenoise.inference imports ctdenoise.serve.node",
        "ctdenoise.jobs.batch imports ctdenoise.cli",
        "ctdenoise.jobs.batch imports ctdenoise.cli.main",
        "ctdenoise.jobs.runner imports ctdenoise.serve",
        "ctdenoise.jobs.runner imports ctdenoise.serve.derive",
        "ctdenoise.model imports ctdenoise.cli",
    ]


def test_the_node_derives_with_the_one_series_function_not_the_batch_runner():
    imports = package_imports()
    node_uses = {target for module, targets in imports.items() if module.startswith("ctdenoise.serve")
                 for target in targets if target.startswith("ctdenoise.jobs")}
    assert "ctdenoise.jobs.series" in node_uses
    assert not {t for t in node_uses if t.startswith(("ctdenoise.jobs.batch", "ctdenoise.jobs.runner",
                                                      "ctdenoise.jobs.sharding", "ctdenoise.jobs.overlap"))}
    io_writers = {"ctdenoise.io.read_volume", "ctdenoise.io.write_derived_dicom", "ctdenoise.io.write_volume"}
    assert not io_writers & imports["ctdenoise.serve.derive"], "the node reads and writes through jobs.series"


@pytest.mark.parametrize("runner", ["ctdenoise.jobs.batch", "ctdenoise.jobs.sharding"])
def test_the_batch_and_sharding_runs_are_peers(runner):
    imports = package_imports()
    other = {"ctdenoise.jobs.batch": "ctdenoise.jobs.sharding", "ctdenoise.jobs.sharding": "ctdenoise.jobs.batch"}
    assert "ctdenoise.jobs.runner" in imports[runner]
    assert not {t for t in imports[runner] if t.startswith(other[runner])}


def test_the_jobs_modules_import_each_other_one_way():
    """No cycle among ctdenoise.jobs' modules: they can be read in an order where each uses only earlier ones."""
    imports = package_imports()
    jobs = {m: {t for t in targets if t in imports and t.startswith("ctdenoise.jobs.") and t != m}
            for m, targets in imports.items() if m.startswith("ctdenoise.jobs.")}
    ordered: list[str] = []
    while jobs:
        ready = sorted(m for m, needs in jobs.items() if needs <= set(ordered))
        assert ready, f"import cycle among {sorted(jobs)}"
        ordered += ready
        for m in ready:
            del jobs[m]
    assert ordered.index("ctdenoise.jobs.series") < ordered.index("ctdenoise.jobs.runner") < ordered.index(
        "ctdenoise.jobs.batch")


def test_the_noise_models_import_no_monai():
    """``ctdenoise.simulate`` is plain functions; its MONAI random transforms live in ``ctdenoise.transforms``."""
    import subprocess
    import sys

    probe = "import sys, ctdenoise.simulate; print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert result.stdout.strip() == "[]"


def test_training_imports_nothing_of_evaluation():
    """Training validates with ``ctdenoise.metrics`` and builds RED-CNN from ``ctdenoise.model``; evaluation sits above."""
    imports = package_imports()
    assert not {f"{module} imports {target}" for module, targets in imports.items() if module.startswith("ctdenoise.training")
                for target in targets if target.startswith("ctdenoise.evaluate")}
