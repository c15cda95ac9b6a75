"""The rota side of bench/peers/run.py, in Python: a user-pool worker whose handler does nothing
(the task is done without a result), written with the Python helper clients/python/rota_worker.py.
Concurrency: the helper's default, $ROTA_CONCURRENCY (the pool's --concurrency)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import rota_worker  # noqa: E402


def noop(payload, ctx):
    pass


sys.exit(rota_worker.run(noop))
