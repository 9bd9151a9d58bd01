"""Starting worker processes that must not re-run the user's script.

``multiprocessing`` children started with ``spawn`` or ``forkserver`` import
the parent's ``__main__`` again (so that functions defined there can be found
by name), which re-runs a workflow script that has no ``if __name__ ==
"__main__":`` guard — starting its workflow again in every worker.  Workers that
receive their tasks by value (cloudpickle) have no need for that, and the
process-pool and Dask executors start theirs inside
:func:`without_main_reimport`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from multiprocessing import spawn
from typing import Any

_spawn_lock = threading.Lock()


@contextlib.contextmanager
def without_main_reimport() -> Iterator[None]:
    """While workers start: tell them not to re-run ``__main__`` (tasks come by value)."""
    original = spawn.get_preparation_data

    def preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _spawn_lock:
        spawn.get_preparation_data = preparation_data
        try:
            yield
        finally:
            spawn.get_preparation_data = original
