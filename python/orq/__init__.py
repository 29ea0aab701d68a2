"""orq from Python: ``asyncio.gather`` for tasks that run on an orq cluster.

Start a broker and workers first (``orq up``, or ``orq up`` on another host and an access file
here). Then, in a coroutine::

    import asyncio, orq

    async def main():
        async with orq.connect() as c:
            hello, world = await asyncio.gather(c.sleep(1, "hello"), c.sleep(2, "world"))
            out = await c.shell(["uname", "-a"])
            square = await c.call(pow, 7, 2)           # a Python function, on a worker

    asyncio.run(main())

Each of ``c.shell``, ``c.sleep``, ``c.echo``, ``c.cpu`` and ``c.call`` submits one orq task and
returns a real :class:`asyncio.Future` for its result, so ``asyncio.gather``,
``asyncio.as_completed``, ``asyncio.wait(..., return_when=FIRST_COMPLETED)``,
``asyncio.wait_for`` and ``Task.cancel()`` work as on local coroutines; cancelling the future
cancels the orq task. Tasks created in one turn of the event loop go to the broker as one job.

A task that fails raises :class:`TaskFailed` (its exit code, the tail of its stderr, its
attempts); one that ran out of time :class:`TaskTimeout`.

Where a ``concurrent.futures`` executor is wanted, :class:`Executor` is one (``submit``,
``map``, ``shutdown``), usable where a ``ProcessPoolExecutor`` is.

``c.call(fn, *args)`` and the Executor run Python functions on the workers' warm interpreters (a
call costs a round trip, not an interpreter's start). Functions travel with cloudpickle: a
module's function by reference (its module must be importable where the worker runs: the job's
directory and ``sys.path`` travel with it), a script's function, a closure or a lambda by value.
A call's exception is raised here with the remote traceback as its ``__cause__``. Results come
back as JSON when JSON says them exactly, else pickled; a client loads a pickled result only
with a restricted unpickler (plain values, exceptions, its own ``__main__`` classes, and the
modules named in ``connect(trust=[...])``), so a worker cannot make it run code.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import collections
import concurrent.futures
import io
import itertools
import json
import os
import pickle
import sys
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from . import _orq, _values
from ._values import RemoteError, RemoteTraceback, UnsafeResult

__all__ = [
    "connect",
    "Client",
    "Executor",
    "Options",
    "OrqError",
    "UsageError",
    "Unreachable",
    "Refused",
    "DiskFull",
    "Timeout",
    "TaskFailed",
    "TaskTimeout",
    "TaskCancelled",
    "RemoteError",
    "RemoteTraceback",
    "UnsafeResult",
    "progress",
    "task_id",
    "version",
]


def version() -> str:
    """The client library's version and API version, e.g. ``"0.1.0 (api 3)"``."""
    return _orq.version()


# --- errors -------------------------------------------------------------------------------------


class OrqError(Exception):
    """Base of orq's errors. ``exit_code`` is the one the ``orq`` command ends with for it."""

    exit_code = 5


class UsageError(OrqError):
    """A mistake the caller can fix: a bad task, an unknown id, a closed client."""

    exit_code = 2


class Unreachable(OrqError):
    """No broker answers: none runs, it stopped answering, or the client was closed."""

    exit_code = 3


class Refused(OrqError):
    """The broker refused this client's key (revoked, or never added)."""

    exit_code = 4


class DiskFull(OrqError):
    """The broker's journal disk is full: the job was not accepted."""

    exit_code = 6


class Timeout(OrqError):
    """A wait's deadline passed."""

    exit_code = 124


# The native module's error codes (orq::Errc, include/orq/errors.h) to the classes above.
_BY_CODE = {1: UsageError, 2: Unreachable, 3: Refused, 5: DiskFull, 6: Timeout}


