"""Python function calls on orq's warm interpreters, against concurrent.futures'
ProcessPoolExecutor(2) and Dask's client.map + gather (2 worker processes), in one run on this
machine. Prints the medians of RUNS runs (default 3) of:

  map     N trivial calls (default 1,000) through Executor.map / ProcessPoolExecutor.map /
          client.gather(client.map(...)), each pool made (and warmed with one map) before the
          clock starts
  calls   M trivial `c.call`s (default 100,000) gathered with asyncio.gather
  latency one warm `await c.call(f)`, the median of 200 in a row

    ORQ_HOME=$(mktemp -d) build/orq up -w 1 -t 2
    PYTHONPATH=build/python python3 bench/python_calls.py [N [M [RUNS]]]
    # Dask: the Debian package python3-distributed (without it, its line says so)

orq: the broker and the workers that `orq up` started (its journal fsynced, as always); its
interpreters start on the first call (the warm-up map) and stay.
"""
import asyncio
import concurrent.futures
import statistics
import sys
import time

import orq

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
M = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 3


def trivial(x):
    return x


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def median_of(f):
    return statistics.median(timed(f) for _ in range(RUNS))


def map_check(results):
    assert list(results) == list(range(N))


def orq_map():
    with orq.Executor() as ex:
        map_check(ex.map(trivial, range(N)))  # warm: the interpreters start
        return median_of(lambda: map_check(ex.map(trivial, range(N))))


def pool_map():
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        map_check(ex.map(trivial, range(N)))
        return median_of(lambda: map_check(ex.map(trivial, range(N))))


def dask_map():
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        def once():
            map_check(client.gather(client.map(trivial, range(N), pure=False)))
        once()
        return median_of(once)


async def orq_calls():
    async with orq.connect() as c:
        async def many():
            start = time.perf_counter()
            results = await asyncio.gather(*(c.call(trivial, i) for i in range(M)))
            took = time.perf_counter() - start
            assert results == list(range(M))
            return took

        await c.call(trivial, 0)
        calls = statistics.median([await many() for _ in range(RUNS)])
        times = []
        for i in range(200):
            start = time.perf_counter()
            assert await c.call(trivial, i) == i
            times.append(time.perf_counter() - start)
        return calls, statistics.median(times)


def main():
    orq_s, pool_s = orq_map(), pool_map()
    dask_s = dask_map()
    print(f"map of {N} trivial calls, median of {RUNS}:")
    print(f"  orq Executor().map                {orq_s:8.3f} s")
    print(f"  ProcessPoolExecutor(2).map        {pool_s:8.3f} s   orq/pool = {orq_s / pool_s:.2f}x")
    if dask_s is None:
        print("  Dask client.map + gather          not installed (python3-distributed)")
    else:
        print(f"  Dask client.map + gather          {dask_s:8.3f} s   dask/orq = {dask_s / orq_s:.2f}x")
    calls, latency = asyncio.run(orq_calls())
    print(f"{M} trivial c.call gathered, median of {RUNS}: {calls:.2f} s ({M / calls:,.0f}/s)")
    print(f"one warm await c.call(f), median of 200: {latency * 1000:.3f} ms")


if __name__ == "__main__":
    main()
