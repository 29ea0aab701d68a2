"""Module-level functions the tests run on workers (pickled by reference)."""


def square(x):
    return x * x


def divide(a, b):
    return a / b


def shout(text):
    print("this goes to stderr, not into the result")
    return text.upper()


def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


def kill_self():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def kill_self_once(flag):
    import os

    if not os.path.exists(flag):
        open(flag, "w").close()
        kill_self()
    return "second"


def add_all(values):
    total = 0
    for v in values.values():
        total += sum(v)
    return total


def keywords(**kwargs):
    return kwargs


def span(seconds):
    import time

    start = time.time()
    time.sleep(seconds)
    return start, time.time()