class TaskFailed(OrqError):
    """A task that did not end ok.

    Attributes: ``task_id`` ("j7.2"), ``status`` ("failed", "worker_lost", ...), ``exit_code``
    (a shell task's, or None), ``stderr`` (the tail of its stderr), ``attempts``, ``error`` (orq's
    sentence).
    """

    def __init__(self, task_id: str, status: str, exit_code: Optional[int], stderr: str,
                 attempts: int, error: str):
        self.task_id = task_id
        self.status = status
        self.exit_code = exit_code  # type: ignore[assignment]
        self.stderr = stderr
        self.attempts = attempts
        self.error = error
        tail = f"; stderr: {stderr.strip()[-300:]}" if stderr.strip() else ""
        super().__init__(f"task {task_id} {status}: {error or 'failed'}"
                         f" (attempt {attempts}{'' if exit_code is None else f', exit code {exit_code}'})"
                         f"{tail}")


class TaskTimeout(TaskFailed):
    """A task stopped by its timeout."""


class TaskCancelled(TaskFailed):
    """A task cancelled elsewhere (``orq cancel``, a halt), not through its future."""


def _native_error(error: Exception) -> OrqError:
    cls = _BY_CODE.get(getattr(error, "code", 0), OrqError)
    return cls(str(error))


# --- outcomes -----------------------------------------------------------------------------------

_STDERR_TAIL = 4096


def _decode_json(result: bytes, stdout: bytes) -> Any:
    return json.loads(result) if result else None


def _decode_stdout(result: bytes, stdout: bytes) -> str:
    return stdout.decode(errors="replace")


class _DecodeCall:
    """A python task's result: its value, or the exception its call raised (raised here). Also
    read for a failed call (``raised``): its result is the exception."""

    raised = True

    def __init__(self, trust: Union[bool, Sequence[str]]):
        self.trust = trust

    def __call__(self, result: bytes, stdout: bytes) -> Any:
        ok, value = _values.decode(result, self.trust, sys.modules.get("__main__"))
        if ok:
            return value
        raise value


def _settle(item: tuple, decode: Callable[[bytes, bytes], Any]) -> tuple[bool, Any]:
    """(True, value) or (False, exception) for one outcome from the native client."""
    _, _, status, task_id, result, code, stdout, stderr, error, attempt = item
    if status == "error":  # there will be no outcome: attempt holds the error code (orq::Errc)
        cls = _BY_CODE.get(attempt, OrqError)
        return False, cls(error)
    if status == "ok":
        try:
            return True, decode(result, stdout)
        except Exception as e:  # a function's exception (call), or output that is not a result
            return False, e
    if status == "failed" and result and getattr(decode, "raised", False):
        try:
            decode(result, stdout)
        except Exception as e:  # the call's own exception, with its remote traceback
            return False, e
    tail = stderr[-_STDERR_TAIL:].decode(errors="replace")
    cls = {"timeout": TaskTimeout, "cancelled": TaskCancelled}.get(status, TaskFailed)
    return False, cls(task_id, status, code, tail, attempt, error)


# --- the client ---------------------------------------------------------------------------------


