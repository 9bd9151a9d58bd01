"""Files that tasks exchange: :class:`File` names one by URL or path.

A ``File`` is what an app receives and what ``outputs=[...]`` declares.  A
local file (a plain path or ``file://``) is used where it is; any other scheme
(``http://``, ``https://``, ``ftp://``, or one a plugin adds) is moved by a
staging provider, which sets :attr:`File.local_path` to where the file can be
read on this machine.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse


class File:
    """A file named by a URL or a local path; usable wherever a path is (``os.fspath``).

    It is an ``os.PathLike`` by its ``__fspath__`` method rather than by
    inheritance: subclassing that ABC would make every ``isinstance(x, File)``
    go through ``ABCMeta.__instancecheck__``, ten times slower, and the kernel
    asks it about every argument of every task.
    """

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.url = os.fspath(url)
        parsed = urlparse(self.url)
        # "C:\\x" would parse as scheme "c"; one letter is a drive, not a scheme.
        if len(parsed.scheme) > 1:
            self.scheme = parsed.scheme
            self.netloc = parsed.netloc
            self.path = parsed.path
        else:
            self.scheme = "file"
            self.netloc = ""
            self.path = self.url
        self.filename = os.path.basename(self.path)
        self.local_path: str | None = None

    @property
    def filepath(self) -> str:
        """Where to read or write the file here: the staged copy, or the path of a local file."""
        if self.local_path is not None:
            return self.local_path
        if self.scheme == "file":
            return self.path
        raise ValueError(
            f"{self.url} has no local copy yet (scheme {self.scheme!r}); it is staged in "
            "when it is an input of an app"
        )

    def cleancopy(self) -> File:
        """The same URL without any staging state, for staging code to fill in."""
        return File(self.url)

    def __fspath__(self) -> str:
        return self.filepath

    def __str__(self) -> str:
        return self.filepath

    def __repr__(self) -> str:
        extra = f" local_path={self.local_path!r}" if self.local_path is not None else ""
        return f"<File {self.url!r}{extra}>"
