"""Module-level functions the tests run on workers (pickled by reference)."""


def square(x):
    return x * x


def divide(a, b):
    return a / b


def shout(text):
    print("this goes to stderr, not into the result")
    return text.upper()
