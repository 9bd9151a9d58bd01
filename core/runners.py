"""What an executor actually calls for a python or bash app.

The kernel hands executors ``runner(*args, **kwargs)``.  For a python app
without ``stdout=``, ``stderr=`` or ``walltime=`` the runner is the app's own
function, so the common case costs nothing.  Otherwise it is
``functools.partial(run_python_app, func)`` or ``partial(run_bash_app, func)``:
module-level functions, so a runner pickles whenever the app's function does
and works the same on a thread or in another process.

The runtime keywords (``stdout``, ``stderr``, ``walltime``) are passed on to
the app's function only when it declares them (or takes ``**kwargs``), so an
app can use them as Parsl apps do, or ignore them.

Threads and capture
-------------------
``print`` inside a python app with ``stdout=`` goes to that file even though
other tasks run on other threads of the same process at the same time: the
first such task replaces ``sys.stdout`` (and ``sys.stderr``) with a router that
sends each thread's writes to that thread's file, and everything else to the
stream it replaced.  Output of child processes a python app starts is not
captured (use a bash app for that).

``walltime`` on a python app runs the body on a helper thread and gives up
waiting after that many seconds: the task fails with :class:`AppTimeout` at
once, and the body's thread is asked to stop by raising ``AppTimeout`` inside it
(Python can only deliver that between bytecodes, so a body blocked in C code
finishes that call first).  A bash app's command runs in its own process
group, and the whole group is killed at its walltime.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from flowkernel.errors import (
    AppBadFormatting,
    AppTimeout,
    BadStdStreamFile,
    BashAppNoReturn,
    BashExitFailure,
    MissingOutputs,
)
from flowkernel.files import File
from flowkernel.streams import STREAMS, stream_path_and_mode

RUNTIME_KWARGS = ("stdout", "stderr", "walltime")
"""Keyword arguments that steer how a task runs rather than what it computes."""

_KILL_GRACE = 2.0
"""Seconds a timed-out command's process group gets between SIGTERM and SIGKILL."""


def needs_runner(kwargs: dict[str, Any]) -> bool:
    """True when a python app call needs :func:`run_python_app`: runtime keywords or outputs."""
    if not kwargs:
        return False
    if kwargs.get("outputs"):
        return True
    for name in RUNTIME_KWARGS:
        if kwargs.get(name) is not None:
            return True
    return False


# -- Which keywords the body receives ------------------------------------------


@functools.lru_cache(maxsize=4096)
def _declared(func: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword names ``func`` accepts, or None if it accepts any."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


def _body_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        declared = _declared(func)
    except TypeError:  # an unhashable callable object
        declared = None
    if declared is None:
        return kwargs
    return {k: v for k, v in kwargs.items() if k not in RUNTIME_KWARGS or k in declared}


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", type(func).__name__)


# -- Stream files ----------------------------------------------------------------


@contextlib.contextmanager
def _stream_files(kwargs: dict[str, Any]) -> Iterator[dict[str, IO[str] | None]]:
    """Open the task's stream files (one file when both name the same path)."""
    opened: dict[tuple[str, str], IO[str]] = {}
    files: dict[str, IO[str] | None] = {}
    try:
        for name in STREAMS:
            spec = kwargs.get(name)
            if spec is None:
                files[name] = None
                continue
            path, mode = stream_path_and_mode(name, spec)
            key = (os.path.abspath(path), mode)
            if key not in opened:
                try:
                    folder = os.path.dirname(path)
                    if folder:
                        os.makedirs(folder, exist_ok=True)
                    opened[key] = open(path, mode)
                except OSError as exc:
                    raise BadStdStreamFile(f"{name}: cannot open {path!r}", exc) from exc
            files[name] = opened[key]
        yield files
    finally:
        for handle in opened.values():
            handle.close()


_targets = threading.local()
_install_lock = threading.Lock()


class _ThreadRouter:
    """Stands in for ``sys.stdout``/``sys.stderr``: each thread writes to its own target."""

    def __init__(self, name: str, fallback: Any) -> None:
        self._name = name
        self._fallback = fallback

    def _target(self) -> Any:
        return getattr(_targets, self._name, None) or self._fallback

    def write(self, text: str) -> int:
        return self._target().write(text)  # type: ignore[no-any-return]

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._fallback, attr)


