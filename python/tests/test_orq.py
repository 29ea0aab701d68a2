"""The Python module against a real broker and workers (conftest.py's `broker`)."""

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import threading

import pytest

import helpers
import orq
from conftest import ORQ, Broker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_gather_keeps_order_and_runs_concurrently(broker):
    # Each task makes a file and waits until all three are there: they end only if they ran at
    # the same time (or say "alone" after a minute); gather gives their results in the order
    # asked, though they end in another.
    met = os.path.join(broker.home, "met")
    os.mkdir(met)

    def meet(name, then):
        return (f"touch {met}/{name}; i=0; while [ $(ls {met} | wc -l) -lt 3 ]; do "
                f"i=$((i+1)); if [ $i -gt 3000 ]; then echo alone; exit 0; fi; sleep 0.02; done; "
                f"sleep {then}; echo {name}")

    async def main():
        async with orq.connect(home=broker.home) as c:
            return await asyncio.gather(c.shell(meet("three", 0.3)), c.shell(meet("one", 0)),
                                        c.shell(meet("two", 0.15)))

    assert run(main()) == ["three\n", "one\n", "two\n"]


def test_kinds_and_their_results(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            return await asyncio.gather(c.echo({"a": [1, 2]}), c.sleep(0.1), c.cpu(5),
                                        c.shell(["echo", "hi"]), c.shell("echo $((6*7))"))

    echo, slept, cpu, out, line = run(main())
    assert echo == {"a": [1, 2]} and slept == 0.1 and cpu == 5
    assert out == "hi\n" and line == "42\n"


def test_as_completed_gives_the_first_to_finish_first(broker):
    # "middle" waits for a file made once "fast" is back, "slow" for one made once "middle" is.
    def after(gate, result):
        path = os.path.join(broker.home, gate)
        return f"while [ ! -e {path} ]; do sleep 0.02; done; echo {result}"

    async def main():
        async with orq.connect(home=broker.home) as c:
            futures = [c.shell(after("b", "slow")), c.echo("fast"), c.shell(after("a", "middle"))]
            order = []
            for future in asyncio.as_completed(futures):
                order.append((await future).strip())
                open(os.path.join(broker.home, "a" if len(order) == 1 else "b"), "w").close()
            return order

    assert run(main()) == ["fast", "middle", "slow"]


def test_wait_first_completed_then_cancel_the_rest(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            slow, fast = c.sleep(60), c.echo("first")
            done, pending = await asyncio.wait({slow, fast},
                                               return_when=asyncio.FIRST_COMPLETED)
            assert done == {fast} and pending == {slow}
            assert fast.result() == "first"
            slow.cancel()
            await asyncio.sleep(0)

    run(main())
    s = broker.wait_status(lambda s: s["tasks"]["cancelled"] == 1)
    assert s["tasks"]["cancelled"] == 1 and s["tasks"]["running"] == 0


def test_wait_for_timeout_cancels_the_orq_task(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.sleep(60), 0.5)

    run(main())
    s = broker.wait_status(lambda s: s["tasks"]["cancelled"] == 1)
    assert s["tasks"]["cancelled"] == 1


def test_task_cancel_propagates_to_orq(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            task = asyncio.ensure_future(c.shell(["sleep", "60"]))
            # Until the broker says it runs.
            for _ in range(600):
                if c.status()["tasks"]["running"] == 1:
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())
    s = broker.wait_status(lambda s: s["tasks"]["cancelled"] == 1 and s["tasks"]["running"] == 0)
    assert s["tasks"]["cancelled"] == 1 and s["tasks"]["running"] == 0
    status = broker.run("status")
    assert "cancelled 1" in status, status


def test_a_failed_task_raises_with_exit_code_stderr_and_attempts(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            with pytest.raises(orq.TaskFailed) as failed:
                await c.shell("echo boom >&2; exit 3", retries=1)
            with pytest.raises(orq.TaskTimeout) as timed_out:
                await c.sleep(30, timeout=0.3)
            return failed.value, timed_out.value

    failed, timed_out = run(main())
    assert failed.exit_code == 3 and "boom" in failed.stderr and failed.attempts == 2
    assert failed.status == "failed" and failed.task_id.startswith("j")
    assert "exit code 3" in str(failed)
    assert timed_out.status == "timeout" and isinstance(timed_out, orq.TaskFailed)


def test_call_runs_module_functions_and_raises_their_exceptions(broker):
    async def main():
        async with orq.connect(home=broker.home) as c:
            assert await c.call(helpers.square, 12) == 144
            assert await c.call(helpers.shout, "quiet") == "QUIET"
            with pytest.raises(ZeroDivisionError):
                await c.call(helpers.divide, 1, 0)
            assert await asyncio.gather(*(c.call(pow, 2, n) for n in range(8))) == [
                2 ** n for n in range(8)]

    run(main())


def test_executor_map_submit_and_shutdown(broker):
    with orq.Executor(home=broker.home) as ex:
        assert list(ex.map(helpers.square, range(10))) == [x * x for x in range(10)]
        f = ex.submit(helpers.divide, 1, 4)
        assert f.result(timeout=60) == 0.25
        bad = ex.submit(helpers.divide, 1, 0)
        assert isinstance(bad.exception(timeout=60), ZeroDivisionError)


def test_one_client_across_loops_threads_and_a_busy_loop(broker):
    # An asyncio loop reads the client's outcomes itself while it runs; they must still reach
    # every future when that loop has closed (a second asyncio.run), when futures of another
    # thread wait, and when the reading loop is busy and does not read at all.
    c = orq.connect(home=broker.home)

    async def two():
        return await asyncio.gather(c.echo(1), c.echo(2))

    assert run(two()) == [1, 2]
    assert run(two()) == [1, 2]  # a new loop: the first one is closed
    assert c.submit(sum, [1, 2]).result(timeout=60) == 3  # no loop at all

    busy = threading.Event()
    done = threading.Event()

    async def hog():
        assert await c.echo("mine") == "mine"  # this loop reads the outcomes now
        busy.set()
        done.wait(60)  # and does not read for a while (blocks its own loop)
        return await c.echo("after")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        loop_result = pool.submit(lambda: run(hog()))
        assert busy.wait(60)
        assert c.submit(sum, [3, 4]).result(timeout=60) == 7  # taken by the client's thread
        done.set()
        assert loop_result.result(timeout=60) == "after"
    c.close()


def test_errors_are_orq_errors_with_exit_codes(broker, tmp_path):
    with pytest.raises(orq.Unreachable) as e:
        orq.connect(home=str(tmp_path))
    assert e.value.exit_code == 3

    async def main():
        async with orq.connect(home=broker.home) as c:
            with pytest.raises(orq.UsageError):
                await c.sleep(-1)
            with pytest.raises(orq.UsageError):
                c.cancel("j999")

    run(main())
    assert "api 3" in orq.version()


def test_a_client_over_tcp_with_an_access_file(tmp_path):
    b = Broker(workers=1, extra=("--listen", "tcp://127.0.0.1:*"))
    try:
        access = str(tmp_path / "client.access")
        b.run("access", "add", "--client", access)

        async def main():
            async with orq.connect(access=access) as c:
                return await asyncio.gather(c.echo("over"), c.shell(["echo", "tcp"]))

        assert run(main()) == ["over", "tcp\n"]
    finally:
        b.close()


@pytest.mark.parametrize("example", sorted(
    f for f in os.listdir(os.path.join(REPO, "examples", "python")) if f.endswith(".py")))
def test_the_examples_run(broker, example):
    p = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python", example)],
                       env=broker.env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "took" in p.stdout, p.stdout
