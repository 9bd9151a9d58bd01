"""Default memo hashing: a task's key is its function's code plus its arguments' identities.

The key must not change between runs (checkpoints are looked up by it) and
must change when the app's body does (or a stale result would come back), so
the function is identified by its bytecode, constants, names and defaults —
not by ``id()``, not by line numbers, and never by ``hash()``, which Python
salts per process for strings.  Unordered things (dict keys, sets) are put in
a canonical order first.
"""

from __future__ import annotations

import hashlib
import os
import types
import weakref
from collections.abc import Callable
from typing import Any

from flowkernel.files import File
from flowkernel.markers import hookimpl
from flowkernel.streams import AUTO_LOGNAME
from flowkernel.task import TaskRecord

_SCALARS = (type(None), bool, int, float, complex)


def _frame(tag: bytes, *parts: bytes) -> bytes:
    """Length-prefix each part, so no two different sequences give the same bytes."""
    return tag + b"".join(len(part).to_bytes(8, "big") + part for part in parts)


def _code_identity(code: types.CodeType) -> bytes:
    consts = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            consts.append(_code_identity(const))
        elif isinstance(const, frozenset):
            consts.append(_frame(b"fs", *sorted(repr(c).encode() for c in const)))
        else:
            consts.append(repr(const).encode())
    return _frame(
        b"code",
        code.co_code,
        _frame(b"consts", *consts),
        repr(code.co_names).encode(),
        repr(code.co_varnames).encode(),
        repr(code.co_freevars).encode(),
        repr((code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode(),
    )


def function_identity(func: Any, identify: Callable[[object], bytes]) -> bytes:
    """Module, qualified name, code and defaults of a function (or what stands for one)."""
    name = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}".encode()
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        return _frame(b"callable", name)
    defaults = identify(func.__defaults__ or ())
    kwdefaults = identify(func.__kwdefaults__ or {})
    return _frame(b"function", name, _code_identity(code), defaults, kwdefaults)


@hookimpl(trylast=True)
def flowkernel_id_for_memo(value: object, identify: Callable[[object], bytes]) -> bytes | None:
    if isinstance(value, _SCALARS):
        return _frame(type(value).__name__.encode(), repr(value).encode())
    if isinstance(value, str):
        return _frame(b"str", value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray)):
        return _frame(type(value).__name__.encode(), bytes(value))
    if isinstance(value, (list, tuple)):
        return _frame(type(value).__name__.encode(), *(identify(item) for item in value))
    if isinstance(value, dict):
        pairs = sorted(_frame(b"kv", identify(k), identify(v)) for k, v in value.items())
        return _frame(b"dict", *pairs)
    if isinstance(value, (set, frozenset)):
        return _frame(type(value).__name__.encode(), *sorted(identify(item) for item in value))
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return function_identity(value, identify)
    if value is AUTO_LOGNAME:  # appears among app defaults: stdout=AUTO_LOGNAME
        return b"AUTO_LOGNAME"
    if isinstance(value, File):
        return _frame(b"File", value.url.encode("utf-8", "surrogatepass"))
    if isinstance(value, os.PathLike):
        return _frame(type(value).__name__.encode(), os.fsencode(value))
    return None


# An app's function is identified once per code object, not once per task.
_function_ids: weakref.WeakKeyDictionary[Any, tuple[Any, bytes]] = weakref.WeakKeyDictionary()


def _cached_function_identity(func: Any, identify: Callable[[object], bytes]) -> bytes:
    code = getattr(func, "__code__", None)
    try:
        cached = _function_ids.get(func)
    except TypeError:  # not weak-referenceable
        return function_identity(func, identify)
    if cached is not None and cached[0] is code:
        return cached[1]
    identity = function_identity(func, identify)
    _function_ids[func] = (code, identity)
    return identity


@hookimpl(trylast=True)
def flowkernel_memo_key(task: TaskRecord) -> str:
    identify = task.kernel.plugins.id_for_memo
    digest = hashlib.sha256(_cached_function_identity(task.func, identify))
    for position, arg in enumerate(task.args):
        digest.update(_frame(b"arg", str(position).encode(), identify(arg)))
    ignored = task.ignore_for_cache
    for name in sorted(task.kwargs):
        if name not in ignored:
            digest.update(_frame(b"kw", name.encode(), identify(task.kwargs[name])))
    return digest.hexdigest()
