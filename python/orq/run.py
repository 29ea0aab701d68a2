"""``python3 -m orq.run MAIN PAYLOAD``: runs one call of ``Client.call`` / ``Executor.submit`` on a
worker (a shell task). PAYLOAD is ``(fn, args, kwargs)`` pickled and base64-encoded; MAIN, when
not empty, is the submitter's main script, run first as ``__mp_main__`` (as multiprocessing's
spawn does) so that its functions can be unpickled. Prints, as the task's only stdout, ``(True,
value)`` or ``(False, exception)`` pickled and base64-encoded; what the function prints goes to
stderr. Exits 0 when it could say either; 1 when the call could not even be read.
"""

import base64
import pickle
import runpy
import sys
import types


def _load_main(path: str) -> None:
    namespace = runpy.run_path(path, run_name="__mp_main__")
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def main(argv: list) -> int:
    if len(argv) != 3:
        print("usage: python3 -m orq.run MAIN PAYLOAD", file=sys.stderr)
        return 2
    out = sys.stdout
    sys.stdout = sys.stderr  # the function's prints are not its result
    if argv[1]:
        _load_main(argv[1])
    fn, args, kwargs = pickle.loads(base64.b64decode(argv[2]))
    try:
        outcome = (True, fn(*args, **kwargs))
    except BaseException as e:  # noqa: BLE001 - raised again on the caller's side
        outcome = (False, e)
    try:
        data = pickle.dumps(outcome)
    except Exception as e:  # the value or exception does not pickle
        data = pickle.dumps((False, RuntimeError(f"orq.run: the result of {fn!r} does not "
                                                 f"pickle: {e}; the call returned {outcome[1]!r}")))
    out.write(base64.b64encode(data).decode() + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
