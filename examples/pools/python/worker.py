"""Counts the words of payload["text"]: a rota user-pool worker in Python."""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "..", "clients", "python"))
import rota_worker  # noqa: E402


def count_words(payload, ctx):
    return {"words": len(payload["text"].split())}


rota_worker.run(count_words)