class Client:
    """A connection to an orq broker; see :func:`connect`.

    Its coroutine-side methods (``shell``, ``sleep``, ``echo``, ``cpu``, ``call``) must be called
    from a running event loop; :meth:`submit` and :meth:`map` return ``concurrent.futures``
    futures and may be called from any thread. Thread-safe.
    """

    def __init__(self, access: Optional[str] = None, endpoint: Optional[str] = None,
                 home: Optional[str] = None, trust: Union[bool, Sequence[str]] = ()):
        self._decode_call = _DecodeCall(trust if trust is True else tuple(trust or ()))
        self._functions: dict = {}  # id(fn) -> (fn, pickled): this loop turn's or map's
        try:
            self._native = _orq.NativeClient(access or "", endpoint or "", home or "")
        except _orq.NativeError as e:
            raise _native_error(e) from None
        self._lock = threading.Lock()
        self._batches = itertools.count(1)
        # batch -> [(future, decode, loop or None)], until each of its outcomes was taken
        self._pending: dict[int, list] = {}
        self._left: dict[int, int] = {}
        self._queue: list = []  # (task json, asyncio future, decode) of this loop turn
        self._flush_due = False
        self._closed = False
        self._reader: Optional[asyncio.AbstractEventLoop] = None  # the loop reading outcomes
        self._thread = threading.Thread(target=self._dispatch, name="orq-client", daemon=True)
        self._thread.start()
        _open_clients.add(self)

    # -- context managers

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        # One turn of the loop first: a future cancelled just before (its done callback is due
        # in this turn) still cancels its task.
        await asyncio.sleep(0)
        self.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection. Futures still waiting fail with :class:`Unreachable`; their
        tasks go on (``orq cancel`` them, or cancel the futures first)."""
        if self._closed:
            return
        self._closed = True
        self._flush()
        self._disarm()
        self._native.close()
        self._thread.join(timeout=30)

    # -- asyncio

    def shell(self, argv: Sequence[str] | str, **options: Any) -> "asyncio.Future[str]":
        """Runs a command (a list: argv; a string: a ``/bin/sh -c`` line) on a worker; its
        stdout. ``options`` are task-file fields: ``timeout=5``, ``retries=2``, ``queue="gpu"``."""
        spec = {"kind": "shell", "cmd": argv} if isinstance(argv, str) else {
            "kind": "shell", "argv": list(argv)}
        return self._async(spec, options, _decode_stdout)

    def sleep(self, seconds: float, result: Any = None, **options: Any) -> "asyncio.Future[Any]":
        """A timer on a worker's loop: ``result`` (any JSON value) after ``seconds``; without a
        result, the seconds."""
        spec: dict = {"kind": "sleep", "seconds": seconds}
        if result is not None:
            spec["result"] = result
        return self._async(spec, options, _decode_json)

    def echo(self, value: Any, **options: Any) -> "asyncio.Future[Any]":
        """A task done at once on a worker: ``value`` (any JSON value) back."""
        return self._async({"kind": "echo", "value": value}, options, _decode_json)

    def cpu(self, ms: float, **options: Any) -> "asyncio.Future[float]":
        """``ms`` milliseconds of busy work on a worker's thread pool."""
        return self._async({"kind": "cpu", "ms": ms}, options, _decode_json)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        """Runs ``fn(*args, **kwargs)`` on a worker's warm interpreter; its return value, or its
        exception raised here (the remote traceback as its ``__cause__``). See the module's
        help for how functions and values travel."""
        return self._async(self._call_spec(fn, args, kwargs), {}, self._decode_call)

    def options(self, **options: Any) -> "Options":
        """The same client with task options for what is submitted through it, kept apart from
        the function's own keyword arguments: ``c.options(retries=2, timeout=60,
        resources={"gpu": 1}, queue="gpu").call(f, x)``. The options are task-file fields
        (docs/COORDINATION.md): ``timeout``, ``retries``, ``retry_backoff``, ``delay``,
        ``priority``, ``attempts``, ``queue``, ``cpus``, ``resources``, ``limits``, ``locks``,
        ``time_request``."""
        return Options(self, _checked_options(options))

    def _async(self, spec: dict, options: dict, decode: Callable) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        if self._reader is not loop:
            self._arm(loop)
        spec.update(options)
        future = _Future(loop=loop)
        future._orq_client = self
        after = spec.pop("$after", ())
        with self._lock:
            if self._closed:
                raise UsageError("this orq client is closed")
            self._queue.append((json.dumps(spec), future, decode, after))
            flush = not self._flush_due
            self._flush_due = True
        if flush:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Submits what this loop turn asked for, as one job."""
        with self._lock:
            queue, self._queue = self._queue, []
            self._flush_due = False
            self._functions.clear()
        if not queue:
            return
        entries = [(f, decode, f.get_loop()) for _, f, decode, _ in queue]
        try:
            batch = self._start([t for t, _, _, _ in queue], entries, [a for _, _, _, a in queue])
        except OrqError as e:
            for f, _, _ in entries:
                if not f.done():
                    f.set_exception(e)
            return
        for index, (f, _, _) in enumerate(entries):
            if f.cancelled():  # before its job went
                self._cancel(batch, index)

    def _start(self, tasks: list[str], entries: list, afters: Sequence = ()) -> int:
        batch = next(self._batches)
        with self._lock:  # held until it went: a batch named in `after` is not released meanwhile
            self._pending[batch] = entries
            self._left[batch] = len(entries)
            try:
                after = self._after_refs(entries, afters) if any(afters) else []
                self._native.start(batch, tasks, os.getcwd(), _job_env(), after)
            except _orq.NativeError as e:
                del self._pending[batch], self._left[batch]
                raise _native_error(e) from None
            except OrqError:
                del self._pending[batch], self._left[batch]
                raise
            for index, (f, _, _) in enumerate(entries):
                f._orq = (self, batch, index)
        return batch

    @staticmethod
    def _after_refs(entries: list, afters: Sequence) -> list:
        """What each task runs after, as the native client names it: "#3" (a task of this job),
        "j4.2" (a task whose id came), "b7:2" (task 2 of batch 7, still held)."""
        here = {id(f): i for i, (f, _, _) in enumerate(entries)}

        def ref(future: Any) -> str:
            if id(future) in here:
                return f"#{here[id(future)]}"
            known = getattr(future, "_orq_id", None)
            if known:
                return known
            started = getattr(future, "_orq", None)
            if started is not None:
                return f"b{started[1]}:{started[2]}"
            raise UsageError("a future passed as an argument never became a task (its job was "
                             "refused)")

        return [[ref(f) for f in after] for after in afters]

    def _cancel(self, batch: int, index: int) -> None:
        if not self._closed:
            self._native.cancel(batch, index)

    # -- concurrent.futures

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """``fn(*args, **kwargs)`` on a worker, as a ``concurrent.futures.Future``."""
        return self._sync([self._call_spec(fn, args, kwargs)])[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None) -> Iterator[Any]:
        """As ``Executor.map``: all calls go as one job; results in order."""
        try:
            futures = self._sync([self._call_spec(fn, args, {}) for args in zip(*iterables)])
        finally:
            with self._lock:
                self._functions.clear()
        return _results_in_order(futures, timeout)

    def _sync(self, specs: list[dict]) -> list[concurrent.futures.Future]:
        if self._closed:
            raise UsageError("this orq client is closed")
        reader = self._reader
        if reader is not None and (reader.is_closed() or not reader.is_running()):
            self._disarm()  # nobody would read these outcomes soon
        futures = [concurrent.futures.Future() for _ in specs]
        for f in futures:
            f._orq_client = self  # type: ignore[attr-defined]
        entries = [(f, self._decode_call, None) for f in futures]
        afters = [s.pop("$after", ()) for s in specs]
        batch = self._start([json.dumps(s) for s in specs], entries, afters)
        for index, f in enumerate(futures):
            f.add_done_callback(lambda f, i=index: f.cancelled() and self._cancel(batch, i))
        return futures

    def _call_spec(self, fn: Callable, args: tuple, kwargs: dict) -> dict:
        """A python task's spec. The function is pickled once per loop turn (or map): the same
        bytes for each of its calls, so an interpreter unpickles it once."""
        if not callable(fn):
            raise UsageError(f"{fn!r} is not callable")
        with self._lock:
            known = self._functions.get(id(fn))
        if known is None or known[0] is not fn:
            known = (fn, base64.b64encode(_dumps(fn, fn)).decode())
            with self._lock:
                self._functions[id(fn)] = known
        after: list = []
        spec = {"kind": "python", "fn": known[1],
                "args": base64.b64encode(_dumps_args((args, kwargs), fn, self, after)).decode(),
                "function": _qualified_name(fn), "python": sys.executable}
        if after:
            spec["$after"] = after
        return spec

    # -- the broker

    def status(self, timeout: float = 30) -> dict:
        """The broker's state, as ``orq status --json`` prints it."""
        return json.loads(self._native_call(self._native.status_json, timeout))

    def ping(self, timeout: float = 5) -> int:
        """The broker's pid (it answers)."""
        return self._native_call(self._native.ping, timeout)

    def explain(self, task: Any, timeout: float = 30) -> dict:
        """Why a task is where it is, as ``orq explain --json`` says it: ``{"task", "state",
        "reasons": [...]}``. ``task``: a future of this client's, or a task's id ("j7.2")."""
        name = task if isinstance(task, str) else task_id(task, timeout)
        return json.loads(self._native_call(self._native.explain_json, name, timeout))

    def _task_id(self, future: Any, timeout: float) -> str:
        if getattr(future, "_orq", None) is None and isinstance(future, asyncio.Future):
            self._flush()  # made in this loop turn: its job goes now
        with self._lock:  # (its batch is not released meanwhile)
            if getattr(future, "_orq_id", None):
                return future._orq_id
            started = getattr(future, "_orq", None)
            if started is None:
                raise UsageError("this future's job was refused: it has no task")
            return self._native_call(self._native.task_id, started[1], started[2], timeout)

    def cancel(self, *ids: str, timeout: float = 30) -> int:
        """Cancels jobs and tasks by id ("j7", "j7.2"), as ``orq cancel``; how many."""
        return self._native_call(self._native.cancel_ids, list(ids), timeout)

    @staticmethod
    def _native_call(f: Callable, *args: Any) -> Any:
        try:
            return f(*args)
        except _orq.NativeError as e:
            raise _native_error(e) from None

    # -- outcomes to futures: read by an asyncio loop, else by the client's thread

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Lets `loop` read the outcomes as they come (an eventfd it watches), unless another
        running loop does: its own futures are then resolved without a thread hop."""
        with self._lock:
            reader = self._reader
            if reader is loop or (reader is not None and not reader.is_closed() and
                                  reader.is_running()):
                return
            self._reader = loop
        loop.add_reader(self._native.arm(True), self._take_now, loop)

    def _disarm(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is None:
            return
        fd = self._native.arm(False)
        if reader.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is reader:
            reader.remove_reader(fd)
        else:
            try:
                reader.call_soon_threadsafe(reader.remove_reader, fd)
            except RuntimeError:  # closed meanwhile
                pass

    def _take_now(self, loop: asyncio.AbstractEventLoop) -> None:
        self._route(self._native.take_now(), loop)

    def _dispatch(self) -> None:
        while True:
            items = self._native.take(0.5)
            if items is None:
                return
            self._route(items, None)

    def _route(self, items: list, here: Optional[asyncio.AbstractEventLoop]) -> None:
        """Resolves each outcome's future: at once when it belongs to `here` (the loop running
        this) or to no loop, else in its own loop's thread."""
        by_loop: dict = {}
        with self._lock:
            for item in items:
                batch, index = item[0], item[1]
                entries = self._pending.get(batch)
                if entries is None:  # (cannot happen: each outcome comes once)
                    continue
                if item[3]:
                    entries[index][0]._orq_id = item[3]
                self._left[batch] -= 1
                if self._left[batch] == 0:
                    del self._pending[batch], self._left[batch]
                    self._native.release(batch)
                by_loop.setdefault(entries[index][2], []).append((entries[index], item))
        for loop, done in by_loop.items():
            if loop is None or loop is here:
                _resolve(done)
            else:
                try:
                    loop.call_soon_threadsafe(_resolve, done)
                except RuntimeError:  # its loop is closed: nobody waits for these
                    pass


