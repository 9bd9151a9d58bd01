"""Finding, loading and calling plugins.

Plugins are registered in this order (``../DESIGN.md`` in the repository):

1. flowkernel's own entry points in the ``flowkernel`` group: the defaults;
2. other distributions' entry points in that group, unless
   ``FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD`` is set;
3. modules named in ``FLOWKERNEL_PLUGINS`` (comma-separated);
4. ``flowconf.py`` files from the running script's directory (or the working
   directory) up to the first directory holding ``pyproject.toml`` or ``.git``,
   outermost first, so the nearest is asked first; ``FLOWKERNEL_NOCONF`` turns
   this off;
5. ``Config(plugins=[...])``.

pluggy calls the most recently registered implementation first, so a later
source overrides an earlier one, and the defaults (``trylast``) come last.
Names in ``Config(disable_plugins=...)`` and ``FLOWKERNEL_DISABLE_PLUGINS`` are
blocked before anything loads; a blocked plugin is never imported.

:class:`Plugins` is the kernel's typed view of the hooks.  It calls each
implementation itself, in pluggy's order, so a raise or a bad answer can be
blamed on one plugin, and it skips hooks nobody implements.  It is built once
per kernel; nothing here runs at ``import flowkernel``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import importlib_metadata
import pluggy

from flowkernel import hookspecs
from flowkernel.errors import (
    AbortTask,
    ConfigurationError,
    FlowkernelError,
    HookError,
    MemoKeyError,
    PluginLoadError,
)
from flowkernel.executors import Executor
from flowkernel.markers import PROJECT_NAME, STATES_ATTRIBUTE
from flowkernel.states import States

if TYPE_CHECKING:
    from flowkernel.checkpoints import CheckpointStore
    from flowkernel.config import Config
    from flowkernel.dependencies import DependencyResolver
    from flowkernel.kernel import DataFlowKernel
    from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "flowkernel"
HOOK_PREFIX = "flowkernel_"
FLOWCONF_NAME = "flowconf.py"

ENV_DISABLE_AUTOLOAD = "FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "FLOWKERNEL_PLUGINS"
ENV_NOCONF = "FLOWKERNEL_NOCONF"
ENV_DISABLE_PLUGINS = "FLOWKERNEL_DISABLE_PLUGINS"
ENV_TRACE = "FLOWKERNEL_TRACE_PLUGINS"
_ENV_VARS = (ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, ENV_NOCONF, ENV_DISABLE_PLUGINS, ENV_TRACE)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _normalize_dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _where(func: Any) -> str:
    """``path:line`` of a function, for error messages."""
    func = inspect.unwrap(getattr(func, "__func__", func))
    try:
        path = inspect.getsourcefile(func) or "<unknown file>"
        line = inspect.getsourcelines(func)[1]
    except (OSError, TypeError):
        return "<unknown location>"
    return f"{path}:{line}"


@dataclass
class PluginInfo:
    """Where one registered plugin came from, for ``flowkernel plugins``."""

    name: str
    source: str
    """``entry point``, ``FLOWKERNEL_PLUGINS``, ``flowconf`` or ``config``."""
    module: str | None = None
    path: str | None = None
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)

    def describe_origin(self) -> str:
        if self.distribution is not None:
            return f"entry point of {self.distribution} {self.version}"
        if self.source == "flowconf":
            return f"flowconf {self.path}"
        return f"{self.source} ({self.module or self.path or '?'})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "module": self.module,
            "path": self.path,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
        }


class FlowkernelPluginManager(pluggy.PluginManager):
    """A pluggy manager that also takes undecorated ``flowkernel_*`` functions.

    That is what lets a ``flowconf.py`` hold plain functions named after hooks,
    as pytest lets a conftest hold plain ``pytest_*`` functions.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(HOOK_PREFIX):
            member = getattr(plugin, name, None)
            if inspect.isroutine(member):
                return {}
        return opts


_Impl = tuple[str, Callable[..., Any], tuple[str, ...]]


