"""How a Python call's values travel: its function and arguments from the client to a worker's
interpreter, and its result (or exception) back, also as another call's input.

A result is JSON (it is a task's result, as for every kind): the value itself when JSON says it
exactly (None, bools, ints, finite floats, strings, and lists and str-keyed dicts of them), so
``orq gather`` prints it and reading it runs no code. Any other value is a wrapper,
``{"$orq": "pickle", "data": BASE64, "repr": ...}``; an exception is ``{"$orq": "exception",
"data": BASE64 or null, "type": ..., "message": ..., "traceback": ...}``.

A wrapper is read with a restricted unpickler (:class:`SafeUnpickler`): in orq's threat model a
worker is less trusted than a client, so by default what a worker sends cannot make the client
(or another worker, which takes it as an input) run code. It loads only plain value types of the
standard library, exceptions, the classes of the reader's own ``__main__`` (a script's classes
travel by name, not by value), and the modules the reader trusts (``orq.connect(trust=[...])``);
anything else is refused with :class:`UnsafeResult` naming it. ``trust=True`` loads any pickle.
"""

from __future__ import annotations

import base64
import builtins
import io
import json
import math
import pickle
from typing import Any, Callable, Iterable, Optional, Union

try:
    import cloudpickle
except ImportError:  # only functions of importable modules can travel then
    cloudpickle = None

# The largest pickled value a call may return (common/task_spec.h: kMaxPythonValueBytes).
MAX_VALUE_BYTES = 1 << 20

_SAFE_GLOBALS = {
    "builtins": {"set", "frozenset", "complex", "bytearray", "slice", "range", "list", "dict",
                 "tuple", "int", "float", "str", "bytes", "bool", "object", "NotImplemented",
                 "Ellipsis"},
    "collections": {"OrderedDict", "deque", "Counter", "defaultdict"},
    "datetime": {"datetime", "date", "time", "timedelta", "timezone"},
    "decimal": {"Decimal"},
    "fractions": {"Fraction"},
    "uuid": {"UUID", "SafeUUID"},
    "pathlib": {"PurePosixPath", "PosixPath", "Path", "PurePath"},
    "ipaddress": {"IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network"},
    "enum": {"Enum", "IntEnum"},
    "copyreg": {"_reconstructor"},
}


class UnsafeResult(Exception):
    """A result that would load code this reader does not trust."""


class SafeUnpickler(pickle.Unpickler):
    """Loads plain values, exceptions, the reader's ``__main__`` classes and trusted modules'
    names; refuses everything else (see the module's help)."""

    def __init__(self, data: bytes, trust: Iterable[str] = (), main: Any = None,
                 inputs: Optional[Callable[[int], Any]] = None):
        super().__init__(io.BytesIO(data))
        self._trust = tuple(trust)
        self._main = main
        self._inputs = inputs

    def find_class(self, module: str, name: str) -> Any:
        if name in _SAFE_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        if any(module == t or module.startswith(t + ".") for t in self._trust):
            return super().find_class(module, name)
        if module == "builtins" and "." not in name:
            found = getattr(builtins, name, None)
            if isinstance(found, type) and issubclass(found, BaseException):
                return found
        raise UnsafeResult(f"the result refers to {module}.{name}, which this client does not "
                           f"load from a worker (trust its module: orq.connect(trust="
                           f"[{module.split('.')[0]!r}]), or trust=True for any pickle)")

    def persistent_load(self, pid: Any) -> Any:
        return _reference(pid, self._main, self._inputs)


def _reference(pid: Any, main: Any, inputs: Optional[Callable[[int], Any]]) -> Any:
    """What a persistent id names: a class of ``__main__`` (a result's), or an input (a call's
    argument that was a future)."""
    kind, arg = pid
    if kind == "main":
        return _main_class(main, arg)
    if kind == "input" and inputs is not None:
        return inputs(arg)
    raise UnsafeResult(f"the pickle holds a reference orq does not know ({kind!r})")


def _main_class(main: Any, qualname: str) -> type:
    """A class of the reader's ``__main__`` (the script, or the function's globals on a worker),
    named by a result."""
    found: Any = main
    for part in qualname.split("."):
        found = found.get(part) if isinstance(found, dict) else getattr(found, part, None)
    if not isinstance(found, type):
        raise UnsafeResult(f"the result names __main__.{qualname}, which is not a class here")
    return found


