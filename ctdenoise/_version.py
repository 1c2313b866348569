"""The package version, stated here only: pyproject.toml reads it (setuptools dynamic), ctdenoise re-exports it."""

__version__ = "0.1.0"