_OPTIONS = {"timeout", "retries", "retry_backoff", "delay", "priority", "attempts", "queue",
            "cpus", "resources", "limits", "locks", "time_request"}


def _checked_options(options: dict) -> dict:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise UsageError(f"unknown task option {unknown[0]!r}; the options are "
                         f"{', '.join(sorted(_OPTIONS))}")
    return options


class Options:
    """A :class:`Client` with task options (:meth:`Client.options`): its ``call``, ``submit``,
    ``map``, ``shell``, ``sleep``, ``echo`` and ``cpu`` submit with them."""

    def __init__(self, client: Client, options: dict):
        self._client = client
        self._options = options

    def options(self, **options: Any) -> "Options":
        return Options(self._client, {**self._options, **_checked_options(options)})

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        c = self._client
        return c._async(c._call_spec(fn, args, kwargs), dict(self._options), c._decode_call)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        c = self._client
        return c._sync([{**c._call_spec(fn, args, kwargs), **self._options}])[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None) -> Iterator[Any]:
        c = self._client
        specs = [{**c._call_spec(fn, args, {}), **self._options} for args in zip(*iterables)]
        return _results_in_order(c._sync(specs), timeout)

    def shell(self, argv: Sequence[str] | str) -> "asyncio.Future[str]":
        return self._client.shell(argv, **self._options)

    def sleep(self, seconds: float, result: Any = None) -> "asyncio.Future[Any]":
        return self._client.sleep(seconds, result, **self._options)

    def echo(self, value: Any) -> "asyncio.Future[Any]":
        return self._client.echo(value, **self._options)

    def cpu(self, ms: float) -> "asyncio.Future[float]":
        return self._client.cpu(ms, **self._options)


