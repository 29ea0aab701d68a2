"""concurrent.futures on orq: orq.Executor where a ProcessPoolExecutor would be (the functions
run on orq's workers, here or on other hosts), and run_in_executor from a coroutine.

    orq up && PYTHONPATH=build/python python3 examples/python/executors.py
"""
import asyncio
import concurrent.futures
import math
import time

import orq


def count_primes(limit):
    return sum(1 for n in range(2, limit) if all(n % d for d in range(2, math.isqrt(n) + 1)))


def main():
    start = time.monotonic()
    with orq.Executor() as pool:
        print(list(pool.map(count_primes, [10_000, 20_000, 30_000, 40_000])))
        futures = [pool.submit(count_primes, n) for n in (1_000, 2_000)]
        for f in concurrent.futures.as_completed(futures):
            print("as completed:", f.result())

        async def in_a_coroutine():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(pool, count_primes, 5_000)

        print("run_in_executor:", asyncio.run(in_a_coroutine()))
    print(f"took {time.monotonic() - start:.2f} s")


if __name__ == "__main__":
    main()
