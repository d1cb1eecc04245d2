"""Hearth hub: the in-home service (event model, config, buffer, checks, runtime)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hearth")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