class Plugins:
    """The registered plugins of one kernel (or of the process), and typed calls to their hooks.

    Decision methods raise :class:`~flowkernel.errors.HookError` when a plugin
    raises or answers nonsense; observer methods never raise.
    """

    def __init__(
        self,
        pm: FlowkernelPluginManager,
        infos: dict[str, PluginInfo],
        blocked: Sequence[str] = (),
    ) -> None:
        self.pm = pm
        self.infos = infos
        self.blocked = sorted(set(blocked))
        self.trace = _env_flag(ENV_TRACE)
        self._impls: dict[str, list[_Impl]] = {}
        self._executor_kinds: dict[str, tuple[str, Callable[..., Executor]]] | None = None
        self._state_fast = True
        self.state_observers: dict[States, list[_Impl]] = {}
        """The state hook's implementations by state entered (the kernel skips a call to none)."""
        self._collect()
        self._lock = threading.Lock()
        self.observer_errors = 0
        """How many times an observer hook raised (logged each time)."""

    def _collect(self) -> None:
        """Cache each hook's implementations in call order, and the fast state-observer path."""
        for hook_name in hookspecs.HOOK_NAMES:
            caller = getattr(self.pm.hook, hook_name)
            # get_hookimpls() lists in reverse call order.
            self._impls[hook_name] = [
                (impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())
            ]
        full = ("task", "old", "new")
        state_impls = self._impls["flowkernel_task_state_changed"]
        # The common case (every argument, in the spec's order, no tracing)
        # calls positionally, without building keyword dicts.
        self._state_fast = not self.trace and all(names == full for _, _, names in state_impls)
        self.state_observers = {
            state: [
                impl
                for impl in state_impls
                if state in getattr(impl[1], STATES_ATTRIBUTE, (state,))
            ]
            for state in States
        }

    def register(self, plugin: Any, name: str) -> None:
        """Add a plugin to this kernel's set while it runs.

        For plugins that decide per kernel whether to take part: the
        monitoring plugin, at ``flowkernel_kernel_started``, registers a
        recorder for that kernel only when its config asks for one, so kernels
        without monitoring pay nothing per task.
        """
        info = PluginInfo(name=name, source="runtime", module=type(plugin).__module__)
        _validate(self.pm, plugin, info)
        self.pm.register(plugin, name=name)
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self.infos[name] = info
        self._collect()

    # -- introspection -----------------------------------------------------

    def implements(self, hook_name: str) -> bool:
        """Whether any registered plugin implements ``hook_name``."""
        return bool(self._impls[hook_name])

    def implementers(self, hook_name: str) -> list[str]:
        """Plugin names implementing ``hook_name``, in call order."""
        return [name for name, _, _ in self._impls[hook_name]]

    def require(self, hook_name: str, role: str) -> None:
        """Fail clearly when no plugin fills a role the kernel needs."""
        if not self._impls[hook_name]:
            raise ConfigurationError(
                f"no plugin implements {hook_name}, which the kernel needs to {role}"
                + (f" (blocked plugins: {', '.join(self.blocked)})" if self.blocked else "")
                + "; register a plugin that does, or stop blocking the default one"
            )

    # -- calling -----------------------------------------------------------

    def _trace(self, hook_name: str, plugin: str, kwargs: dict[str, Any], result: Any) -> None:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        sys.stderr.write(f"[flowkernel trace] {hook_name}({args}) <- {plugin}: {result!r}\n")

    def first(self, hook_name: str, **kwargs: Any) -> tuple[Any, str | None]:
        """Ask a decision hook; return the first non-None answer and who gave it."""
        for plugin, function, argnames in self._impls[hook_name]:
            try:
                result = function(*[kwargs[a] for a in argnames])
            except (AbortTask, HookError):
                # A HookError here came from a hook this one called (the memo
                # key asks for ids), and already names the plugin at fault.
                raise
            except Exception as exc:
                raise HookError(hook_name, plugin, f"raised {type(exc).__name__}: {exc}") from exc
            if self.trace:
                self._trace(hook_name, plugin, kwargs, result)
            if result is not None:
                return result, plugin
        return None, None

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Tell every observer; a raise is logged and counted, never propagated."""
        for plugin, function, argnames in self._impls[hook_name]:
            self._observe(hook_name, plugin, function, argnames, kwargs)

    def _observe(
        self,
        hook_name: str,
        plugin: str,
        function: Callable[..., Any],
        argnames: tuple[str, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            result = function(*[kwargs[a] for a in argnames])
        except Exception:
            with self._lock:
                self.observer_errors += 1
            logger.exception("hook %s in plugin %r raised; ignored", hook_name, plugin)
            return
        if self.trace:
            self._trace(hook_name, plugin, kwargs, result)

    # -- the hooks, typed --------------------------------------------------

    def _offers(self, hook_name: str) -> list[tuple[str, Any]]:
        """``(plugin, answer)`` from every implementation of a merged hook that answered."""
        offers = []
        for plugin, function, _ in self._impls[hook_name]:
            try:
                offered = function()
            except Exception as exc:
                raise HookError(hook_name, plugin, f"raised {type(exc).__name__}: {exc}") from exc
            if offered is not None:
                offers.append((plugin, offered))
        return offers

    def executor_kinds(self) -> dict[str, tuple[str, Callable[..., Executor]]]:
        """``{kind: (plugin name, factory)}`` merged over all plugins, asked once."""
        if self._executor_kinds is None:
            kinds: dict[str, tuple[str, Callable[..., Executor]]] = {}
            for plugin, offered in self._offers("flowkernel_executor_kinds"):
                if not isinstance(offered, dict):
                    raise HookError(
                        "flowkernel_executor_kinds",
                        plugin,
                        f"returned {type(offered).__name__}, expected a dict {{kind: factory}}",
                    )
                for kind, factory in offered.items():
                    if kind in kinds:
                        raise PluginLoadError(
                            f"executor kind {kind!r} is provided by two plugins: "
                            f"{kinds[kind][0]!r} and {plugin!r}; block one of them "
                            "(Config(disable_plugins=[...]) or FLOWKERNEL_DISABLE_PLUGINS)"
                        )
                    kinds[kind] = (plugin, factory)
            self._executor_kinds = kinds
        return self._executor_kinds

    def make_executor(self, kind: str, **options: Any) -> Executor:
        kinds = self.executor_kinds()
        if kind not in kinds:
            known = ", ".join(sorted(kinds)) or "none"
            blocked = f" (blocked plugins: {', '.join(self.blocked)})" if self.blocked else ""
            raise ConfigurationError(
                f"unknown executor kind {kind!r}{blocked}; the installed plugins provide: {known}"
            )
        plugin, factory = kinds[kind]
        try:
            executor = factory(**options)
        except TypeError as exc:
            raise ConfigurationError(
                f"executor kind {kind!r} (plugin {plugin!r}) rejected its options "
                f"{sorted(options)}: {exc}"
            ) from exc
        except FlowkernelError:
            raise  # the plugin's own clear message (a missing extra, a bad option)
        except Exception as exc:
            raise HookError(
                "flowkernel_executor_kinds",
                plugin,
                f"the factory for kind {kind!r} raised {type(exc).__name__}: {exc}",
            ) from exc
        if not isinstance(executor, Executor):
            raise HookError(
                "flowkernel_executor_kinds",
                plugin,
                f"the factory for kind {kind!r} built {type(executor).__name__}, "
                "not a flowkernel.Executor",
            )
        return executor

    def select_executor(self, task: TaskRecord, candidates: Sequence[str]) -> str:
        label, plugin = self.first("flowkernel_select_executor", task=task, candidates=candidates)
        if label is None:
            raise HookError(
                "flowkernel_select_executor",
                None,
                f"no plugin chose an executor for task {task.id} among {list(candidates)}",
            )
        if label not in candidates:
            raise HookError(
                "flowkernel_select_executor",
                plugin,
                f"returned {label!r}, which is not one of the candidates {list(candidates)}",
            )
        return str(label)

    def retry_cost(self, exception: BaseException, task: TaskRecord) -> float:
        cost, plugin = self.first("flowkernel_retry_cost", exception=exception, task=task)
        if cost is None:
            raise HookError(
                "flowkernel_retry_cost", None, f"no plugin priced the failure of task {task.id}"
            )
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost != cost:
            raise HookError(
                "flowkernel_retry_cost", plugin, f"returned {cost!r}, expected a number"
            )
        return float(cost)

    def dependency_resolver(self, config: Config) -> tuple[DependencyResolver, str]:
        from flowkernel.dependencies import DependencyResolver

        resolver, plugin = self.first("flowkernel_dependency_resolver", config=config)
        if resolver is None:
            raise ConfigurationError(
                "no plugin provided a dependency resolver (flowkernel_dependency_resolver)"
            )
        if not isinstance(resolver, DependencyResolver):
            raise HookError(
                "flowkernel_dependency_resolver",
                plugin,
                f"returned {resolver!r}, which lacks traverse_to_gather/traverse_to_unwrap",
            )
        assert plugin is not None
        return resolver, plugin

    def memo_key(self, task: TaskRecord) -> str | None:
        key, plugin = self.first("flowkernel_memo_key", task=task)
        if key is not None and not isinstance(key, str):
            raise HookError(
                "flowkernel_memo_key", plugin, f"returned {type(key).__name__}, expected a str"
            )
        return key

    def id_for_memo(self, value: object) -> bytes:
        """The memo identity of one value, from the first plugin that knows its type."""
        identity, plugin = self.first(
            "flowkernel_id_for_memo", value=value, identify=self.id_for_memo
        )
        if identity is None:
            # Not a plugin's fault: the user gave a value nobody can identify.
            raise AbortTask(
                MemoKeyError(
                    f"cannot compute a memo key: no plugin identifies a value of type "
                    f"{type(value).__module__}.{type(value).__qualname__}; implement "
                    "flowkernel_id_for_memo for it (e.g. in a flowconf.py), or name that "
                    "argument in ignore_for_cache"
                )
            )
        if not isinstance(identity, bytes):
            raise HookError(
                "flowkernel_id_for_memo",
                plugin,
                f"returned {type(identity).__name__} for a {type(value).__name__}, expected bytes",
            )
        return identity

    def checkpoint_store(self, config: Config, run_dir: str) -> CheckpointStore:
        from flowkernel.checkpoints import CheckpointStore

        store, plugin = self.first("flowkernel_checkpoint_store", config=config, run_dir=run_dir)
        if store is None:
            raise ConfigurationError(
                "checkpointing is configured but no plugin provides a checkpoint store "
                "(flowkernel_checkpoint_store)"
            )
        if not isinstance(store, CheckpointStore):
            raise HookError(
                "flowkernel_checkpoint_store",
                plugin,
                f"returned {store!r}, which lacks load/write/close",
            )
        return store

    def staging_providers(self) -> list[tuple[str, Any]]:
        """``(plugin name, provider)`` pairs merged over all plugins, in the order to ask them."""
        found: list[tuple[str, Any]] = []
        for plugin, offered in self._offers("flowkernel_staging_providers"):
            if isinstance(offered, (str, bytes)) or not isinstance(offered, (list, tuple)):
                raise HookError(
                    "flowkernel_staging_providers",
                    plugin,
                    f"returned {type(offered).__name__}, expected a list of providers",
                )
            for provider in offered:
                if not all(
                    callable(getattr(provider, m, None)) for m in ("can_stage_in", "can_stage_out")
                ):
                    raise HookError(
                        "flowkernel_staging_providers",
                        plugin,
                        f"offered {provider!r}, which lacks can_stage_in/can_stage_out "
                        "(subclass flowkernel.staging.StagingProvider)",
                    )
                found.append((plugin, provider))
        return found

    def task_state_changed(self, task: TaskRecord, old: States, new: States) -> None:
        observers = self.state_observers[new]
        if not self._state_fast:
            kwargs = {"task": task, "old": old, "new": new}
            for plugin, function, argnames in observers:
                self._observe("flowkernel_task_state_changed", plugin, function, argnames, kwargs)
            return
        for plugin, function, _ in observers:
            try:
                function(task, old, new)
            except Exception:
                with self._lock:
                    self.observer_errors += 1
                logger.exception(
                    "hook flowkernel_task_state_changed in plugin %r raised; ignored", plugin
                )

    def kernel_started(self, kernel: DataFlowKernel) -> None:
        self.notify("flowkernel_kernel_started", kernel=kernel)

    def kernel_stopping(self, kernel: DataFlowKernel) -> None:
        self.notify("flowkernel_kernel_stopping", kernel=kernel)

    def kernel_stopped(self, kernel: DataFlowKernel) -> None:
        self.notify("flowkernel_kernel_stopped", kernel=kernel)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _validate(pm: pluggy.PluginManager, plugin: Any, info: PluginInfo) -> None:
    """Check hook names and argument names first, to report the file and line."""
    for attr in dir(plugin):
        if not attr.startswith(HOOK_PREFIX):
            continue
        member = getattr(plugin, attr, None)
        if not inspect.isroutine(member):
            continue
        if attr not in hookspecs.HOOK_NAMES:
            close = difflib.get_close_matches(attr, hookspecs.HOOK_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise PluginLoadError(
                f"{_where(member)}: plugin {info.name!r} ({info.describe_origin()}) "
                f"defines {attr}, which is not a flowkernel hook{hint}"
            )
        opts: dict[str, Any] = dict(pm.parse_hookimpl_opts(plugin, attr) or {})
        if opts.get("hookwrapper") or opts.get("wrapper"):
            raise PluginLoadError(
                f"{_where(member)}: plugin {info.name!r} makes {attr} a hook wrapper; "
                "flowkernel calls implementations one by one and does not support wrappers"
            )
        if hasattr(member, STATES_ATTRIBUTE) and attr != "flowkernel_task_state_changed":
            raise PluginLoadError(
                f"{_where(member)}: plugin {info.name!r} marks {attr} with entering(); "
                "only flowkernel_task_state_changed is called per state"
            )
        spec_params = set(inspect.signature(getattr(hookspecs, attr)).parameters)
        try:
            params = inspect.signature(member).parameters
        except (TypeError, ValueError):
            continue
        unknown = [p for p in params if p not in spec_params]
        if unknown:
            raise PluginLoadError(
                f"{_where(member)}: plugin {info.name!r} implements {attr} with "
                f"argument(s) {', '.join(unknown)} that the hook does not have; it offers: "
                f"{', '.join(sorted(spec_params)) or 'none'}"
            )


class _Loader:
    """Registers plugins from every source into one manager, recording where each came from."""

    def __init__(self, blocked: Iterable[str]) -> None:
        self.pm = FlowkernelPluginManager()
        self.infos: dict[str, PluginInfo] = {}
        self.blocked = list(blocked)
        for name in self.blocked:
            self.pm.set_blocked(name)

    def register(self, plugin: Any, info: PluginInfo) -> None:
        if self.pm.is_blocked(info.name):
            logger.debug("plugin %r is blocked; not registered", info.name)
            return
        if info.name in self.infos:
            raise PluginLoadError(
                f"two plugins are named {info.name!r}: one from "
                f"{self.infos[info.name].describe_origin()}, one from {info.describe_origin()}"
            )
        _validate(self.pm, plugin, info)
        try:
            self.pm.register(plugin, name=info.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginLoadError(
                f"plugin {info.name!r} ({info.describe_origin()}) could not be registered: {exc}"
            ) from exc
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self.infos[info.name] = info

    # -- sources -----------------------------------------------------------

    def load_entry_points(self, autoload: bool) -> None:
        own: list[importlib_metadata.EntryPoint] = []
        others: list[importlib_metadata.EntryPoint] = []
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist_name = ep.dist.name if ep.dist is not None else ""
            (own if _normalize_dist_name(dist_name) == PROJECT_NAME else others).append(ep)
        if not own:
            raise PluginLoadError(
                "flowkernel's default plugins are registered through its distribution's entry "
                f"points (group {ENTRY_POINT_GROUP!r}), and none were found: flowkernel is not "
                "installed; install it (pip install -e . in a checkout, or pip install flowkernel)"
            )
        own.sort(key=lambda ep: ep.name)
        others.sort(key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
        for ep in own + (others if autoload else []):
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                source="entry point",
                module=ep.value,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            if self.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {ep.name!r} from distribution {info.distribution} {info.version} "
                    f"failed to load ({ep.value}): {type(exc).__name__}: {exc}"
                ) from exc
            info.path = getattr(plugin, "__file__", None)
            self.register(plugin, info)

    def load_module(self, module_name: str, source: str) -> None:
        if self.pm.is_blocked(module_name):
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(
                f"plugin module {module_name!r} (from {source}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.register(
            module,
            PluginInfo(
                name=module_name,
                source=source,
                module=module_name,
                path=getattr(module, "__file__", None),
            ),
        )

    def load_flowconfs(self, start_dir: Path) -> None:
        for path in flowconf_paths(start_dir):
            name = str(path)
            if self.pm.is_blocked(name):
                continue
            module = _import_flowconf(path)
            self.register(module, PluginInfo(name=name, source="flowconf", path=name))

    def load_config_plugins(self, plugins: Sequence[Any]) -> None:
        for plugin in plugins:
            if isinstance(plugin, str):
                self.load_module(plugin, "config")
                continue
            if isinstance(plugin, ModuleType):
                name = plugin.__name__
            else:
                cls = plugin if isinstance(plugin, type) else type(plugin)
                name = f"{cls.__module__}.{cls.__qualname__}"
                if name in self.infos:
                    name = f"{name}#{id(plugin):x}"
            self.register(
                plugin,
                PluginInfo(
                    name=name,
                    source="config",
                    module=getattr(plugin, "__module__", None) or getattr(plugin, "__name__", None),
                ),
            )


def flowconf_paths(start_dir: Path) -> list[Path]:
    """``flowconf.py`` files from ``start_dir`` up to the project root, outermost first."""
    found: list[Path] = []
    directory = start_dir.resolve()
    while True:
        candidate = directory / FLOWCONF_NAME
        if candidate.is_file():
            found.append(candidate)
        is_root = (directory / "pyproject.toml").exists() or (directory / ".git").exists()
        if is_root or directory.parent == directory:
            break
        directory = directory.parent
    found.reverse()
    return found


_flowconf_cache: dict[Path, tuple[float, ModuleType]] = {}
_flowconf_lock = threading.Lock()


def _import_flowconf(path: Path) -> ModuleType:
    """Import one ``flowconf.py`` by path, once per process (again if the file changed)."""
    mtime = path.stat().st_mtime
    with _flowconf_lock:
        cached = _flowconf_cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        module_name = "flowkernel_flowconf_" + re.sub(r"\W", "_", str(path))
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            sys.modules.pop(module_name, None)
            raise PluginLoadError(
                f"{path}:{exc.lineno}: syntax error in flowconf.py: {exc.msg}"
            ) from exc
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise PluginLoadError(
                f"{path}: flowconf.py failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        _flowconf_cache[path] = (mtime, module)
        return module


def script_dir() -> Path:
    """Where flowconf discovery starts: the running script's folder, else the working directory."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    # A script run as ``python script.py`` has no __spec__; ``python -m pkg`` does,
    # and then the working directory is what the user means.
    if (
        main_file
        and getattr(main, "__spec__", None) is None
        and main_file.endswith((".py", ".pyw"))
        and os.path.isfile(main_file)
    ):
        return Path(main_file).resolve().parent
    return Path.cwd()


