"""mlplab: train, compare and serve MNIST multilayer perceptrons."""

import logging
from importlib.metadata import PackageNotFoundError, version

# the installed package's (pyproject.toml's at install): the API, the CLI and provenance say it
try:
    __version__ = version("mlplab")
except PackageNotFoundError:  # run from a checkout never installed: every command still works
    __version__ = "unknown"


def configure_logging() -> None:
    """mlplab's lines at INFO on stderr: the API's processes and the worker's alike."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
