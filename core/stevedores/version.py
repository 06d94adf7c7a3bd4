"""The core's name and version (kept apart so plugins.py can check compatibility)."""

from importlib import metadata

CORE_DISTRIBUTION = "stevedores-dashboard"

try:
    __version__ = metadata.version(CORE_DISTRIBUTION)
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
