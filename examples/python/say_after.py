"""The seed's say_after, gathered: three sleeps on orq workers, about 3 s in all, not 6.

    orq up && PYTHONPATH=build/python python3 examples/python/say_after.py
"""
import asyncio
import time

import orq


async def main():
    async with orq.connect() as c:
        start = time.monotonic()
        for said in await asyncio.gather(c.sleep(1, "hello"), c.sleep(2, "world"),
                                         c.sleep(3, "!!!")):
            print(said)
        print(f"took {time.monotonic() - start:.2f} s")


asyncio.run(main())
