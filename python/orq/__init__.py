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

``c.call(fn, *args)`` and the Executor run Python functions on workers: the function is pickled
by reference, as ``ProcessPoolExecutor`` does, so its module must be importable where the worker
runs (the job's directory and ``sys.path`` travel with it; a function of the main script is
found by running that script again as ``__mp_main__``, as multiprocessing's spawn does). Its
arguments and its return value or exception are pickled: use it for functions and data you
trust, as with any pickle.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import itertools
import json
import os
import pickle
import sys
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from . import _orq

__all__ = [
    "connect",
    "Client",
    "Executor",
    "OrqError",
    "UsageError",
    "Unreachable",
    "Refused",
    "DiskFull",
    "Timeout",
    "TaskFailed",
    "TaskTimeout",
    "TaskCancelled",
    "version",
]


def version() -> str:
    """The client library's version and API version, e.g. ``"0.1.0 (api 2)"``."""
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


def _decode_call(result: bytes, stdout: bytes) -> Any:
    ok, value = pickle.loads(base64.b64decode(stdout.strip().splitlines()[-1]))
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
                 home: Optional[str] = None):
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
        """Runs ``fn(*args, **kwargs)`` on a worker (``python3 -m orq.run``); its return value,
        or its exception raised here. Pickled by reference: see the module's help."""
        return self._async(_call_spec(fn, args, kwargs), {}, _decode_call)

    def _async(self, spec: dict, options: dict, decode: Callable) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        spec.update(options)
        future = _Future(loop=loop)
        with self._lock:
            if self._closed:
                raise UsageError("this orq client is closed")
            self._queue.append((json.dumps(spec), future, decode))
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
        if not queue:
            return
        entries = [(f, decode, f.get_loop()) for _, f, decode in queue]
        try:
            batch = self._start([t for t, _, _ in queue], entries)
        except OrqError as e:
            for f, _, _ in entries:
                if not f.done():
                    f.set_exception(e)
            return
        for index, (f, _, _) in enumerate(entries):
            f._orq = (self, batch, index)
            if f.cancelled():  # before its job went
                self._cancel(batch, index)

    def _start(self, tasks: list[str], entries: list) -> int:
        batch = next(self._batches)
        with self._lock:
            self._pending[batch] = entries
            self._left[batch] = len(entries)
        try:
            self._native.start(batch, tasks, os.getcwd(), _job_env())
        except _orq.NativeError as e:
            with self._lock:
                del self._pending[batch], self._left[batch]
            raise _native_error(e) from None
        return batch

    def _cancel(self, batch: int, index: int) -> None:
        if not self._closed:
            self._native.cancel(batch, index)

    # -- concurrent.futures

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """``fn(*args, **kwargs)`` on a worker, as a ``concurrent.futures.Future``."""
        return self._sync([_call_spec(fn, args, kwargs)])[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None) -> Iterator[Any]:
        """As ``Executor.map``: all calls go as one job; results in order."""
        futures = self._sync([_call_spec(fn, args, {}) for args in zip(*iterables)])
        return _results_in_order(futures, timeout)

    def _sync(self, specs: list[dict]) -> list[concurrent.futures.Future]:
        if self._closed:
            raise UsageError("this orq client is closed")
        futures = [concurrent.futures.Future() for _ in specs]
        entries = [(f, _decode_call, None) for f in futures]
        batch = self._start([json.dumps(s) for s in specs], entries)
        for index, f in enumerate(futures):
            f.add_done_callback(lambda f, i=index: f.cancelled() and self._cancel(batch, i))
        return futures

    # -- the broker

    def status(self, timeout: float = 30) -> dict:
        """The broker's state, as ``orq status --json`` prints it."""
        return json.loads(self._native_call(self._native.status_json, timeout))

    def ping(self, timeout: float = 5) -> int:
        """The broker's pid (it answers)."""
        return self._native_call(self._native.ping, timeout)

    def cancel(self, *ids: str, timeout: float = 30) -> int:
        """Cancels jobs and tasks by id ("j7", "j7.2"), as ``orq cancel``; how many."""
        return self._native_call(self._native.cancel_ids, list(ids), timeout)

    @staticmethod
    def _native_call(f: Callable, *args: Any) -> Any:
        try:
            return f(*args)
        except _orq.NativeError as e:
            raise _native_error(e) from None

    # -- the client's thread: outcomes to futures

    def _dispatch(self) -> None:
        while True:
            items = self._native.take(0.5)
            if items is None:
                return
            by_loop: dict = {}
            with self._lock:
                for item in items:
                    batch, index = item[0], item[1]
                    entries = self._pending.get(batch)
                    if entries is None:  # (cannot happen: each outcome comes once)
                        continue
                    self._left[batch] -= 1
                    if self._left[batch] == 0:
                        del self._pending[batch], self._left[batch]
                    by_loop.setdefault(entries[index][2], []).append((entries[index], item))
            for loop, done in by_loop.items():
                if loop is None:
                    _resolve(done)
                else:
                    try:
                        loop.call_soon_threadsafe(_resolve, done)
                    except RuntimeError:  # its loop is closed: nobody waits for these
                        pass