def loads(data: bytes, trust: Union[bool, Iterable[str]] = (), main: Any = None,
          inputs: Optional[Callable[[int], Any]] = None) -> Any:
    if trust is True:
        unpickler: pickle.Unpickler = _TrustingUnpickler(data, main, inputs)
    else:
        unpickler = SafeUnpickler(data, trust or (), main, inputs)
    return unpickler.load()


class _TrustingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, main: Any, inputs: Optional[Callable[[int], Any]]):
        super().__init__(io.BytesIO(data))
        self._main = main
        self._inputs = inputs

    def persistent_load(self, pid: Any) -> Any:
        return _reference(pid, self._main, self._inputs)


def call_chunk(fn: Callable[..., Any], chunk: list) -> list:
    """Executor.map's ``chunksize``: several calls in one task."""
    return [fn(*args) for args in chunk]


# --- the worker's side: a value or an exception as a result ---


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether JSON says ``value`` exactly."""
    t = type(value)
    if value is None or t is bool or t is str:
        return True
    if t is int:
        return -(2**63) <= value < 2**63
    if t is float:
        return math.isfinite(value)
    if depth > 50:
        return False
    if t is list:
        return all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


class _ResultPickler(pickle.Pickler):
    """Pickles a result; the classes of ``__main__`` go by name (the client has them)."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type) and obj.__module__ == "__main__":
            return ("main", obj.__qualname__)
        return None


def _pickle_result(value: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        _ResultPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception:
        if cloudpickle is None:
            raise
        buffer = io.BytesIO()  # a function, a lambda: by value
        pickler = cloudpickle.CloudPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.persistent_id = _ResultPickler.persistent_id.__get__(pickler)  # type: ignore
        pickler.dump(value)
    return buffer.getvalue()


def encode_value(value: Any, function: str) -> Any:
    """A return value as a result (JSON-ready). Raises ValueError with the sentence when it is
    over the size limit or does not pickle."""
    if _plain(value) and not (isinstance(value, dict) and "$orq" in value):
        return value
    try:
        data = _pickle_result(value)
    except Exception as e:
        raise ValueError(f"the value {function} returned does not pickle: {e}") from None
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError(f"the value {function} returned pickles to {len(data)} bytes; orq moves "
                         f"values up to {MAX_VALUE_BYTES} bytes (write it to a file and return "
                         "its path)")
    return {"$orq": "pickle", "data": base64.b64encode(data).decode(), "repr": _short_repr(value)}


def encode_exception(error: BaseException, traceback_text: str) -> dict:
    data: Optional[str] = None
    try:
        pickled = _pickle_result(error)
        if len(pickled) <= MAX_VALUE_BYTES:
            data = base64.b64encode(pickled).decode()
    except Exception:
        pass  # the type and message still travel
    return {"$orq": "exception", "data": data, "type": _type_name(type(error)),
            "message": str(error)[:4000], "traceback": traceback_text[-64000:]}


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= 200 else text[:197] + "..."


# --- reading a result: the client, and a worker taking another call's result as an input ---


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a call on a worker; the exception raised here has
    it as its ``__cause__`` (as ``concurrent.futures`` does)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class RemoteError(Exception):
    """An exception raised in a call whose own class could not be loaded here: its type name and
    message."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def decode(result: Union[str, bytes], trust: Union[bool, Iterable[str]] = (), main: Any = None
           ) -> tuple[bool, Any]:
    """(True, value) or (False, the exception the call raised, with its remote traceback as its
    cause) from a python task's result."""
    value = json.loads(result) if result else None
    if not (isinstance(value, dict) and "$orq" in value):
        return True, value
    kind = value["$orq"]
    if kind == "pickle":
        return True, loads(base64.b64decode(value["data"]), trust, main)
    if kind == "exception":
        error: BaseException
        try:
            loaded = loads(base64.b64decode(value["data"]), trust, main) if value.get("data") else None
        except Exception:
            loaded = None
        error = loaded if isinstance(loaded, BaseException) else RemoteError(
            value.get("type", "Exception"), value.get("message", ""))
        if value.get("traceback"):
            error.__cause__ = RemoteTraceback(value["traceback"])
        return False, error
    raise UnsafeResult(f"a result of an unknown form ({kind!r})")
