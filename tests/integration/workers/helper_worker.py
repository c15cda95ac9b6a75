"""A pool worker built on the Python helper (clients/python/rota_worker.py), for
test_helpers.py. helper-worker.js and helper_worker.cc do the same with the Node and C++
helpers; keep the three in step.

`payload["op"]` says what the handler does:
  echo        {"value": V} -> {"value": V, "task", "attempt", "pid"}
  none        done without a result
  fail_until  {"n": N}: raise (retryable) while the attempt is <= N, then as echo
  permanent   {"message": M}: fail with the helper's Permanent (no retry)
  stop        on attempt 1 SIGSTOP the whole process (heartbeats stop), else as echo
  crash       exit at once with status 3
  gate        {"gate": PATH}: wait until the file PATH exists, then as echo
Every handler call first appends "TASK ATTEMPT PID OP" to $RUN_LOG, when it is set.
"""

import os
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
import rota_worker  # noqa: E402

GUARD_S = 30  # a handler that waits this long has failed its test


def note(payload, ctx):
    path = os.environ.get("RUN_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.task} {ctx.attempt} {os.getpid()} {payload['op']}\n".encode())
        finally:
            os.close(fd)


def echo(payload, ctx):
    return {"value": payload.get("value"), "task": ctx.task, "attempt": ctx.attempt,
            "pid": os.getpid()}


def handle(payload, ctx):
    note(payload, ctx)
    op = payload["op"]
    if op == "echo":
        return echo(payload, ctx)
    if op == "none":
        return None
    if op == "fail_until":
        if ctx.attempt <= payload["n"]:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return echo(payload, ctx)
    if op == "permanent":
        raise rota_worker.Permanent(payload["message"])
    if op == "stop":
        if ctx.attempt == 1:
            os.kill(os.getpid(), signal.SIGSTOP)
        return echo(payload, ctx)
    if op == "crash":
        os._exit(3)
    if op == "gate":
        give_up = time.monotonic() + GUARD_S
        while not os.path.exists(payload["gate"]):
            if time.monotonic() > give_up:
                raise RuntimeError("the gate never opened")
            time.sleep(0.01)
        return echo(payload, ctx)
    raise rota_worker.Permanent(f"unknown op {op}")


if __name__ == "__main__":
    sys.exit(rota_worker.run(handle))