class _Future(asyncio.Future):
    """An asyncio.Future whose cancel() also cancels its orq task (at once: no done callback
    per future, which would cost a loop callback each in a gather of thousands)."""

    _orq: Optional[tuple] = None  # (client, batch, index) once its job went to the broker

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
    workers: this interpreter's import path, so ``python3 -m orq.run`` finds orq and the
    caller's modules."""
    paths = [p if p else os.getcwd() for p in sys.path]
    return ["PYTHONPATH=" + os.pathsep.join(paths)]


def _call_spec(fn: Callable, args: tuple, kwargs: dict) -> dict:
    main = ""
    if getattr(fn, "__module__", None) == "__main__":
        main = getattr(sys.modules["__main__"], "__file__", "") or ""
        if not main:
            raise UsageError(f"{fn!r} is defined in an interactive session: define it in a "
                             "module (or a script file) so that a worker can import it")
        main = os.path.abspath(main)
    payload = base64.b64encode(pickle.dumps((fn, args, kwargs))).decode()
    return {"kind": "shell", "argv": [sys.executable, "-m", "orq.run", main, payload]}


def connect(access: Optional[str] = None, endpoint: Optional[str] = None,
            home: Optional[str] = None) -> Client:
    """A client of an orq broker: the one an access file names (``orq access add --client``;
    over TCP with CURVE), the one on an ``ipc://`` endpoint, or the one ``orq up`` runs in
    ``home``. With none of them, as the ``orq`` command finds its broker: ``$ORQ_ACCESS``,
    ``$ORQ_ENDPOINT``, else ``$ORQ_HOME`` (default ``~/.orq``).

    Use it as ``async with orq.connect() as c:`` (or ``with``); :meth:`Client.close` otherwise.
    """
    return Client(access=access, endpoint=endpoint, home=home)


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures`` executor whose calls run on orq workers; usable where a
    ``ProcessPoolExecutor`` is (``submit``, ``map``, ``shutdown``, ``with``).

    ``client``: a :class:`Client` to use (left open at shutdown); else it connects as
    :func:`connect` does with ``access``, ``endpoint`` and ``home``. ``max_workers`` is accepted
    for compatibility and ignored: the cluster's workers decide.
    """

    def __init__(self, max_workers: Optional[int] = None, *, client: Optional[Client] = None,
                 access: Optional[str] = None, endpoint: Optional[str] = None,
                 home: Optional[str] = None):
        self._own = client is None
        self._client = client or connect(access=access, endpoint=endpoint, home=home)
        self._futures: set = set()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        f = self._client.submit(fn, *args, **kwargs)
        self._futures.add(f)
        f.add_done_callback(self._futures.discard)
        return f

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: Optional[float] = None,
            chunksize: int = 1) -> Iterator[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return self._client.map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            for f in list(self._futures):
                f.cancel()
        if wait:
            concurrent.futures.wait(list(self._futures))
        if self._own:
            self._client.close()
