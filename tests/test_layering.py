"""The package's one-way layering, read from the source with ``ast`` (every import, also those inside functions):
foundation -> io -> intensity -> model -> runtime -> jobs -> serve -> cli, lower layers never importing higher ones,
and every module in exactly one layer; the front door (``ctdenoise/__init__.py``) imports its names lazily;
the DICOM node uses the jobs' one-series function, not the batch runner; the batch and sharding runs are peers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ctdenoise"

#: Lowest first; a module may import its own layer and the layers before it, never one after it.
LAYERS = (
    # foundation: the version, the error types, reading a config file
    ("ctdenoise._version", "ctdenoise.errors", "ctdenoise.config_files"),
    # io: volumes in and out; the example series written with it
    ("ctdenoise.io", "ctdenoise.examples"),
    # intensity: HU and the image science on plain arrays (windows, metrics, noise, kernels, simulated dose)
    ("ctdenoise.intensity", "ctdenoise.html_page", "ctdenoise.metrics", "ctdenoise.noise_estimate",
     "ctdenoise.recon_kernels", "ctdenoise.simulate"),
    # model: networks, checkpoints, where models come from
    ("ctdenoise.model", "ctdenoise.model_files", "ctdenoise.registry"),
    # runtime: a model prepared once for a device/precision/engine, run on HU; a model's strength table and presets
    ("ctdenoise.runtime", "ctdenoise.strength_table", "ctdenoise.strength_presets"),
    # jobs: what runs prepared models over data (folder runs, MONAI transforms, training, evaluation, IQ, adaptation)
    ("ctdenoise.jobs", "ctdenoise.transforms", "ctdenoise.training", "ctdenoise.evaluate", "ctdenoise.iq",
     "ctdenoise.adapt"),
    ("ctdenoise.serve",),
    ("ctdenoise.cli", "ctdenoise.__main__"),
)

#: The front door (``ctdenoise/__init__.py``): outside the layers; it re-exports names of the layers lazily.
FRONT_DOOR = "ctdenoise"


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
    assert {"ctdenoise.io.read", "ctdenoise.jobs.series", "ctdenoise.serve.derive", "ctdenoise.cli.serve",
            "ctdenoise.runtime.prepare", "ctdenoise.runtime.backends.onnx_runtime"} <= set(imports)
    assert upward_imports(imports) == []


def test_every_module_is_in_exactly_one_layer():
    modules = set(package_imports()) - {FRONT_DOOR}
    assert sorted(m for m in modules if layer_of(m) is None) == []
    prefixes = [p for layer in LAYERS for p in layer]
    assert len(prefixes) == len(set(prefixes))
    overlapping = [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a + ".")]
    assert overlapping == []


def test_the_front_door_imports_lazily_and_no_module_imports_its_exports():
    """``ctdenoise/__init__.py`` imports only the foundation when it runs (its exports load on first use, PEP 562;
    ``TYPE_CHECKING`` imports are for type checkers), and no module imports a front-door export from it."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    run_time = {f"{node.module}" for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 0}
    run_time |= {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in run_time if m.startswith("ctdenoise")} <= {"ctdenoise._version", "ctdenoise.errors"}
    from ctdenoise import LAZY_EXPORTS

    exports = {f"{FRONT_DOOR}.{name}" for name in LAZY_EXPORTS}
    assert [f"{module} imports {target}" for module, targets in sorted(package_imports().items())
            for target in sorted(targets) if target in exports] == []


def test_the_checker_finds_an_upward_import():
    """A lower layer importing the jobs, the node or the CLI, also inside a function or relatively, is found."""
    sources = {
        "ctdenoise.io.read": "def f():\n    from ctdenoise.jobs.series import denoise_series\n",
        "ctdenoise.runtime.denoise": "import ctdenoise.serve.node\n",
        "ctdenoise.jobs.batch": "from ctdenoise.cli import main\n",
        "ctdenoise.jobs.runner": "from ..serve import derive\n",
    }
    imports = {module: imported_modules(text, module) for module, text in sources.items()}
    imports["ctdenoise.model"] = imported_modules("from .. import cli\n", "ctdenoise.model", is_package=True)
    assert upward_imports(imports) == [
        "ctdenoise.io.read imports ctdenoise.jobs.series",
        "ctdenoise.io.read imports ctdenoise.jobs.series.denoise_series",
        "ctdenoise.runtime.denoise imports ctdenoise.serve.node",
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
