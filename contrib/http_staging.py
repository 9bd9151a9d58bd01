"""Stage-in over ``http://``, ``https://`` and ``ftp://``: download before the task runs.

Each remote input becomes a staging task on the kernel's staging executor that
downloads the file into the working directory (or ``directory=`` given to
:class:`HTTPStaging`) and sets the file's ``local_path``; the app runs after
it, with the local copy.  A failed download (an HTTP error status, a refused
connection, a timeout) fails the staging task with a
:class:`~flowkernel.errors.StagingError` naming the URL and the reason, and the
app with a ``DependencyError`` whose cause is that error.

Only the standard library is used (``urllib``), so this plugin needs no extra;
nothing is fetched unless a task names a remote file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from flowkernel.errors import StagingError
from flowkernel.files import File
from flowkernel.markers import hookimpl
from flowkernel.staging import StagingProvider

TIMEOUT = 60.0
"""Seconds to wait for a server to answer before the staging task fails."""


class HTTPStaging(StagingProvider):
    """Download remote inputs as separate staging tasks."""

    schemes = ("http", "https", "ftp")

    def __init__(self, directory: str | None = None, timeout: float = TIMEOUT) -> None:
        self.directory = directory
        self.timeout = timeout

    def stage_in(self, file: File) -> Callable[[File], Any]:
        return self.download

    def download(self, file: File) -> None:
        folder = self.directory or os.getcwd()
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, file.filename or "download")
        try:
            with urllib.request.urlopen(file.url, timeout=self.timeout) as response:
                # Write beside the target, then rename: a reader never sees half a file.
                fd, partial = tempfile.mkstemp(dir=folder, prefix=".staging-")
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(response, out)
            os.replace(partial, target)
        except urllib.error.HTTPError as exc:
            raise StagingError(
                f"stage-in of {file.url} failed: HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            raise StagingError(f"stage-in of {file.url} failed: {exc.reason}") from exc
        except OSError as exc:
            raise StagingError(
                f"stage-in of {file.url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        file.local_path = target


@hookimpl(trylast=True)
def flowkernel_staging_providers() -> list[StagingProvider]:
    return [HTTPStaging()]
