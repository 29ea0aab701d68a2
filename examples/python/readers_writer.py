"""The seed's readers-writer, with orq's cluster-wide locks: readers hold "db" together, a
writer holds it alone, and readers that come after a waiting writer wait behind it.

    orq up -t 4 && PYTHONPATH=build/python python3 examples/python/readers_writer.py
"""
import asyncio
import time

import orq


async def main():
    async with orq.connect() as c:
        start = time.monotonic()

        def stamp(what):
            return f"{what} ended at {time.monotonic() - start:.1f} s"

        async def read(n):
            await c.sleep(1, locks={"db": "read"})
            return stamp(f"reader {n}")

        async def write():
            await c.sleep(1, locks={"db": "write"})
            return stamp("writer")

        first = [asyncio.ensure_future(read(n)) for n in range(3)]  # all three at once
        await asyncio.sleep(0.2)
        writer = asyncio.ensure_future(write())  # alone, after them
        await asyncio.sleep(0.2)
        late = asyncio.ensure_future(read(3))  # behind the writer
        for line in await asyncio.gather(*first, writer, late):
            print(line)
        print(f"took {time.monotonic() - start:.2f} s (readers together, then the writer alone)")


asyncio.run(main())
