"""The plugin manager: loads plugins, checks them, and builds the registry.

Sources, in order:
1. installed entry points of group ``harness`` (the built-ins are registered this way too);
   ``HARNESS_LOAD_PLUGINS=a,b`` keeps only those (an allowlist, by entry-point name) and
   ``HARNESS_DISABLE_PLUGINS=a,b`` skips those; the built-in engines (``engines``) always load;
2. ad-hoc plugins: ``HARNESS_PLUGINS=mod,path/to/file.py`` and the CLI's ``--plugin`` (repeatable).

``HARNESS_TRACE_PLUGINS=1`` prints every hook call to stderr. Every problem is one line naming the
plugin and the fix (a :class:`~harness.core.errors.HarnessError`, exit code 2, no traceback).

**Quarantine.** An installed (entry-point) plugin that fails to import, is invalid, or fails in a
``register_*`` hook is skipped, with nothing of it registered: ``host.import_errors`` has one line
naming it and how to skip it, the CLI prints that line as a warning, and commands that do not need it
still run (looking up a name it would have registered says it was skipped). An ad-hoc plugin
(``--plugin``) that fails is an error: it was asked for explicitly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pluggy

from harness.core import hookspecs
from harness.core.errors import HarnessError, did_you_mean
from harness.core.registry import Registry

GROUP = "harness"
REGISTER_HOOKS = {"register_methods": "method", "register_benchmarks": "benchmark", "register_engines": "engine",
                  "register_datasets": "dataset"}
ALWAYS_LOAD = ("engines",)  # the built-in engines: `hf` must work whatever the allow/deny lists say


@dataclass
class PluginInfo:
    name: str
    source: str  # "entry point <name> = <value> (<dist>)" or a module/file
    version: str | None
    module: ModuleType | None = None
    dist: str | None = None  # the installed distribution that provides it (entry points)
    adhoc: bool = False  # loaded with --plugin / HARNESS_PLUGINS (its failures are errors, not quarantined)
    code: str | None = None  # harness.core.identity.code_hash, computed on first use


@dataclass
class PluginHost:
    """A loaded set of plugins and the registry they built."""

    pm: pluggy.PluginManager
    registry: Registry
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    import_errors: list[str] = field(default_factory=list)

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        return sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()) if plugin is not None else []

    def describe(self) -> list[dict[str, Any]]:
        """One dict per plugin: name, version, source, hooks, the names it registered, ``status`` ("ok", or
        "broken" for a quarantined installed plugin, with its ``error`` line and nothing registered)."""
        return [
            {
                "name": info.name,
                "version": info.version,
                "source": info.source,
                "hooks": self.hooks_of(info.name),
                "registered": self.registry.names_by_plugin(info.name),
                "status": "ok",
            }
            for info in self.infos.values()
        ] + [
            {"name": name, "version": None, "source": None, "hooks": [], "registered": {}, "status": "broken",
             "error": line}
            for name, line in self.registry.quarantined.items()
        ]

    def code_hash(self, name: str) -> str:
        """The hash of plugin ``name``'s source files (see :mod:`harness.core.identity`)."""
        from harness.core.identity import code_hash

        return code_hash(self.infos[name])

    def add_commands(self, cli: click.Group) -> None:
        self.pm.hook.register_commands(cli=cli)


def _trace(enabled: bool, message: str) -> None:
    if enabled:
        click.echo(f"[harness plugins] {message}", err=True)


