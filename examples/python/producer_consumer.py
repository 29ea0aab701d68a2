"""The seed's producer-consumer, with a limit: a producer puts work in a bounded asyncio.Queue,
three consumers take it and run each item as an orq task, and a semaphore lets at most two
tasks run on the cluster at once (orq's own cluster-wide limit is `orq limit set NAME 2` and
the task field limits=["NAME"]).

    orq up && PYTHONPATH=build/python python3 examples/python/producer_consumer.py
"""
import asyncio
import time

import orq


async def producer(queue, n):
    for i in range(n):
        await queue.put(i)  # waits while the queue is full: flow control
    for _ in range(3):
        await queue.put(None)


async def consumer(name, c, queue, limit, done):
    while (item := await queue.get()) is not None:
        async with limit:
            done.append(await c.sleep(0.3, f"{name} did {item}"))


async def main():
    async with orq.connect() as c:
        start = time.monotonic()
        queue, limit, done = asyncio.Queue(maxsize=4), asyncio.Semaphore(2), []
        await asyncio.gather(producer(queue, 8),
                             *(consumer(f"consumer {k}", c, queue, limit, done) for k in range(3)))
        print("\n".join(done))
        print(f"took {time.monotonic() - start:.2f} s (8 items of 0.3 s, 2 at a time)")


asyncio.run(main())