class _Future(asyncio.Future):
    """An asyncio.Future whose cancel() also cancels its orq task (at once: no done callback
    per future, which would cost a loop callback each in a gather of thousands)."""

    _orq: Optional[tuple] = None  # (client, batch, index) once its job went to the broker
    _orq_id: Optional[str] = None  # its task's id, once its outcome came
    _orq_client: Optional["Client"] = None

    def cancel(self, msg: Any = None) -> bool:
        cancelled = super().cancel(msg)
        if cancelled and self._orq is not None:
            client, batch, index = self._orq
            client._cancel(batch, index)
        return cancelled


# Clients still open when the interpreter exits are closed first, so that no client thread
# outlives the objects it uses.
_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_open_clients):
        client.close()


def _resolve(done: list) -> None:
    for (future, decode, _), item in done:
        if future.done():  # cancelled meanwhile
            continue
        ok, value = _settle(item, decode)
        if isinstance(future, concurrent.futures.Future):
            if not future.set_running_or_notify_cancel():
                continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _results_in_order(futures: list, timeout: Optional[float]) -> Iterator[Any]:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for f in futures:
            yield f.result(None if deadline is None else max(0, deadline - time.monotonic()))
    finally:
        for f in futures:
            f.cancel()


def _job_env() -> list[str]:
    """What a job's tasks get on top of the submitter's environment, and carry to remote
    workers: this interpreter's import path, so ``python3 -m orq.serve`` finds orq and the
    caller's modules."""
    paths = [p if p else os.getcwd() for p in sys.path]
    return ["PYTHONPATH=" + os.pathsep.join(paths)]


