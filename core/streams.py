"""Where an app's standard output and error go: ``stdout=`` / ``stderr=``.

A stream specification is a path (``str`` or ``os.PathLike``), a ``(path,
mode)`` pair, or :data:`AUTO_LOGNAME`, which the kernel replaces at submission
with a file under the run directory (or wherever ``Config.std_autopath`` says).
The kernel checks specifications when a task is submitted, so a bad one fails
that task's future at once, before anything runs; the runners open the files on
the executor side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowkernel.errors import BadStdStreamFile

if TYPE_CHECKING:
    from flowkernel.task import TaskRecord

STREAMS = ("stdout", "stderr")

_MODES = frozenset({"w", "a", "w+", "a+"})


class _AutoLogname:
    """The type of :data:`AUTO_LOGNAME`: one value, compared by identity."""

    _instance: _AutoLogname | None = None

    def __new__(cls) -> _AutoLogname:
        # Unpickling (a process executor) must give back the same object.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> tuple[Any, ...]:
        return (_AutoLogname, ())

    def __repr__(self) -> str:
        return "AUTO_LOGNAME"


AUTO_LOGNAME = _AutoLogname()
"""Pass as ``stdout=`` or ``stderr=`` to have the kernel name the log file."""


def stream_path_and_mode(name: str, spec: Any) -> tuple[str, str]:
    """The file and open mode a specification means; ``BadStdStreamFile`` if it means none.

    A bare path is opened for appending (``"a+"``), as Parsl does, so that
    retries add to the log rather than erase the earlier tries.
    """
    if isinstance(spec, (str, os.PathLike)):
        return os.fspath(spec), "a+"
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise BadStdStreamFile(
                f"{name}={spec!r}: a tuple must be (path, mode), got {len(spec)} item(s)"
            )
        path, mode = spec
        if not isinstance(path, (str, os.PathLike)) or not isinstance(mode, str):
            raise BadStdStreamFile(
                f"{name}={spec!r}: a tuple must be (path, mode) with a path and a mode string"
            )
        if mode not in _MODES:
            raise BadStdStreamFile(
                f"{name}={spec!r}: mode must be one of {', '.join(sorted(_MODES))}, got {mode!r}"
            )
        return os.fspath(path), mode
    raise BadStdStreamFile(
        f"{name}={spec!r}: expected a path, a (path, mode) tuple or AUTO_LOGNAME, "
        f"got {type(spec).__name__}"
    )


def auto_log_path(task: TaskRecord, name: str, run_dir: str) -> str:
    """``<run_dir>/task_logs/NNNN/task_<id>_<func>[_<label>].<stream>``.

    Ten thousand tasks share a folder, so no folder grows without bound.
    """
    label = task.kwargs.get("label")
    suffix = "" if label is None else f"_{label}"
    return os.path.join(
        run_dir,
        "task_logs",
        str(task.id // 10000).zfill(4),
        f"task_{str(task.id).zfill(4)}_{task.func_name}{suffix}.{name}",
    )


def resolve_streams(
    task: TaskRecord,
    run_dir: str,
    std_autopath: Callable[[TaskRecord, str], Any] | None,
) -> None:
    """Replace ``AUTO_LOGNAME`` in the task's keyword arguments and check every spec.

    An automatic name is left out of the memo key, since it differs per task
    while the work does not.
    """
    kwargs = task.kwargs
    for name in STREAMS:
        spec = kwargs.get(name)
        if spec is None:
            continue
        if spec is AUTO_LOGNAME:
            if name not in task.ignore_for_cache:
                task.ignore_for_cache = [*task.ignore_for_cache, name]
            if std_autopath is None:
                spec = auto_log_path(task, name, run_dir)
            else:
                try:
                    spec = std_autopath(task, name)
                except Exception as exc:
                    raise BadStdStreamFile(
                        f"Config.std_autopath raised while naming {name} of task {task.id}", exc
                    ) from exc
            kwargs[name] = spec
        stream_path_and_mode(name, spec)


def stream_paths(kwargs: dict[str, Any]) -> dict[str, str | None]:
    """The file each stream of a submitted task writes to (None where not redirected)."""
    paths: dict[str, str | None] = {}
    for name in STREAMS:
        spec = kwargs.get(name)
        if spec is None or spec is AUTO_LOGNAME:
            paths[name] = None
            continue
        try:
            paths[name] = stream_path_and_mode(name, spec)[0]
        except BadStdStreamFile:
            paths[name] = None
    return paths
