"""Fixtures: a broker and workers of their own (orq up in a temporary ORQ_HOME) for each test
that asks for one, and the orq binary and module of the build under test (ORQ_BINARY, and
PYTHONPATH holding the build's python/ directory; python/tests/run.sh sets both)."""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

ORQ = os.environ.get("ORQ_BINARY", "orq")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # helpers.py: functions that workers import


class Broker:
    """An `orq up` of its own; `orq down` at the end."""

    def __init__(self, workers: int = 2, threads: int = 2, extra=()):
        self.dir = tempfile.TemporaryDirectory(prefix="orq-pytest-")
        self.home = self.dir.name
        self.env = dict(os.environ, ORQ_HOME=self.home)
        self.run("up", "-w", str(workers), "-t", str(threads), *extra)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        p = subprocess.run([ORQ, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"orq {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p.stdout

    def status(self) -> dict:
        return json.loads(self.run("status", "--json"))

    def wait_status(self, done, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if done(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def close(self) -> None:
        self.run("down", check=False)
        self.dir.cleanup()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.close()