def task_id(future: Any, timeout: float = 30) -> str:
    """The id ("j7.2") of the orq task behind a future that ``c.call``, ``c.shell``... or
    ``submit`` returned: for ``orq logs``, ``orq explain``, ``orq cancel``, the dashboard and
    :meth:`Client.explain`. Waits up to ``timeout`` seconds for the broker to accept its job."""
    future = getattr(future, "_orq_inner", future)  # an Executor's call that waited for room
    known = getattr(future, "_orq_id", None)
    if known:
        return known
    client = getattr(future, "_orq_client", None)
    if client is None:
        raise UsageError(f"{future!r} is not a future of an orq task")
    return client._task_id(future, timeout)


def _qualified_name(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module != "builtins" else name


class _ArgsPickler(_values.cloudpickle.CloudPickler if _values.cloudpickle else pickle.Pickler):
    """Pickles a call's arguments; each future of the same client becomes a reference to an
    input, the task runs after its task and the worker puts its value there."""

    def __init__(self, buffer: io.BytesIO, client: "Client", after: list):
        super().__init__(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.client = client
        self.after = after

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, (asyncio.Future, concurrent.futures.Future)):
            return None
        if getattr(obj, "_orq_client", None) is not self.client:
            raise UsageError("a future that is not of this orq client's tasks cannot be an "
                             "argument (await it first, and pass its value)")
        for k, known in enumerate(self.after):
            if known is obj:
                return ("input", k)
        self.after.append(obj)
        return ("input", len(self.after) - 1)


def _dumps_args(value: Any, fn: Callable, client: "Client", after: list) -> bytes:
    buffer = io.BytesIO()
    try:
        _ArgsPickler(buffer, client, after).dump(value)
    except OrqError:
        raise
    except Exception as e:
        hint = "" if _values.cloudpickle is not None else " (install python3-cloudpickle)"
        raise UsageError(f"the arguments of {_qualified_name(fn)} cannot be sent to a worker: "
                         f"{e}{hint}") from None
    return buffer.getvalue()


def _dumps(value: Any, fn: Callable) -> bytes:
    """cloudpickle (a script's functions and classes, closures, lambdas by value), else pickle."""
    try:
        if _values.cloudpickle is not None:
            return _values.cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if value is fn and getattr(fn, "__module__", None) == "__main__":
            raise pickle.PicklingError("a function of the main script travels by value only")
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        what = "the function" if value is fn else "the arguments of"
        hint = "" if _values.cloudpickle is not None else (
            " (install python3-cloudpickle to send a script's functions, closures and lambdas)")
        raise UsageError(f"{what} {_qualified_name(fn)} cannot be sent to a worker: {e}{hint}"
                         ) from None


def connect(access: Optional[str] = None, endpoint: Optional[str] = None,
            home: Optional[str] = None, trust: Union[bool, Sequence[str]] = ()) -> Client:
    """A client of an orq broker: the one an access file names (``orq access add --client``;
    over TCP with CURVE), the one on an ``ipc://`` endpoint, or the one ``orq up`` runs in
    ``home``. With none of them, as the ``orq`` command finds its broker: ``$ORQ_ACCESS``,
    ``$ORQ_ENDPOINT``, else ``$ORQ_HOME`` (default ``~/.orq``).

    ``trust``: the modules whose classes a call's pickled result may load here (``["numpy"]``),
    or True for any pickle (as ``ProcessPoolExecutor`` does: only with workers you trust).

    Use it as ``async with orq.connect() as c:`` (or ``with``); :meth:`Client.close` otherwise.
    """
    return Client(access=access, endpoint=endpoint, home=home, trust=trust)


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures`` executor whose calls run on orq workers; usable where a
    ``ProcessPoolExecutor`` is (``submit``, ``map`` with ``chunksize``, ``shutdown``, ``with``).

    ``client``: a :class:`Client` to use (left open at shutdown); else it connects as
    :func:`connect` does with ``access``, ``endpoint``, ``home`` and ``trust``. ``max_workers``:
    at most this many of its calls in flight at once (the rest wait here, in order); None: as
    many as the cluster's workers take.

    Leaving its ``with`` block by an exception (Ctrl-C's ``KeyboardInterrupt`` too) cancels its
    calls that have not ended, on the workers as well; so does ``shutdown(cancel_futures=True)``,
    and a program that ends by Ctrl-C with an executor open.
    """

    def __init__(self, max_workers: Optional[int] = None, *, client: Optional[Client] = None,
                 access: Optional[str] = None, endpoint: Optional[str] = None,
                 home: Optional[str] = None, trust: Union[bool, Sequence[str]] = ()):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._max = max_workers
        self._own = client is None
        self._client = client or connect(access=access, endpoint=endpoint, home=home,
                                         trust=trust)
        self._lock = threading.RLock()  # (a call that ends at once ends under it)
        self._futures: set = set()  # submitted to orq, not done
        self._waiting: "collections.deque[tuple]" = collections.deque()  # (future, spec)
        self._shutdown = False
        _open_executors.add(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        self._check_open()
        return self._go([self._client._call_spec(fn, args, kwargs)])[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: Optional[float] = None,
            chunksize: int = 1) -> Iterator[Any]:
        """As ``ProcessPoolExecutor.map``: every call submitted at once (``chunksize`` calls of
        ``fn`` to a task), the results in order; leaving the iterator early cancels the rest."""
        self._check_open()
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        calls = list(zip(*iterables))
        c = self._client
        try:
            if chunksize == 1:
                return _results_in_order(self._go([c._call_spec(fn, a, {}) for a in calls]),
                                         timeout)
            specs = []
            for start in range(0, len(calls), chunksize):
                chunk = calls[start:start + chunksize]
                spec = c._call_spec(_values.call_chunk, (fn, chunk), {})
                spec["function"] = f"{_qualified_name(fn)} x{len(chunk)}"
                specs.append(spec)
            return itertools.chain.from_iterable(_results_in_order(self._go(specs), timeout))
        finally:
            with c._lock:
                c._functions.clear()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            waiting = [f for f, _ in self._waiting] if cancel_futures else []
            if cancel_futures:
                self._waiting.clear()
            running = list(self._futures)
        if cancel_futures:
            for f in waiting + running:
                f.cancel()
        if wait:
            while True:
                with self._lock:
                    left = list(self._futures) + [f for f, _ in self._waiting]
                if not left:
                    break
                concurrent.futures.wait(left)
        if self._own:
            self._client.close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.shutdown(wait=True)
        else:  # an error, or Ctrl-C: nobody will wait for these
            self.shutdown(wait=False, cancel_futures=True)
        return False

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _go(self, specs: list[dict]) -> list[concurrent.futures.Future]:
        """Submits what max_workers lets go now; the rest wait for a call to end."""
        with self._lock:
            room = len(specs) if self._max is None else max(0, self._max - len(self._futures))
            later = [concurrent.futures.Future() for _ in specs[room:]]
            for f, spec in zip(later, specs[room:]):
                f._orq_client = self._client  # type: ignore[attr-defined]
                f.add_done_callback(self._cancel_waiting)
                self._waiting.append((f, spec))
            now = self._client._sync(specs[:room]) if room else []
            self._futures.update(now)
        for f in now:
            f.add_done_callback(self._ended)
        return now + later

    def _ended(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._futures.discard(future)
            while self._waiting and (self._max is None or len(self._futures) < self._max):
                outer, spec = self._waiting.popleft()
                if outer.done():  # cancelled while it waited
                    continue
                try:
                    inner = self._client._sync([spec])[0]
                except OrqError as e:
                    if outer.set_running_or_notify_cancel():
                        outer.set_exception(e)
                    continue
                outer._orq_inner = inner  # type: ignore[attr-defined]
                self._futures.add(inner)
                inner.add_done_callback(self._ended)
                inner.add_done_callback(lambda i, o=outer: _copy_outcome(i, o))

    def _cancel_waiting(self, outer: concurrent.futures.Future) -> None:
        inner = getattr(outer, "_orq_inner", None)
        if outer.cancelled() and inner is not None:
            inner.cancel()


def _copy_outcome(inner: concurrent.futures.Future, outer: concurrent.futures.Future) -> None:
    if inner.cancelled():
        outer.cancel()
    elif outer.set_running_or_notify_cancel():
        if inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())


def progress(futures: Iterable[concurrent.futures.Future], file: Any = None,
             timeout: Optional[float] = None) -> Iterator[concurrent.futures.Future]:
    """The futures (an Executor's, ``c.submit``'s) as they finish, as
    ``concurrent.futures.as_completed`` gives them, writing ``done/total`` (and how many
    failed) to ``file`` (default: stderr) on one line as they do. To draw a bar instead,
    ``tqdm(concurrent.futures.as_completed(futures), total=len(futures))`` works as well; in a
    coroutine, ``asyncio.as_completed`` on ``c.call``'s futures."""
    futures = list(futures)
    out = sys.stderr if file is None else file
    failed = 0
    for done, future in enumerate(concurrent.futures.as_completed(futures, timeout), 1):
        failed += not future.cancelled() and future.exception() is not None
        out.write(f"\r{done}/{len(futures)} done" + (f", {failed} failed" if failed else ""))
        if done == len(futures):
            out.write("\n")
        out.flush()
        yield future


_open_executors: "weakref.WeakSet[Executor]" = weakref.WeakSet()


@atexit.register
def _cancel_on_interrupt() -> None:
    """A program ended by Ctrl-C with an executor open: its calls are cancelled on the workers
    (registered after the clients' closing, so it runs first)."""
    if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt):
        for executor in list(_open_executors):
            executor.shutdown(wait=False, cancel_futures=True)
