"""Enqueue rate: N shell lines through `rota add --stdin` into a paused queue (so that running
them does not compete with queueing), committed in batches."""
import sys

from rotabench import Daemon, timed

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000


def main():
    lines = "".join(f"echo item {i}\n" for i in range(N))
    with Daemon(workers=2) as d:
        d.rota("queue", "pause", "default")
        seconds = timed(lambda: d.rota("add", "--stdin", input=lines))
        counts = d.call("GET", "/v1/status")["tasks"]
        assert counts["queued"] == N, counts
    print(f"\n### Enqueue: {N:,} tasks through `rota add --stdin`\n")
    print("| tasks | seconds | tasks/s |")
    print("|---:|---:|---:|")
    print(f"| {N:,} | {seconds:.2f} | {N / seconds:,.0f} |")


if __name__ == "__main__":
    main()
