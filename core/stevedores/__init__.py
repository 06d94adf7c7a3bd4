"""Stevedores Dashboard core: a Flask app factory that plugins extend through pluggy hooks.

Plugin authors need only this module's names: ``hookimpl`` to mark hook
implementations, the contract types, ``Setting`` and its parsers, ``get_service``,
and ``operator_only`` for operator-only routes.
"""

import pluggy

from .app import create_app
from .contracts import HealthCheck, MenuLink, Middleware, StatusPanel, WorkerProposal
from .database import unbounded_statements
from .drain import is_draining
from .operator import is_operator, operator_only
from .proxies import AddressList
from .routes import infrastructure, is_infrastructure
from .runtime import Runtime, get_runtime, get_service
from .settings import Bool, Choice, ConfigError, Csv, Float, Int, Setting, Str, Url
from .version import __version__

hookimpl = pluggy.HookimplMarker("stevedores")

__all__ = [
    "AddressList", "Bool", "Choice", "ConfigError", "Csv", "Float", "HealthCheck", "Int", "MenuLink", "Middleware",
    "Runtime", "Setting", "StatusPanel", "Str", "Url", "WorkerProposal", "__version__", "create_app", "get_runtime",
    "get_service", "hookimpl", "infrastructure", "is_draining", "is_infrastructure", "is_operator", "operator_only",
    "unbounded_statements",
]
