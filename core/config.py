"""Config: what a kernel is built from.

The fields and their defaults are Parsl's where Parsl has them, so a Parsl
config for local executors carries over unchanged.  typeguard checks the types
at construction (the error names the field); the few value checks typeguard
cannot express are done here and raise :class:`ConfigurationError` naming the
field.  ``Config.from_toml`` reads the same fields from a file.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from typeguard import CollectionCheckStrategy, TypeCheckError, typechecked

from flowkernel.checkpoints import parse_period
from flowkernel.errors import ConfigurationError, ConfigurationTypeError
from flowkernel.executors import Executor
from flowkernel.retry_policy import RetryPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ExitMode = Literal["cleanup", "skip", "wait"]
CheckpointMode = Literal["task_exit", "periodic", "dfk_exit", "manual"]


def _field_errors(init: Callable[..., None]) -> Callable[..., None]:
    """Turn typeguard's report into a ConfigurationTypeError (a TypeError) naming the field."""

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except TypeCheckError as exc:
            raise ConfigurationTypeError(f"Config: {exc}") from None

    return checked


class Config:
    """Settings of one kernel.

    :param executors: the executors tasks may run on; None gives one executor of
        kind ``threads`` labelled ``"threads"``.
    :param app_cache: allow apps declared with ``cache=True`` to reuse results.
    :param retries: the retry budget of each task (failures cost 1 each unless a
        ``flowkernel_retry_cost`` plugin or ``retry_handler`` says otherwise).
    :param retry_handler: ``f(exception, task_record) -> cost``, Parsl's hook for
        pricing failures; if it raises, the task fails with its exception.
    :param dependency_resolver: ``"shallow"`` (futures as top-level arguments and in
        ``inputs=``), ``"deep"`` (also inside lists, tuples, sets and dicts), a
        resolver object, or None for the default (shallow).
    :param exit_mode: what leaving ``with kernel:`` does: ``"cleanup"``,
        ``"skip"`` (nothing) or ``"wait"`` (wait for tasks, then clean up).
    :param garbage_collect: forget finished tasks' records in the kernel's task table.
    :param internal_tasks_max_threads: threads of the kernel's own executor,
        which runs join-app bodies.
    :param run_dir: the folder under which each kernel makes a numbered run directory.
    :param initialize_logging: write the kernel's log to ``<run dir>/flowkernel.log``.
    :param plugins: plugin objects or importable module names to register for this kernel.
    :param disable_plugins: names of plugins to block (see ``flowkernel plugins``).
    :param std_autopath: ``f(task_record, "stdout" | "stderr") -> path``, naming the
        log files of streams given as ``AUTO_LOGNAME`` (default: under the run
        directory, ``task_logs/NNNN/task_<id>_<func>.<stream>``).
    :param checkpoint_mode: when results of memoized tasks are saved:
        ``"task_exit"``, ``"periodic"``, ``"dfk_exit"``, ``"manual"`` or None (never).
    :param checkpoint_files: checkpoint folders of earlier runs whose results are
        reused (see :func:`flowkernel.get_all_checkpoints`).
    :param checkpoint_period: ``"HH:MM:SS"`` between writes in ``"periodic"`` mode.
    :param trust_shared_checkpoints: load checkpoints that other users can write
        (refused by default: loading a pickle runs code).
    :param retry_policy: a :class:`~flowkernel.RetryPolicy` for every app that has
        none of its own: budget, which exceptions are retried, waits between tries.
    :param max_pending_tasks: submitting blocks while this many tasks are
        unfinished, so a loop that submits millions runs in bounded memory.
    :param tune_gc: while the kernel runs, make the garbage collector's older
        generations run less often (only if its thresholds are CPython's
        defaults; restored at cleanup): many pending tasks otherwise make every
        full collection slow.
    :param progress: show a live progress display in a terminal (None: only when
        ``FLOWKERNEL_PROGRESS=1``); needs the ``progress`` extra.
    :param monitoring: record the workflow and every task transition in a SQLite
        database: True for ``<run dir>/monitoring.db``, or a path.
    :param strategy, strategy_period, max_idletime, usage_tracking, project_name:
        accepted so Parsl configs load; they steer block scaling and usage
        reporting, which flowkernel does not do.
    """

    @_field_errors
    @typechecked(collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS)
    def __init__(
        self,
        executors: Sequence[Executor] | None = None,
        app_cache: bool = True,
        retries: int = 0,
        retry_handler: Callable[..., Any] | None = None,
        dependency_resolver: str | object | None = None,
        exit_mode: ExitMode = "cleanup",
        garbage_collect: bool = True,
        internal_tasks_max_threads: int = 10,
        run_dir: str | os.PathLike[str] = "runinfo",
        initialize_logging: bool = True,
        plugins: Sequence[object] = (),
        disable_plugins: Sequence[str] = (),
        std_autopath: Callable[..., Any] | None = None,
        checkpoint_mode: CheckpointMode | None = None,
        checkpoint_files: Sequence[str | os.PathLike[str]] | None = None,
        checkpoint_period: str | None = None,
        trust_shared_checkpoints: bool = False,
        progress: bool | None = None,
        retry_policy: RetryPolicy | None = None,
        max_pending_tasks: int | None = None,
        tune_gc: bool = True,
        monitoring: bool | str | os.PathLike[str] = False,
        strategy: str | None = "simple",
        strategy_period: float | int = 5,
        max_idletime: float = 120.0,
        usage_tracking: int | bool = 0,
        project_name: str | None = None,
    ) -> None:
        if retries < 0:
            raise ConfigurationError(f"Config.retries must be 0 or more, got {retries}")
        if internal_tasks_max_threads < 1:
            raise ConfigurationError(
                "Config.internal_tasks_max_threads must be at least 1, "
                f"got {internal_tasks_max_threads}"
            )
        if isinstance(dependency_resolver, str) and dependency_resolver not in ("shallow", "deep"):
            raise ConfigurationError(
                "Config.dependency_resolver must be 'shallow', 'deep' or a resolver object, "
                f"got {dependency_resolver!r}"
            )
        if isinstance(plugins, str) or isinstance(disable_plugins, str):
            field = "plugins" if isinstance(plugins, str) else "disable_plugins"
            raise ConfigurationError(f"Config.{field} must be a list of names, not one string")
        if max_pending_tasks is not None and max_pending_tasks < 1:
            raise ConfigurationError(
                f"Config.max_pending_tasks must be at least 1 (or None), got {max_pending_tasks}"
            )
        if checkpoint_mode == "periodic":
            if checkpoint_period is None:
                raise ConfigurationError(
                    "Config.checkpoint_period ('HH:MM:SS') is required with "
                    "checkpoint_mode='periodic'"
                )
            parse_period(checkpoint_period)
        labels = [e.label for e in executors or ()]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigurationError(
                f"Config.executors: labels must be unique, and {', '.join(map(repr, duplicates))} "
                "is used more than once"
            )
        self.executors = list(executors) if executors is not None else None
        self.app_cache = app_cache
        self.retries = retries
        self.retry_handler = retry_handler
        self.dependency_resolver = dependency_resolver
        self.exit_mode: ExitMode = exit_mode
        self.garbage_collect = garbage_collect
        self.internal_tasks_max_threads = internal_tasks_max_threads
        self.run_dir = os.fspath(run_dir)
        self.initialize_logging = initialize_logging
        self.plugins = list(plugins)
        self.disable_plugins = list(disable_plugins)
        self.std_autopath = std_autopath
        self.checkpoint_mode: CheckpointMode | None = checkpoint_mode
        self.checkpoint_files = (
            [os.fspath(f) for f in checkpoint_files] if checkpoint_files is not None else None
        )
        self.checkpoint_period = checkpoint_period
        self.trust_shared_checkpoints = trust_shared_checkpoints
        self.progress = progress
        self.retry_policy = retry_policy
        self.max_pending_tasks = max_pending_tasks
        self.tune_gc = tune_gc
        self.monitoring: bool | str = (
            os.fspath(monitoring) if isinstance(monitoring, os.PathLike) else monitoring
        )
        self.strategy = strategy
        self.strategy_period = strategy_period
        self.max_idletime = max_idletime
        self.usage_tracking = usage_tracking
        self.project_name = project_name

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"Config({fields})"

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Config:
        """Read a config file.

        Top-level keys are :class:`Config` fields.  Each ``[[executors]]`` table
        names a ``kind`` and that kind's options::

            retries = 2
            [[executors]]
            kind = "threads"
            label = "local"
            max_threads = 4

        ``retry_handler`` is given as ``"module:function"``; ``plugins`` as
        module names, which are also asked for executor kinds.
        """
        from flowkernel.pluginmanager import build_plugins

        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read config file {file}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{file}: not valid TOML: {exc}") from exc

        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"{file}: unknown config field(s) {', '.join(unknown)}; "
                f"the fields are: {', '.join(sorted(known))}"
            )
        if isinstance(data.get("retry_handler"), str):
            data["retry_handler"] = _import_object(data["retry_handler"], file, "retry_handler")

        tables = data.pop("executors", None)
        if tables is not None:
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise ConfigurationError(f"{file}: 'executors' must be [[executors]] tables")
            # A throwaway config, so that plugins named in the file and blocks
            # from it count when looking up executor kinds.
            lookup = cls(
                plugins=data.get("plugins", ()), disable_plugins=data.get("disable_plugins", ())
            )
            plugins = build_plugins(lookup, start_dir=file.resolve().parent)
            executors = []
            for index, table in enumerate(tables):
                options = dict(table)
                kind = options.pop("kind", None)
                if not isinstance(kind, str):
                    raise ConfigurationError(
                        f'{file}: executors[{index}] needs a kind = "..." (a registered kind: '
                        f"{', '.join(sorted(plugins.executor_kinds()))})"
                    )
                try:
                    executors.append(plugins.make_executor(kind, **options))
                except ConfigurationError as exc:
                    raise ConfigurationError(f"{file}: executors[{index}]: {exc}") from exc
            data["executors"] = executors
        try:
            return cls(**data)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{file}: {exc}") from exc


def _import_object(spec: str, file: Path, field: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ConfigurationError(f"{file}: {field} must be 'module:name', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{file}: {field} = {spec!r} cannot be imported: {exc}") from exc
