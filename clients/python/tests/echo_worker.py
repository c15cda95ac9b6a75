"""The worker the tests drive: `payload["op"]` says what the handler does.

Usage: echo_worker.py [CONCURRENCY]   (CONCURRENCY is passed to run(); absent: None)
"""

import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import rota_worker  # noqa: E402

_barriers = {}
_barriers_lock = threading.Lock()


def _barrier(parties):
    with _barriers_lock:
        return _barriers.setdefault(parties, threading.Barrier(parties))


def _block(payload, ctx):
    """Says "started", then waits until the test writes to the FIFO payload["fifo"]."""
    ctx.progress(0, "started")
    with open(payload["fifo"]) as fifo:
        return {"released": fifo.read()}


def _wait_cancel(payload, ctx):
    ctx.progress(0, "started")
    if ctx.cancelled.wait(timeout=30):
        if payload.get("then") == "return":
            return "finished anyway"
        raise RuntimeError("saw the cancel")
    return "never cancelled"


def _print(payload, ctx):
    print("printed by the handler")
    subprocess.run(["echo", "echoed by a child"], check=True)
    return "printed"


def _raise(payload, ctx):
    raise ValueError(payload["message"])


def _permanent(payload, ctx):
    raise rota_worker.Permanent(payload["message"])


def _barrier_op(payload, ctx):
    _barrier(payload["parties"]).wait(timeout=20)  # BrokenBarrierError unless all are in at once
    return "met"


def _context(payload, ctx):
    ctx.progress(0.5, "halfway")
    return {"task": ctx.task, "attempt": ctx.attempt, "deadline_ms": ctx.deadline_ms}


OPS = {
    "echo": lambda payload, ctx: payload.get("value"),
    "block": _block,
    "wait_cancel": _wait_cancel,
    "print": _print,
    "raise": _raise,
    "permanent": _permanent,
    "barrier": _barrier_op,
    "context": _context,
    "unserializable": lambda payload, ctx: {"set": {1, 2}},
}


def handle(payload, ctx):
    return OPS[payload["op"]](payload, ctx)


if __name__ == "__main__":
    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else None
    sys.exit(rota_worker.run(handle, concurrency=concurrency))
