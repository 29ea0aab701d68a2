"""Python's gather of N echo tasks end to end on orq, against Dask's
client.gather(client.map(...)) of the same on this machine, and the latency of one
`await c.echo(1)` (median of 200). Gathers: the median of RUNS runs for orq (default 3), of
DASK_RUNS for Dask (default 1).

    ORQ_HOME=$(mktemp -d) build/orq up -w 2 -t 1
    PYTHONPATH=build/python python3 bench/python_gather.py [N [RUNS [DASK_RUNS]]]
    # Dask: the Debian package python3-distributed

orq: the broker and 2 workers `orq up` started (its journal fsynced, as always). Dask: a
LocalCluster of 2 worker processes with 1 thread each, made before the clock starts.
"""
import asyncio
import statistics
import sys
import time

import orq

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
# Dask's gather of 100,000 takes minutes here: once, unless told otherwise.
DASK_RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 1


async def orq_gather(c):
    start = time.perf_counter()
    results = await asyncio.gather(*(c.echo(i) for i in range(N)))
    took = time.perf_counter() - start
    assert results == list(range(N))
    return took


async def orq_latency(c, n=200):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert await c.echo(1) == 1
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def orq_figures():
    async with orq.connect() as c:
        gathers = [await orq_gather(c) for _ in range(RUNS)]
        return statistics.median(gathers), await orq_latency(c)


def echo(x):
    return x


def dask_figures():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        gathers = []
        for run in range(DASK_RUNS):
            start = time.perf_counter()
            # pure=False: N distinct tasks, as orq's N submitted tasks
            results = client.gather(client.map(echo, range(N), pure=False))
            gathers.append(time.perf_counter() - start)
            assert results == list(range(N))
        one = []
        for _ in range(200):
            start = time.perf_counter()
            assert client.submit(echo, 1, pure=False).result() == 1
            one.append(time.perf_counter() - start)
        return statistics.median(gathers), statistics.median(one)


if __name__ == "__main__":
    g, one = asyncio.run(orq_figures())
    print(f"orq   gather of {N} echo: {g:.2f} s ({N / g:,.0f} tasks/s); one await c.echo(1): "
          f"{one * 1000:.2f} ms")
    try:
        dg, done = dask_figures()
        print(f"dask  gather(map) of {N}: {dg:.2f} s ({N / dg:,.0f} tasks/s); one submit().result(): "
              f"{done * 1000:.2f} ms")
        print(f"ratio dask/orq gather: {dg / g:.1f}x; one task: {done / one:.1f}x")
    except ImportError:
        print("dask: not installed (apt-get install python3-distributed)")