def build_plugins(config: Config | None = None, start_dir: Path | None = None) -> Plugins:
    """Discover, load and check every plugin for a kernel with ``config``."""
    blocked = _env_list(ENV_DISABLE_PLUGINS)
    if config is not None:
        blocked += list(config.disable_plugins)
    loader = _Loader(blocked)
    loader.load_entry_points(autoload=not _env_flag(ENV_DISABLE_AUTOLOAD))
    for module_name in _env_list(ENV_PLUGINS):
        loader.load_module(module_name, ENV_PLUGINS)
    if not _env_flag(ENV_NOCONF):
        loader.load_flowconfs(start_dir if start_dir is not None else script_dir())
    if config is not None:
        loader.load_config_plugins(config.plugins)
    try:
        loader.pm.check_pending()
    except pluggy.PluginValidationError as exc:  # pragma: no cover - _validate catches these first
        raise PluginLoadError(str(exc)) from exc
    return Plugins(loader.pm, loader.infos, loader.blocked)


_default: tuple[tuple[Any, ...], Plugins] | None = None
_default_lock = threading.Lock()


def default_plugins() -> Plugins:
    """The plugins of this process without a config: for ``make_executor`` and the CLI.

    Built on first use and rebuilt when the plugin environment variables or the
    discovery directory change.
    """
    global _default
    key = (tuple(os.environ.get(v) for v in _ENV_VARS), script_dir())
    with _default_lock:
        if _default is None or _default[0] != key:
            _default = (key, build_plugins())
        return _default[1]
