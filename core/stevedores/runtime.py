"""The runtime: everything the core assembles once per app instance.

Plugins, validated config, services, middleware, health checks and menu links are
gathered here through the hooks, at start-up only; requests never call a hook.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .contracts import SERVICE_PROTOCOLS, HealthCheck, MenuLink, Middleware, WorkerProposal
from .database import EngineHolder
from .plugins import Plugins
from .settings import CORE_SETTINGS, Config, ConfigError, Problem, Setting, read_config
from .telemetry import Metric, Telemetry
from .workers import WorkerDecision, decide_workers

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.engine import Engine

log = logging.getLogger("stevedores.runtime")

#: What a dry run (read-only commands) uses instead of the configured values, once those have
#: been validated: a throwaway in-memory database (migrations run there) and no log file.
DRY_RUN_VALUES = {"DATABASE_URL": "sqlite://", "LOG_FILE": "none"}


class Runtime:
    """One app's plugins, config and the objects its plugins contributed."""

    def __init__(self, plugins: Plugins, config: Config) -> None:
        self.plugins = plugins
        self.config = config
        self.services: dict[str, Any] = {}
        self.service_owners: dict[str, str] = {}
        self.middleware: list[tuple[str, Middleware]] = []
        self.health_checks: list[tuple[str, HealthCheck]] = []
        self.menu_links: list[tuple[str, MenuLink]] = []
        self.telemetry = Telemetry()
        self._decision: WorkerDecision | None = None
        self._decision_lock = threading.Lock()
        self._engine = EngineHolder(config)
        self._shut_down = False

    # --- building --------------------------------------------------------------------

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, *, load_entry_points: bool = True,
             extra_plugins: Iterable[tuple[str, object]] = (), dry_run: bool = False) -> Runtime:
        """Load the plugins the environment selects, validate all settings, gather services.

        ``dry_run``: once every setting is validated, use :data:`DRY_RUN_VALUES` instead
        (read-only commands build the whole app this way and write nothing).
        Raises :class:`stevedores.settings.ConfigError` (every bad value) or, in strict
        mode, :class:`stevedores.plugins.PluginError`.
        """
        environ = os.environ if environ is None else environ
        plugins = Plugins.from_environ(environ, load_entry_points=load_entry_points, extra=extra_plugins)
        config = read_config(declared_settings(plugins), environ)
        plugins.secrets = config.secret_values()
        problems = [p for _plugin, found in _checked(plugins, config) for p in found]
        if problems:
            raise ConfigError(problems)
        if dry_run:
            config = config.with_values("dry run", **DRY_RUN_VALUES)
        runtime = cls(plugins, config)
        runtime.telemetry.declare(*(m for _plugin, m in runtime._collect(None, "stevedores_metrics", Metric)))
        runtime._gather_services()
        return runtime

    def _gather_services(self) -> None:
        for plugin, offered in self.plugins.call("stevedores_services", config=self.config,
                                                   telemetry=self.telemetry):
            if not isinstance(offered, Mapping):
                self.plugins.fail(plugin, f"stevedores_services returned {type(offered).__name__}, not a mapping")
                continue
            taken = [n for n in offered if n in self.services]
            if taken:
                self.plugins.fail(plugin, f"service {taken[0]!r} is already offered by {self.service_owners[taken[0]]}")
                continue
            unfit = [n for n, service in offered.items()
                     if n in SERVICE_PROTOCOLS and not isinstance(service, SERVICE_PROTOCOLS[n])]
            if unfit:
                self.plugins.fail(plugin, f"service {unfit[0]!r} does not implement "
                                          f"stevedores.contracts.{SERVICE_PROTOCOLS[unfit[0]].__name__}")
                continue
            for name, service in offered.items():
                self.services[name], self.service_owners[name] = service, plugin

    def attach(self, app: Flask) -> None:
        """Run the per-app hooks: startup, then middleware, health checks and menu links.

        The worker decision is taken first, so that startup hooks and views only read it.
        """
        self.worker_decision()
        self.plugins.call("stevedores_startup", app=app, config=self.config)
        self.middleware = self._collect(app, "stevedores_middleware", Middleware)
        self.health_checks = self._collect(app, "stevedores_health_checks", HealthCheck)
        self.menu_links = self._collect(app, "stevedores_menu_links", MenuLink)
        self._drop_failed()
        names: dict[str, str] = {}
        for plugin, check in list(self.health_checks):
            if check.name in names:
                self.plugins.fail(plugin, f"health check {check.name!r} is already registered by {names[check.name]}")
            names.setdefault(check.name, plugin)
        self._drop_failed()
        self.middleware.sort(key=lambda pm: (pm[1].order, pm[0], pm[1].name))

    def _collect(self, app: Flask | None, hook: str, kind: type) -> list[tuple[str, Any]]:
        """Call ``hook`` and keep what is ``kind`` (or a list of it); a plugin returning anything else fails."""
        collected: list[tuple[str, Any]] = []
        arguments = {"config": self.config} if app is None else {"app": app, "config": self.config}
        for plugin, result in self.plugins.call(hook, **arguments):
            items = _items_of(result, kind)
            if items is None:
                self.plugins.fail(plugin, f"{hook} returned {_describe_result(result)}, not {kind.__name__} "
                                          f"or a list of {kind.__name__}")
                continue
            collected.extend((plugin, item) for item in items)
        return collected

    def _drop_failed(self) -> None:
        """Forget what plugins that have since failed contributed."""
        alive = set(self.plugins.active())
        self.middleware = [(p, m) for p, m in self.middleware if p in alive]
        self.health_checks = [(p, c) for p, c in self.health_checks if p in alive]
        self.menu_links = [(p, m) for p, m in self.menu_links if p in alive]
        for name in [n for n, owner in self.service_owners.items() if owner not in alive]:
            del self.services[name], self.service_owners[name]

    # --- what plugins and the CLI use ------------------------------------------------

    def service(self, name: str, default: Any = None) -> Any:
        """The service another plugin offers under ``name``, or ``default``."""
        return self.services.get(name, default)

    @property
    def engine(self) -> Engine:
        """This process's SQLAlchemy engine (DATABASE_URL)."""
        return self._engine.get()

    def worker_decision(self) -> WorkerDecision:
        """The worker count and its reasons: the plugins' proposals combined (see docs/plugins.md).

        Asked once per runtime (at start-up) and remembered: requests only read it.
        """
        with self._decision_lock:
            if self._decision is None:
                self._decision = decide_workers(self.config, self._collect(None, "stevedores_worker_limits",
                                                                           WorkerProposal))
            return self._decision

    # --- process lifecycle -----------------------------------------------------------

    def worker_started(self, app: Flask, worker: Any = None) -> None:
        """This process is about to serve: start plugin threads (the database pool was renewed at fork)."""
        self._shut_down = False
        self.plugins.call("stevedores_worker_started", app=app, worker=worker)

    def shutdown(self, app: Flask, worker: Any = None) -> None:
        """Stop plugin threads and release resources, once per process."""
        if self._shut_down:
            return
        self._shut_down = True
        self.plugins.call("stevedores_worker_exit", app=app, worker=worker)
        self.plugins.call("stevedores_shutdown", app=app)
        self._engine.dispose()


