"""mlplab: train, compare and serve MNIST multilayer perceptrons."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version(
        "mlplab"
    )  # the installed package's (pyproject.toml's at install): API, CLI, provenance
except PackageNotFoundError:  # run from a checkout never installed: every command still works
    __version__ = "unknown"
