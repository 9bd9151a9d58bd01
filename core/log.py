"""Logging set-up the user asks for explicitly.

The library itself only logs through ``logging.getLogger(__name__)``; these
helpers (Parsl's names) attach a handler to the ``flowkernel`` logger, never to
the root logger.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FILE_LOG_NAME = "flowkernel.log"
DEFAULT_FORMAT = (
    "%(asctime)s.%(msecs)03d %(name)s:%(lineno)d %(processName)s(%(process)d) "
    "%(threadName)s %(funcName)s %(levelname)s: %(message)s"
)


def set_stream_logger(
    name: str = "flowkernel",
    level: int = logging.DEBUG,
    format_string: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send ``name``'s log records at ``level`` and above to a stream (stderr by default)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    return _attach(name, level, handler, format_string)


def set_file_logger(
    filename: str,
    name: str = "flowkernel",
    level: int = logging.DEBUG,
    format_string: str | None = None,
) -> logging.Handler:
    """Append ``name``'s log records at ``level`` and above to ``filename``."""
    handler = logging.FileHandler(filename, encoding="utf-8")
    return _attach(name, level, handler, format_string)


def _attach(
    name: str, level: int, handler: logging.Handler, format_string: str | None
) -> logging.Handler:
    handler.setLevel(level)
    handler.setFormatter(
        logging.Formatter(format_string or DEFAULT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    )
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    return handler


def remove_handler(handler: logging.Handler, name: str = "flowkernel") -> None:
    """Detach and close a handler made by the functions above."""
    logging.getLogger(name).removeHandler(handler)
    handler.close()
