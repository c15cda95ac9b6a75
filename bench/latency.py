"""Dispatch latency: from the moment a client sends a task to the moment the task's own
process runs (it prints the clock), for N tasks one after another on an idle pool."""
import os
import sys
import time

from rotabench import Daemon, percentile

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def main():
    samples = []
    with Daemon(workers=2) as d:
        for _ in range(N):
            sent = time.time_ns()
            task = d.call("POST", "/v1/tasks", {"argv": ["date", "+%s%N"], "cwd": "/",
                                                "env": {"PATH": os.environ["PATH"]}})
            d.call("POST", "/v1/wait", {"ids": [task["id"]], "timeout_ms": 10_000})
            started = int(open(os.path.join(d.home, "logs", f"{task['id']}.log")).read())
            samples.append((started - sent) / 1e6)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(f"\n### Dispatch latency: enqueue -> task process running, {N} sequential tasks\n")
    print("| p50 ms | p99 ms | max ms |")
    print("|---:|---:|---:|")
    print(f"| {p50:.2f} | {p99:.2f} | {max(samples):.2f} |")


if __name__ == "__main__":
    main()
