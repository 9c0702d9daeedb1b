"""The package version (one place: ``harness.__version__`` re-exports it, pyproject.toml reads it)."""

__version__ = "0.1.0"
