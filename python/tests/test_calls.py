"""Python calls on the workers' warm interpreters (python/orq/serve.py, worker/python_pool.h):
functions by value, results and exceptions as they come back, what a hostile worker cannot do."""

import asyncio
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import helpers
import orq
from conftest import ORQ, Broker

HERE = os.path.dirname(os.path.abspath(__file__))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def script(tmp_path, name, text, broker, *args):
    """Runs a script of its own (its __main__ is not the test's) against the broker."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, str(path), *args], env=broker.env, capture_output=True,
                          text=True, timeout=120)


def test_closures_lambdas_and_a_main_class_as_a_result(broker, tmp_path):
    p = script(tmp_path, "main_things.py", """
        import asyncio, orq

        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y

        class Bad(Exception):
            pass

        def make_point(x):
            return Point(x, -x)

        def fail(why):
            raise Bad(why)

        def scale(k):
            return lambda v: v * k  # a closure

        async def main():
            async with orq.connect() as c:
                triple = scale(3)
                p = await c.call(make_point, 4)
                assert type(p) is Point and (p.x, p.y) == (4, -4), p
                assert await c.call(triple, 5) == 15
                assert await c.call(lambda s: s[::-1], "abc") == "cba"
                assert await c.call(lambda: (1, {2}, b"3")) == (1, {2}, b"3")
                try:
                    await c.call(fail, "no")
                except Bad as e:
                    assert e.args == ("no",)
                    assert "in fail" in str(e.__cause__) and "raise Bad(why)" in str(e.__cause__)
                else:
                    raise AssertionError("no Bad")
                print("ok")

        if __name__ == "__main__":
            asyncio.run(main())
        """, broker)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ok\n"


def test_a_function_typed_at_the_prompt(broker):
    code = ("import asyncio, orq\n"
            "def cube(x): return x ** 3\n"
            "async def main():\n"
            "    async with orq.connect() as c:\n"
            "        print(await asyncio.gather(*(c.call(cube, i) for i in range(4))))\n"
            "asyncio.run(main())\n")
    p = subprocess.run([sys.executable, "-c", code], env=broker.env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[0, 1, 8, 27]\n"


def test_a_script_without_a_main_guard_is_not_run_again(broker, tmp_path):
    marker = tmp_path / "runs"
    p = script(tmp_path, "no_guard.py", f"""
        import orq
        with open({str(marker)!r}, "a") as f:
            f.write("run\\n")

        def double(x):
            return 2 * x

        with orq.Executor() as ex:
            print(list(ex.map(double, range(5))))
        """, broker)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[0, 2, 4, 6, 8]\n"
    assert marker.read_text() == "run\n"  # once: the worker never ran the script


def test_remote_traceback_and_the_output_of_a_call(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            with pytest.raises(ZeroDivisionError) as e:
                await c.call(helpers.divide, 1, 0)
            cause = e.value.__cause__
            assert isinstance(cause, orq.RemoteTraceback)
            assert "helpers.py" in cause.tb and "in divide" in cause.tb
            assert await c.call(helpers.shout, "quiet") == "QUIET"

    run(main())


def test_the_interpreter_stays_warm_and_a_killed_one_fails_its_call(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            pids = set(await asyncio.gather(*(c.call(os.getpid) for _ in range(40))))
            assert 1 <= len(pids) <= 4, pids  # warm: a few interpreters served 40 calls
            again = set(await asyncio.gather(*(c.call(os.getpid) for _ in range(10))))
            assert again <= pids | again and len(again | pids) <= 4
            with pytest.raises(orq.TaskFailed) as e:
                await c.call(os._exit, 3)
            assert "interpreter" in str(e.value) and "exited with code 3" in str(e.value)
            with pytest.raises(orq.TaskFailed) as e:
                await c.call(helpers.kill_self)
            assert "signal 9" in str(e.value)
            # Its retries apply as to any task: a call that kills its interpreter once.
            flag = os.path.join(broker.home, "killed-once")
            assert await c.options(retries=1, retry_backoff=[0, 0]).call(
                helpers.kill_self_once, flag) == "second"
            # A new interpreter takes the next call.
            assert await c.call(helpers.square, 3) == 9

    run(main())


def test_a_timeout_ends_the_call_not_the_worker(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            with pytest.raises(orq.TaskTimeout):
                await c.options(timeout=0.5).call(helpers.nap, 30)
            assert await c.call(helpers.square, 5) == 25

    run(main())
    assert len(broker.status()["workers"]) == 2


def test_a_hostile_workers_result_cannot_run_code_in_the_client(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile-python"
    # An "interpreter" that answers every call with a pickle that would run a command.
    hostile.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import base64, json, os, pickle, struct, sys

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))

        data = base64.b64encode(pickle.dumps(Evil())).decode()
        stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
        while True:
            header = stdin.read(4)
            if len(header) < 4:
                break
            stdin.read(struct.unpack(">I", header)[0])
            answer = json.dumps({{"ok": True, "result": {{"$orq": "pickle", "data": data}},
                                  "stdout": "", "stderr": ""}}).encode()
            stdout.write(struct.pack(">I", len(answer)) + answer)
            stdout.flush()
        """))
    hostile.chmod(hostile.stat().st_mode | stat.S_IXUSR)
    b = Broker(workers=0)
    worker = subprocess.Popen([ORQ, "worker", "--connect", f"ipc://{b.home}/broker.ipc",
                               "--python", str(hostile)], env=b.env)
    try:
        async def main():
            async with orq.connect(home=b.home) as c:
                with pytest.raises(orq.UnsafeResult) as e:
                    await c.call(helpers.square, 2)
                assert "posix.system" in str(e.value) or "os.system" in str(e.value)

        run(main())
        assert not marker.exists()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        b.close()