def _import_adhoc(spec: str) -> tuple[str, ModuleType]:
    """Import a plugin given as a module name or a path to a .py file."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise HarnessError(f"--plugin {spec}: no such file; give a path to a .py file or an importable module name")
        name = path.stem
        mod_name = f"harness_adhoc_plugin_{name}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure becomes one line
            del sys.modules[mod_name]
            raise HarnessError(f"plugin file {spec} failed to import: {type(exc).__name__}: {exc}; fix the file") from None
        return name, module
    try:
        return spec, importlib.import_module(spec)
    except Exception as exc:  # noqa: BLE001
        raise HarnessError(
            f"plugin module '{spec}' failed to import: {type(exc).__name__}: {exc}; "
            f"check the name or give a path to a .py file"
        ) from None


def _validation_error(exc: pluggy.PluginValidationError, pm: pluggy.PluginManager, name: str | None = None) -> HarnessError:
    plugin = getattr(exc, "plugin", None)
    label = name or (pm.get_name(plugin) if plugin is not None else None) or _plugin_label(plugin)
    msg = str(exc)
    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    for word in msg.replace("'", " ").replace('"', " ").split():
        if word.startswith("register") and word not in hooks:
            return HarnessError(
                f"plugin '{label}' implements '{word}', which is no harness hook"
                f"{did_you_mean(word, hooks)}; rename it to one of: {', '.join(hooks)}"
            )
    return HarnessError(f"plugin '{label}' is invalid: {' '.join(msg.split())}")


def _plugin_label(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or str(plugin)


def load(adhoc: Iterable[str] = (), env: dict[str, str] | None = None) -> PluginHost:
    """Load entry-point and ad-hoc plugins, check them, and build the registry."""
    env = dict(os.environ) if env is None else env
    trace = env.get("HARNESS_TRACE_PLUGINS", "") not in ("", "0")
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if trace:
        pm.trace.root.setwriter(lambda m: click.echo(f"[harness plugins] {m}".rstrip(), err=True))
        pm.enable_tracing()
    host = PluginHost(pm=pm, registry=Registry())

    allow = [a.strip() for a in env.get("HARNESS_LOAD_PLUGINS", "").split(",") if a.strip()]
    deny = [a.strip() for a in env.get("HARNESS_DISABLE_PLUGINS", "").split(",") if a.strip()]
    eps = list(importlib.metadata.entry_points(group=GROUP))
    known = {ep.name for ep in eps}
    for var, names in (("HARNESS_LOAD_PLUGINS", allow), ("HARNESS_DISABLE_PLUGINS", deny)):
        for name in names:
            if name not in known:
                raise HarnessError(
                    f"{var} names '{name}', which is no installed plugin{did_you_mean(name, known)}; "
                    f"installed: {', '.join(sorted(known))}"
                )
    if allow:
        eps = [ep for ep in eps if ep.name in allow or ep.name in ALWAYS_LOAD]
    if deny:
        eps = [ep for ep in eps if ep.name not in deny or ep.name in ALWAYS_LOAD]
    seen_eps: set[str] = set()
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.name in seen_eps:  # the same distribution seen twice on sys.path
            continue
        seen_eps.add(ep.name)
        dist = getattr(ep, "dist", None)
        dist_label = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        source = f"entry point {ep.name} = {ep.value} ({dist_label})"
        _trace(trace, f"loading {source}")
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
            _quarantine(host, ep.name, f"plugin '{ep.name}' ({source}) failed to import: {type(exc).__name__}: {exc}")
            continue
        try:
            _register(host, ep.name, module, source, dist.version if dist is not None else None,
                      dist=dist.name if dist is not None else None)
        except HarnessError as exc:
            _quarantine(host, ep.name, exc.message)

    specs = [s.strip() for s in env.get("HARNESS_PLUGINS", "").split(",") if s.strip()] + list(adhoc)
    for spec in specs:
        _trace(trace, f"loading ad-hoc plugin {spec}")
        name, module = _import_adhoc(spec)
        _register(host, name, module, spec, getattr(module, "__version__", None), adhoc=True)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise _validation_error(exc, pm) from None
    _build_registry(host, trace)
    return host


def skip_hint(name: str) -> str:
    """How to run without plugin ``name``."""
    return (f"fix or uninstall it, or skip it with HARNESS_DISABLE_PLUGINS={name} "
            f"(or name the plugins to keep in HARNESS_LOAD_PLUGINS)")


def _quarantine(host: PluginHost, name: str, error: str) -> None:
    """Drop an installed plugin that failed: unregister it and everything it registered."""
    plugin = host.pm.get_plugin(name)
    if plugin is not None:
        host.pm.unregister(plugin)
    host.infos.pop(name, None)
    host.registry.forget(name)
    line = (f"{error.rstrip('; ')}; skipped: commands that do not need it still run; {skip_hint(name)}"
            if "HARNESS_DISABLE_PLUGINS" not in error else error)
    host.import_errors.append(line)
    host.registry.quarantined[name] = line


def _register(host: PluginHost, name: str, module: ModuleType, source: str, version: str | None,
              dist: str | None = None, adhoc: bool = False) -> None:
    if host.pm.get_plugin(name) is not None or host.pm.is_registered(module):
        other = host.infos.get(name)
        raise HarnessError(
            f"plugin '{name}' from {source} is loaded twice (also from {other.source if other else 'elsewhere'}); "
            f"load it once"
        )
    try:
        host.pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise _validation_error(exc, host.pm, name) from None
    host.infos[name] = PluginInfo(name=name, source=source, version=version, module=module, dist=dist, adhoc=adhoc)


def _build_registry(host: PluginHost, trace: bool) -> None:
    broken: set[str] = set()
    for hook_name, kind in REGISTER_HOOKS.items():
        caller = getattr(host.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # registration order
            if impl.plugin_name in broken:
                continue
            register = host.registry.register_callback(kind, impl.plugin_name)
            _trace(trace, f"{impl.plugin_name}: {hook_name}(register)")
            info = host.infos.get(impl.plugin_name)
            try:
                impl.function(**({"register": register} if "register" in impl.argnames else {}))
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, HarnessError):
                    error = HarnessError(exc.message)
                else:
                    error = HarnessError(
                        f"plugin '{impl.plugin_name}' failed in {hook_name}: {type(exc).__name__}: {exc}; "
                        f"{skip_hint(impl.plugin_name)}"
                    )
                adhoc_involved = any(f"plugin '{n}'" in error.message for n, i in host.infos.items() if i.adhoc)
                if info is None or info.adhoc or adhoc_involved:  # asked for explicitly: an error
                    raise error from None
                broken.add(impl.plugin_name)
                _quarantine(host, impl.plugin_name, error.message)


_HOST: PluginHost | None = None


def get_host(adhoc: Iterable[str] = ()) -> PluginHost:
    """The process-wide plugin host, loaded on first use (the CLI loads it with its ``--plugin`` list)."""
    global _HOST
    if _HOST is None:
        _HOST = load(adhoc)
    return _HOST


def set_host(host: PluginHost | None) -> None:
    """Replace (or with None, forget) the process-wide host; tests and the CLI use this."""
    global _HOST
    _HOST = host
