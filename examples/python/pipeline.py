"""A pipeline where futures feed futures: each stage is a call whose arguments are the futures of
the stage before. orq makes every call run after the calls it takes, and hands it their values on
its worker (they never come back here in between); a failure upstream fails what depends on it.

    orq up && PYTHONPATH=build/python python3 examples/python/pipeline.py
"""
import asyncio
import time

import orq


def fetch(page):
    time.sleep(0.2)  # a slow source
    return [f"page {page} line {i}" for i in range(page + 2)]


def count_words(lines):
    return sum(len(line.split()) for line in lines)


def total(counts):
    return sum(counts)


async def main():
    start = time.monotonic()
    async with orq.connect() as c:
        pages = [c.call(fetch, p) for p in range(6)]         # stage 1: six fetches at once
        counts = [c.call(count_words, page) for page in pages]  # stage 2: each after its fetch
        overall = c.call(total, counts)                        # stage 3: after all of stage 2
        print("words:", await overall)
        print("task:", orq.task_id(overall))
        print("per page:", await asyncio.gather(*counts))
    print(f"took {time.monotonic() - start:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
