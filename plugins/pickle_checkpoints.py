"""Default checkpoint store: pickled records appended to ``<run dir>/checkpoint/tasks.pkl``.

The file is a sequence of pickled ``{"hash": key, "exception": None, "result":
value}`` dicts, the layout Parsl writes, so a Parsl checkpoint folder can be
named in ``checkpoint_files`` too.  Each write is one ``os.write`` of whole
records to a file opened for appending, so a process killed at any moment
leaves every earlier record intact and at worst a torn last one, which loading
skips with a warning.  The folder is created ``0700`` and the file ``0600``:
a checkpoint is code to the unpickler, so only its owner may write it, and a
checkpoint that others could have written is refused unless
``Config(trust_shared_checkpoints=True)``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Sequence
from typing import Any

from flowkernel.checkpoints import CHECKPOINT_DIR, Record
from flowkernel.config import Config
from flowkernel.errors import ConfigurationError
from flowkernel.markers import hookimpl

logger = logging.getLogger(__name__)

FILE_NAME = "tasks.pkl"


class PickleCheckpointStore:
    """Appends records to one pickle file per run; reads any number of them."""

    def __init__(self, run_dir: str, trust_shared: bool = False) -> None:
        self.folder = os.path.join(run_dir, CHECKPOINT_DIR)
        self.path = os.path.join(self.folder, FILE_NAME)
        self.trust_shared = trust_shared
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            os.chmod(self.folder, 0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.chmod(self.path, 0o600)
        return self._fd

    def write(self, records: Sequence[Record]) -> int:
        chunks = []
        for key, result, task in records:
            try:
                chunks.append(
                    pickle.dumps({"hash": key, "exception": None, "result": result}, protocol=4)
                )
            except Exception as exc:
                logger.warning(
                    "task %d (%s): result of type %s cannot be pickled, so it is not "
                    "checkpointed (%s: %s); the task's future still has it",
                    task.id,
                    task.func_name,
                    type(result).__name__,
                    type(exc).__name__,
                    exc,
                )
        if chunks:
            data = b"".join(chunks)
            fd = self._open()
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        return len(chunks)

    def load(self, sources: Sequence[str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for source in sources:
            path = source if os.path.isfile(source) else os.path.join(source, FILE_NAME)
            if not self.trust_shared:
                _refuse_if_shared(path)
            results.update(_read(path))
        return results

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _refuse_if_shared(path: str) -> None:
    """Refuse a checkpoint that someone else could have written: unpickling runs code."""
    for target in (os.path.dirname(os.path.abspath(path)), path):
        try:
            info = os.stat(target)
        except FileNotFoundError:
            return  # nothing to load; _read reports it
        if info.st_mode & 0o022 or info.st_uid != os.getuid():
            raise ConfigurationError(
                f"refusing to load checkpoint {path}: {target} is writable by other users or "
                f"owned by someone else (mode {oct(info.st_mode & 0o777)}), and loading a "
                "pickle runs code; fix its permissions (chmod go-w), or set "
                "Config(trust_shared_checkpoints=True) if you trust everyone who can write it"
            )


def _read(path: str) -> dict[str, Any]:
    """Every complete record of one file; a torn or corrupt tail is skipped with a warning."""
    results: dict[str, Any] = {}
    try:
        handle = open(path, "rb")
    except OSError as exc:
        logger.warning("checkpoint %s cannot be read (%s); skipped", path, exc)
        return results
    with handle:
        size = os.fstat(handle.fileno()).st_size
        while True:
            start = handle.tell()
            try:
                record = pickle.load(handle)
            except EOFError:
                if start < size:
                    _warn_torn(path, start, size, len(results))
                break
            except Exception as exc:
                _warn_torn(path, start, size, len(results), exc)
                break
            if isinstance(record, dict) and record.get("exception") is None and "hash" in record:
                results[record["hash"]] = record.get("result")
    logger.info("loaded %d checkpointed result(s) from %s", len(results), path)
    return results


def _warn_torn(
    path: str, at: int, size: int, loaded: int, exc: BaseException | None = None
) -> None:
    reason = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    logger.warning(
        "checkpoint %s: the record at byte %d of %d is incomplete or corrupt%s, probably "
        "written when a run was killed; it and anything after it are skipped, the %d "
        "record(s) before it are used",
        path,
        at,
        size,
        reason,
        loaded,
    )


@hookimpl(trylast=True)
def flowkernel_checkpoint_store(config: Config, run_dir: str) -> PickleCheckpointStore:
    return PickleCheckpointStore(run_dir, trust_shared=config.trust_shared_checkpoints)
