"""One plugin manager per app: loads the ``stevedores`` entry points, honours the
per-environment allow/deny lists, isolates failures, and reports every plugin."""

from __future__ import annotations

import logging
import traceback
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Generator, Iterable, Mapping, Sequence

import pluggy
from packaging.requirements import InvalidRequirement, Requirement

from . import hookspecs
from .redaction import redact
from .version import CORE_DISTRIBUTION, __version__

log = logging.getLogger("stevedores.plugins")

ENTRY_POINT_GROUP = "stevedores"

#: The plugins this project ships: entry point name -> distribution. A third-party
#: distribution claiming one of these names never replaces the built-in.
BUILTIN_DISTRIBUTIONS = {
    "health": "stevedores-health", "memory_guard": "stevedores-memory-guard",
    "observability": "stevedores-observability", "operations": "stevedores-operations",
    "redis_resilience": "stevedores-redis-resilience", "security": "stevedores-security",
}


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
    """The plugin manager of one app instance (never a module-level global).

    Hooks run through pluggy's own hook caller, so ``tryfirst``/``trylast``, wrappers
    (``wrapper=True`` and old-style ``hookwrapper=True``), ``firstresult`` specs and
    pluggy's tracing behave as pluggy documents. Failure isolation is added at
    registration: each implementation's function is wrapped so that one that raises
    (or a wrapper that does not yield once) fails its own plugin and answers None,
    and the other plugins still run (conda's plugin manager guards its loading the
    same way; pluggy itself lets the first exception end the call).
    """

    def __init__(self, *, allow: Sequence[str] = (), deny: Sequence[str] = (), strict: bool = False) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.allow, self.deny, self.strict = tuple(allow), tuple(deny), strict
        self.infos: dict[str, PluginInfo] = {}
        self.secrets: Sequence[str] = ()  # redacted from hook traces once the config is read
        self._calls: ContextVar[tuple[_CallRecord, ...]] = ContextVar(f"stevedores-calls-{id(self)}", default=())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, load_entry_points: bool = True,
                     extra: Iterable[tuple[str, object]] = ()) -> Plugins:
        """Build the manager the environment asks for and load the plugins.

        ``STEVEDORES_TRACE_HOOKS=1`` logs every hook call and result through pluggy's tracing.
        """

        def names(var: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in environ.get(var, "").split(",") if p.strip())

        def flag(var: str) -> bool:
            return environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")

        plugins = cls(allow=names("STEVEDORES_PLUGINS"), deny=names("STEVEDORES_DISABLE_PLUGINS"),
                      strict=flag("STEVEDORES_STRICT_PLUGINS"))
        if flag("STEVEDORES_TRACE_HOOKS"):
            plugins.trace_hooks()
        if load_entry_points:
            plugins.load_entry_points()
        for name, obj in extra:
            plugins.register(name, obj)
        return plugins

    def trace_hooks(self) -> None:
        """Log each hook call, its arguments and its result (logger ``stevedores.hooks``, INFO)."""
        trace_log = logging.getLogger("stevedores.hooks")
        self.pm.trace.root.setwriter(lambda line: trace_log.info("%s", redact(line.rstrip(), self.secrets)))
        self.pm.enable_tracing()

    def _wanted(self, name: str) -> bool:
        return (not self.allow or name in self.allow) and name not in self.deny

    def load_entry_points(self) -> None:
        """Load every entry point of group ``stevedores`` that the lists allow.

        Entry point names are unique: when several distributions claim one name, the
        project's own distribution (:data:`BUILTIN_DISTRIBUTIONS`) keeps it, else the
        first by distribution name; every other claimant is listed as failed, naming both.
        """
        for ep in _claimants_first(metadata.entry_points(group=ENTRY_POINT_GROUP)):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            if ep.name in self.infos:
                self._refuse_duplicate(ep.name, dist_name, version)
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

    def _refuse_duplicate(self, name: str, dist_name: str | None, version: str | None) -> None:
        owner = self.infos[name].distribution or "a directly registered plugin"
        reason = (f"entry point name {name!r} is already taken by distribution {owner}; "
                  f"distribution {dist_name} is not loaded")
        key = f"{name} ({dist_name})"
        self.infos[key] = PluginInfo(name, dist_name, version, "failed", reason)
        where = f" (distribution {dist_name})"
        if self.strict:
            raise PluginError(f"plugin {name!r}{where} failed: {reason}")
        log.error("Plugin %s%s failed and is disabled: %s", name, where, reason)

    def register(self, name: str, obj: object, *, distribution: str | None = None,
                 version: str | None = None) -> None:
        """Register a plugin object directly (tests, embedded plugins), under ``name``."""
        if name in self.infos:
            self._refuse_duplicate(name, distribution, version)
            return
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
        for caller in callers:
            for impl in caller.get_hookimpls():
                if impl.plugin is obj:
                    setattr(impl, "function", self._isolated(caller.name, impl))  # noqa: B010 - Final in pluggy's stubs
        info.hooks = sorted(h.name for h in callers)

    def _isolated(self, hook_name: str, impl: pluggy.HookImpl) -> Callable[..., Any]:
        """``impl``'s function, failing only its own plugin when it raises or misbehaves."""
        name, function = impl.plugin_name, impl.function

        def failed(why: str, exc: BaseException | None = None) -> None:
            self.fail(name, f"{hook_name} {why}", exc)

        if not (impl.wrapper or impl.hookwrapper):
            def call(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = function(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the app down
                    failed(f"raised {_describe(exc)}", exc)
                    return None
                if result is not None:
                    for record in self._calls.get()[-1:]:
                        record.answers.append((name, result))
                return result

            return call

        def wrap(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
            # pluggy sends the inner result (new style) or a pluggy.Result (old style) at the
            # yield, or throws the inner exception (only PluginError in strict mode gets here).
            try:
                plugin_gen = function(*args, **kwargs)
                next(plugin_gen)
            except StopIteration:
                failed("wrapper did not yield")
                return (yield)
            except Exception as exc:  # noqa: BLE001 - as above
                failed(f"raised {_describe(exc)}", exc)
                return (yield)
            for record in self._calls.get()[-1:]:
                record.wrappers.append(name)
            try:
                inner = yield
            except BaseException as exc:
                try:
                    plugin_gen.throw(exc)
                except StopIteration as stop:
                    return stop.value
                raise
            try:
                plugin_gen.send(inner)
            except StopIteration as stop:
                return stop.value
            except Exception as exc:  # noqa: BLE001 - as above
                failed(f"raised {_describe(exc)} after its yield", exc)
                return inner
            plugin_gen.close()
            failed("wrapper yielded more than once")
            return inner

        return wrap

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
        """Call ``hook_name`` through pluggy's hook caller; a raising implementation fails its plugin.

        Returns ``(plugin name, result)`` for each result pluggy returns, in pluggy's call
        order (at most one for a ``firstresult`` hook). A result a wrapper put in the list
        itself is attributed to that wrapper's plugin.
        """
        record = _CallRecord()
        token = self._calls.set((*self._calls.get(), record))
        try:
            outcome = getattr(self.pm.hook, hook_name)(**kwargs)
        finally:
            self._calls.reset(token)
        spec = getattr(self.pm.hook, hook_name).spec
        firstresult = bool(spec and spec.opts.get("firstresult"))
        results = ([] if outcome is None else [outcome]) if firstresult else list(outcome)
        return record.attribute(results)

    def listing(self) -> list[PluginInfo]:
        """Every plugin seen, sorted by name (a refused duplicate beside the plugin it tried to replace)."""
        return [self.infos[n] for n in sorted(self.infos)]

    def active(self) -> list[str]:
        """Names of the active plugins."""
        return [i.name for i in self.listing() if i.status == "active"]


@dataclass
class _CallRecord:
    """Who answered what during one hook call (pluggy returns the bare results)."""

    answers: list[tuple[str, Any]] = field(default_factory=list)
    wrappers: list[str] = field(default_factory=list)

    def attribute(self, results: list[Any]) -> list[tuple[str, Any]]:
        """Pair each result with the plugin that returned it (matched by identity)."""
        unclaimed = list(self.answers)
        paired = []
        for result in results:
            index = next((i for i, (_name, answer) in enumerate(unclaimed) if answer is result), None)
            if index is None:
                paired.append((self.wrappers[0] if self.wrappers else "?", result))
            else:
                paired.append(unclaimed.pop(index))
        return paired


def _claimants_first(entry_points: Iterable[metadata.EntryPoint]) -> list[metadata.EntryPoint]:
    """Entry points by name; for one name, the built-in distribution first, then by distribution name."""

    def key(ep: metadata.EntryPoint) -> tuple[str, bool, str]:
        dist = getattr(ep, "dist", None)
        dist_name = ((dist.metadata["Name"] if dist is not None else "") or "").lower().replace("_", "-")
        return ep.name, BUILTIN_DISTRIBUTIONS.get(ep.name) != dist_name, dist_name

    return sorted(entry_points, key=key)


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