def declared_settings(plugins: Plugins) -> list[tuple[str, Setting]]:
    """``(owner, Setting)`` for the core's settings, then each plugin's; a plugin repeating a name is failed."""
    declared = [("core", s) for s in CORE_SETTINGS]
    owners = {s.name: "core" for s in CORE_SETTINGS}
    for plugin, result in plugins.call("stevedores_settings"):
        settings = _items_of(result, Setting)
        clash = [s.name for s in settings or () if s.name in owners]
        if settings is None or clash:
            why = (f"stevedores_settings returned {_describe_result(result)}, not a list of Setting" if settings is None
                   else f"setting {clash[0]} is already declared by {owners[clash[0]]}")
            plugins.fail(plugin, why)
            continue
        declared.extend((plugin, s) for s in settings)
        owners.update({s.name: plugin for s in settings})
    return declared


def _checked(plugins: Plugins, config: Config) -> list[tuple[str, list[Problem]]]:
    """Each plugin's cross-setting problems; a plugin answering anything but Problems is failed."""
    found = []
    for plugin, result in plugins.call("stevedores_check_config", config=config):
        problems = _items_of(result, Problem)
        if problems is None:
            plugins.fail(plugin, f"stevedores_check_config returned {_describe_result(result)}, not a list of Problem")
            continue
        found.append((plugin, problems))
    return found


def _items_of(result: Any, kind: type) -> list[Any] | None:
    """``result`` as a list of ``kind`` (a single one is a list of one), or None if it is anything else."""
    if isinstance(result, kind):
        return [result]
    if isinstance(result, (list, tuple)) and all(isinstance(item, kind) for item in result):
        return list(result)
    return None


def _describe_result(result: Any) -> str:
    if isinstance(result, (list, tuple)):
        wrong = next((item for item in result), None)
        return f"a {type(result).__name__} holding {type(wrong).__name__}"
    return type(result).__name__


def get_runtime(app: Flask) -> Runtime:
    """The runtime behind a Stevedores app."""
    return app.extensions["stevedores"]


def get_service(app: Flask, name: str, default: Any = None) -> Any:
    """The service another plugin offers under ``name`` (e.g. ``"redis"``), or ``default``."""
    return get_runtime(app).service(name, default)