@contextlib.contextmanager
def _captured(files: dict[str, IO[str] | None]) -> Iterator[None]:
    """Send this thread's ``sys.stdout``/``sys.stderr`` writes to the task's files."""
    for name in STREAMS:
        if files.get(name) is None:
            continue
        with _install_lock:
            if not isinstance(getattr(sys, name), _ThreadRouter):
                setattr(sys, name, _ThreadRouter(name, getattr(sys, name)))
        setattr(_targets, name, files[name])
    try:
        yield
    finally:
        for name in STREAMS:
            handle = getattr(_targets, name, None)
            if handle is not None:
                handle.flush()
                setattr(_targets, name, None)


# -- Python apps -------------------------------------------------------------------


def run_python_app(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a python app's body with its stream capture and walltime."""
    walltime = kwargs.get("walltime")
    body_kwargs = _body_kwargs(func, kwargs)
    if walltime is None:
        with _stream_files(kwargs) as files, _captured(files):
            result = func(*args, **body_kwargs)
        _check_outputs(func, kwargs)
        return result

    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def body() -> None:
        try:
            with _stream_files(kwargs) as files, _captured(files):
                outcome["value"] = func(*args, **body_kwargs)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=body, name=f"flowkernel-walltime-{_name(func)}", daemon=True)
    worker.start()
    if finished.wait(float(walltime)):
        if "error" in outcome:
            raise outcome["error"]
        _check_outputs(func, kwargs)
        return outcome["value"]
    _raise_in_thread(worker, AppTimeout)
    raise AppTimeout(f"App {_name(func)} exceeded walltime: {walltime} seconds")


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Ask ``thread`` to raise ``exc_type`` at its next bytecode (best effort)."""
    if thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )


# -- Bash apps ---------------------------------------------------------------------


def run_bash_app(func: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Build a bash app's command line, run it, and return its exit code (always 0).

    A non-zero exit fails with :class:`BashExitFailure`; a command still running
    at ``walltime`` is killed with its whole process group and fails with
    :class:`AppTimeout`; declared ``outputs`` that do not exist afterwards fail
    with :class:`MissingOutputs`.
    """
    name = _name(func)
    try:
        command = func(*args, **_body_kwargs(func, kwargs))
    except (AttributeError, IndexError, KeyError) as exc:
        raise AppBadFormatting(
            f"bash_app {name} failed to build its command line: {type(exc).__name__}: {exc}"
        ) from exc
    if command is None:
        raise BashAppNoReturn(
            f"bash_app {name} returned None: its body must return the command line to run"
        )
    if not isinstance(command, str):
        raise AppBadFormatting(
            f"bash_app {name} must return its command line as a str, "
            f"got {type(command).__name__}: {command!r:.200}"
        )

    walltime = kwargs.get("walltime")
    with _stream_files(kwargs) as files:
        process = subprocess.Popen(
            command,
            shell=True,
            executable="/bin/bash",
            stdin=subprocess.DEVNULL,
            stdout=files["stdout"],
            stderr=files["stderr"],
            start_new_session=True,  # its own process group, so a kill reaches its children
        )
        try:
            code = process.wait(timeout=None if walltime is None else float(walltime))
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise AppTimeout(f"bash_app {name} exceeded walltime: {walltime} seconds") from None
        finally:
            if process.poll() is None:  # interrupted while waiting
                _kill_group(process)
    if code != 0:
        raise BashExitFailure(name, code)
    _check_outputs(func, kwargs)
    return code


def _check_outputs(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    missing = [out for out in kwargs.get("outputs") or () if not _exists(out)]
    if missing:
        raise MissingOutputs(f"app {_name(func)} did not create its declared outputs", missing)


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """Stop a command and everything it started: SIGTERM, a grace period, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if sig is signal.SIGTERM:
            # The shell is gone; make sure nothing it started lingers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            break


def _exists(output: Any) -> bool:
    """Whether a declared output exists; files not on this machine count as present."""
    if isinstance(output, File):
        if output.local_path is None and output.scheme != "file":
            return True  # a remote output: its stage-out deals with it
        return os.path.exists(output.filepath)
    if isinstance(output, (str, os.PathLike)):
        return os.path.exists(output)
    return True
