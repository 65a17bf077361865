"""mlplab: train, compare and serve MNIST multilayer perceptrons."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlplab")  # pyproject.toml's, as installed: the API, the CLI and provenance say it
except PackageNotFoundError:  # run from a checkout never installed: every command still works
    __version__ = "unknown"
