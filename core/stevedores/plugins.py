"""One plugin manager per app: loads the ``stevedores`` entry points, honours the
per-environment allow/deny lists, isolates failures, and reports every plugin."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable, Mapping, Sequence

import pluggy
from packaging.requirements import InvalidRequirement, Requirement

from . import hookspecs
from .version import CORE_DISTRIBUTION, __version__

log = logging.getLogger("stevedores.plugins")

ENTRY_POINT_GROUP = "stevedores"


class PluginError(RuntimeError):
    """A plugin failed while strict mode is on."""


@dataclass
class PluginInfo:
    """What ``stevedores plugins`` reports for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # active | disabled | failed
    error: str | None = None
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "status": self.status, "error": self.error, "hooks": self.hooks}


class Plugins:
    """The plugin manager of one app instance (never a module-level global)."""

    def __init__(self, *, allow: Sequence[str] = (), deny: Sequence[str] = (), strict: bool = False) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.allow, self.deny, self.strict = tuple(allow), tuple(deny), strict
        self.infos: dict[str, PluginInfo] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, load_entry_points: bool = True,
                     extra: Iterable[tuple[str, object]] = ()) -> Plugins:
        """Build the manager the environment asks for and load the plugins."""

        def names(var: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in environ.get(var, "").split(",") if p.strip())

        strict = environ.get("STEVEDORES_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")
        plugins = cls(allow=names("STEVEDORES_PLUGINS"), deny=names("STEVEDORES_DISABLE_PLUGINS"), strict=strict)
        if load_entry_points:
            plugins.load_entry_points()
        for name, obj in extra:
            plugins.register(name, obj)
        return plugins

    def _wanted(self, name: str) -> bool:
        return (not self.allow or name in self.allow) and name not in self.deny

    def load_entry_points(self) -> None:
        """Load every entry point of group ``stevedores`` that the lists allow."""
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            if ep.name in self.infos:
                self.fail(ep.name, f"entry point name also used by distribution {self.infos[ep.name].distribution}")
                continue
            info = self.infos[ep.name] = PluginInfo(ep.name, dist_name, version, "active")
            if not self._wanted(ep.name):
                info.status = "disabled"
                continue
            incompatible = _core_incompatibility(dist)
            if incompatible:
                self.fail(ep.name, incompatible)
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is recorded
                self.fail(ep.name, f"import failed: {_describe(exc)}", exc)
                continue
            self._register(ep.name, obj, info)

    def register(self, name: str, obj: object, *, distribution: str | None = None,
                 version: str | None = None) -> None:
        """Register a plugin object directly (tests, embedded plugins), under ``name``."""
        info = self.infos[name] = PluginInfo(name, distribution, version, "active")
        if not self._wanted(name):
            info.status = "disabled"
            return
        self._register(name, obj, info)

    def _register(self, name: str, obj: object, info: PluginInfo) -> None:
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001 - e.g. a misspelt stevedores_ hook
            self.fail(name, f"registration failed: {_describe(exc)}", exc)
            return
        callers = self.pm.get_hookcallers(obj) or []
        unknown = sorted(h.name for h in callers if not h.has_spec())
        if unknown:
            self.fail(name, f"implements unknown hook {unknown[0]} (misspelt, or needs a newer core?)")
            return
        info.hooks = sorted(h.name for h in callers)

    def fail(self, name: str, reason: str, exc: BaseException | None = None) -> None:
        """Record ``name`` as failed and unregister it; raise in strict mode."""
        info = self.infos.setdefault(name, PluginInfo(name, None, None, "failed"))
        info.status, info.error = "failed", reason
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        where = f" (distribution {info.distribution})" if info.distribution else ""
        if self.strict:
            raise PluginError(f"plugin {name!r}{where} failed: {reason}") from exc
        log.error("Plugin %s%s failed and is disabled: %s", name, where, reason)
        if exc is not None:
            log.debug("Plugin %s traceback:\n%s", name, "".join(traceback.format_exception(exc)))

    def call(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook_name`` on each active plugin on its own; a raising one is failed.

        Returns ``(plugin name, result)`` for each implementation that returned
        something other than None, in pluggy's call order.
        """
        results: list[tuple[str, Any]] = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            name = impl.plugin_name
            if self.pm.get_plugin(name) is None:  # failed earlier in this loop
                continue
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the app down
                self.fail(name, f"{hook_name} raised {_describe(exc)}", exc)
                continue
            if result is not None:
                results.append((name, result))
        return results

    def listing(self) -> list[PluginInfo]:
        """Every plugin seen, sorted by name."""
        return [self.infos[n] for n in sorted(self.infos)]

    def active(self) -> list[str]:
        """Names of the active plugins."""
        return [i.name for i in self.listing() if i.status == "active"]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _core_incompatibility(dist: metadata.Distribution | None) -> str | None:
    """Why ``dist`` cannot run on this core version, or None if it can."""
    if dist is None:
        return None
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower().replace("_", "-") != CORE_DISTRIBUTION or req.marker is not None:
            continue
        if req.specifier and not req.specifier.contains(__version__, prereleases=True):
            return f"requires {CORE_DISTRIBUTION}{req.specifier}, but {__version__} is installed"
    return None