def test_futures_as_arguments_feed_their_values_and_a_failure_fails_the_dependant(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            a = c.call(helpers.square, 3)
            b = c.call(helpers.square, 4)
            total = c.call(sum, [a, b])  # the same loop turn: one job
            assert await total == 25
            later = c.call(helpers.divide, total, b)  # an earlier job's futures
            assert await later == 25 / 16
            nested = c.call(helpers.add_all, {"x": [a, b], "y": (later,)})
            assert await nested == 9 + 16 + 25 / 16
            bad = c.call(helpers.divide, 1, 0)
            after_bad = c.call(helpers.square, bad)
            with pytest.raises(orq.TaskFailed) as e:
                await after_bad
            assert e.value.status == "dependency_failed", e.value
            assert orq.task_id(bad) in str(e.value) or "dependenc" in str(e.value)
            with pytest.raises(ZeroDivisionError):
                await bad

    run(main())


def test_executor_futures_task_ids_explain_and_logs(broker):
    with orq.Executor(home=broker.home) as ex:
        a = ex.submit(helpers.square, 5)
        b = ex.submit(helpers.add_all, {"x": [a, a]})
        assert b.result(timeout=60) == 50
        tid = orq.task_id(b)
        assert tid.startswith("j") and "." in tid
        assert broker.run("logs", tid) == ""
        loud = ex.submit(helpers.shout, "hey")
        assert loud.result(timeout=60) == "HEY"
        assert "this goes to stderr" in broker.run("logs", orq.task_id(loud))
    with orq.connect(home=broker.home) as c:
        slow = c.options(delay=60).submit(helpers.square, 1)
        why = c.explain(slow)
        assert why["state"] == "delayed" and why["task"] == orq.task_id(slow), why
        c.cancel(orq.task_id(slow))


def test_per_call_options_never_reach_the_function(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            # `timeout` is the function's own keyword here, and the task's option there.
            assert await c.call(helpers.keywords, timeout=7, retries=1) == {"timeout": 7,
                                                                           "retries": 1}
            assert await c.options(retries=2, priority=5).call(helpers.keywords, a=1) == {"a": 1}
            with pytest.raises(orq.UsageError):
                c.options(retriez=2)

    run(main())


def test_executor_chunksize_max_workers_and_progress(broker):
    with orq.Executor(home=broker.home) as ex:
        assert list(ex.map(helpers.square, range(23), chunksize=5)) == [x * x for x in range(23)]
        with pytest.raises(ValueError):
            ex.map(helpers.square, range(3), chunksize=0)
    # max_workers=1: one call in flight at a time, so each starts after the last ended.
    with orq.Executor(max_workers=1, home=broker.home) as ex:
        spans = list(ex.map(helpers.span, [0.2] * 3))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans
    with orq.Executor(home=broker.home) as ex:
        out = io.StringIO()
        futures = [ex.submit(helpers.square, i) for i in range(5)] + [ex.submit(helpers.divide, 1, 0)]
        done = list(orq.progress(futures, file=out))
        assert sorted(map(id, done)) == sorted(map(id, futures))
        assert out.getvalue().endswith("6/6 done, 1 failed\n"), out.getvalue()


def test_ctrl_c_cancels_the_remote_calls_within_two_seconds(broker, tmp_path):
    ids = tmp_path / "ids"
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {HERE!r})
        import helpers, orq
        with orq.Executor() as ex:
            futures = [ex.submit(helpers.nap, 120) for _ in range(3)]
            with open({str(ids)!r}, "w") as f:
                f.write(" ".join(orq.task_id(x) for x in futures))
            futures[0].result()
        """)
    p = subprocess.Popen([sys.executable, "-c", code], env=broker.env, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 60
        while not (ids.exists() and ids.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        tasks = ids.read_text().split()
        # Wait until they run, then Ctrl-C.
        while time.monotonic() < deadline and any(
                json.loads(broker.run("explain", "--json", t))["state"] != "running" for t in tasks[:2]):
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        stopped = time.monotonic()
        while True:
            states = [json.loads(broker.run("explain", "--json", t))["state"] for t in tasks]
            if all(s == "cancelled" for s in states) or time.monotonic() > stopped + 2:
                break
            time.sleep(0.05)
        assert states == ["cancelled"] * 3, states
    finally:
        p.kill()
        p.wait()
