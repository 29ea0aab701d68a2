"""The seed's slow_function: ten tasks of 1 to 5 s made with create_task and gathered; the
durations in submission order, in about the longest of them.

    orq up -t 10 && PYTHONPATH=build/python python3 examples/python/slow_function.py
"""
import asyncio
import random
import time

import orq


async def slow_function(c, duration):
    return await c.sleep(duration)  # the result of a sleep without one: its seconds


async def main():
    async with orq.connect() as c:
        start = time.monotonic()
        tasks = [asyncio.create_task(slow_function(c, random.randint(1, 5))) for _ in range(10)]
        print(await asyncio.gather(*tasks))
        print(f"took {time.monotonic() - start:.2f} s")


asyncio.run(main())
