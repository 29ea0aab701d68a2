"""``python3 -m orq.serve``: one of an orq worker's warm Python interpreters
(worker/python_pool.h). It takes calls on stdin and answers each on stdout, one at a time, every
message a frame: 4 bytes of length (big-endian), then JSON.

A call: ``{"task", "function", "fn_id", "fn", "args", "inputs", "env", "forget"}``. ``fn`` is
the function pickled (cloudpickle: by reference for a module's function, by value for a script's,
a closure, a lambda), sent with the first call of it to this interpreter only and kept by
``fn_id`` (``forget``: drop those kept first; the worker bounds them); ``args``
is ``(args, kwargs)`` pickled, where each future of another call was replaced by a reference to
``inputs[k]``, that call's result (read as the client reads results: orq/_values.py). ``env``:
the variables that differ per call (ORQ_TASK_ID, ORQ_SLOT, the resources given).

The answer: ``{"ok", "result", "stdout", "stderr", "error"}``: the return value or the exception
as a result (orq/_values.py), what the call printed (sys.stdout and sys.stderr, each up to 1
MiB), and for an exception the sentence ``ValueError: ...``. The user's main script is never run
again here: a function of it travels by value.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import struct
import sys
import traceback
from typing import Any, BinaryIO

from . import _values

_OUTPUT_LIMIT = 1 << 20


class _Capture(io.TextIOBase):
    """sys.stdout or sys.stderr during a call: kept up to the limit."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.size < _OUTPUT_LIMIT:
            keep = text[: _OUTPUT_LIMIT - self.size]
            self.parts.append(keep)
            self.size += len(keep)
        return len(text)

    def text(self) -> str:
        return "".join(self.parts)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _die_with_parent() -> None:
    """Ends this interpreter when its worker goes, even in the middle of a call (Linux)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)
    except Exception:
        pass  # elsewhere its stdin's end still ends it between calls


class _Server:
    def __init__(self) -> None:
        self.functions: dict[str, Any] = {}  # by "fn_id"; the worker bounds how many
        self.call_env: dict[str, str] = {}  # what the last call set in os.environ

    def function(self, request: dict) -> Any:
        """The call's function: sent once per interpreter ("fn"), then named by "fn_id"."""
        if request.get("forget"):
            self.functions.clear()
        if "fn" in request:
            self.functions[request["fn_id"]] = pickle.loads(base64.b64decode(request["fn"]))
        return self.functions[request["fn_id"]]

    def call(self, request: dict) -> dict:
        name = request.get("function") or "the function"
        out, err = _Capture(), _Capture()
        saved = sys.stdout, sys.stderr
        env = request.get("env", {})
        for name in self.call_env.keys() - env.keys():
            os.environ.pop(name, None)
        for name, value in env.items():
            if self.call_env.get(name) != value:
                os.environ[name] = value
        self.call_env = env
        try:
            fn = self.function(request)
            inputs = request.get("inputs", [])
            main = getattr(fn, "__globals__", None)

            def load_input(k: int) -> Any:
                ok, value = _values.decode(inputs[k], main=main)
                if not ok:
                    raise value
                return value

            args, kwargs = _values.loads(base64.b64decode(request["args"]), trust=True,
                                         main=main, inputs=load_input)
            sys.stdout, sys.stderr = out, err
            try:
                value = fn(*args, **kwargs)
            finally:
                sys.stdout, sys.stderr = saved
            result = _values.encode_value(value, name)
            return {"ok": True, "result": result, "stdout": out.text(), "stderr": err.text()}
        except BaseException as e:  # noqa: BLE001 - the caller raises it again
            sys.stdout, sys.stderr = saved
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            return {"ok": False, "result": _values.encode_exception(e, tb), "stdout": out.text(),
                    "stderr": err.text() + tb, "error": f"{type(e).__name__}: {e}"[:2000]}


def main() -> int:
    _die_with_parent()
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what writes to fd 1 directly (a child process) goes to stderr, not the frames
    server = _Server()
    while True:
        header = _read_exactly(requests, 4)
        if not header:
            return 0
        body = _read_exactly(requests, struct.unpack(">I", header)[0])
        if not body:
            return 0
        answer = json.dumps(server.call(json.loads(body))).encode()
        answers.write(struct.pack(">I", len(answer)) + answer)
        answers.flush()


if __name__ == "__main__":
    sys.exit(main())
