"""Self-healing, measured: how fast a lost task runs again and a slot is refilled.

1. kill -9 of a worker mid-task -> its task running again (the task records its own start)
   and the slot refilled (a new worker said hello), N times.
2. SIGSTOP of a worker mid-task -> its task running again elsewhere; expected: dead_after
   plus one heartbeat interval.
3. `rota daemon restart` with 100 running tasks -> every one adopted by the new daemon."""
import os
import signal
import statistics
import sys
import time

from rotabench import Daemon

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def starts(path):
    try:
        return [int(x) for x in open(path).read().split()]
    except FileNotFoundError:
        return []


def wait(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(predicate)
        time.sleep(0.0005)


def running_worker(d, task):
    for w in d.call("GET", "/v1/workers"):
        if w["task"] == task and w["pid"]:
            return w
    return None


def lose_a_worker(d, how, path):
    """Starts a task that appends its start time to `path`, takes its worker out with `how`, and
    returns (ms until the task ran again, ms until the slot had a new idle worker)."""
    task = d.call("POST", "/v1/tasks", {"shell": f"date +%s%N >> {path}; exec sleep 60", "cwd": "/",
                                         "retries": 1, "backoff": "0ms",
                                         "env": {"PATH": os.environ["PATH"]}})["id"]
    wait(lambda: len(starts(path)) == 1)
    victim = wait(lambda: running_worker(d, task))
    hit = time.time_ns()
    os.kill(victim["pid"], how)
    rerun = wait(lambda: starts(path)[1:])[0]
    refilled = wait(lambda: [w for w in d.call("GET", "/v1/workers")
                             if w["slot"] == victim["slot"] and w["pid"] not in (None, victim["pid"])
                             and w["state"] in ("idle", "working")])
    refill_ns = time.time_ns()
    d.call("POST", "/v1/tasks/cancel", {"ids": [task]})
    if how == signal.SIGSTOP:
        try:
            os.kill(victim["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass  # killed as dead, as it should be
    return (rerun - hit) / 1e6, (refill_ns - hit) / 1e6


def main():
    print(f"\n### Self-healing\n")
    print("| what | p50 ms | max ms | target |")
    print("|---|---:|---:|---|")
    # Killing workers by hand again and again is no crash loop, but it does count against
    # max_restarts: allow enough for the rounds.
    with Daemon(workers=2, extra=("--max-restarts", "1000")) as d:
        results = [lose_a_worker(d, signal.SIGKILL, os.path.join(d.home, f"starts-{i}"))
                   for i in range(ROUNDS)]
    rerun = [r[0] for r in results]
    refill = [r[1] for r in results]
    print(f"| kill -9 of a worker -> its task running again ({ROUNDS} rounds) | "
          f"{statistics.median(rerun):.1f} | {max(rerun):.1f} | < 50 |")
    print(f"| kill -9 of a worker -> slot refilled (new worker idle) | "
          f"{statistics.median(refill):.1f} | {max(refill):.1f} | < 50 |")

    flags = ("--heartbeat-interval", "200ms", "--unresponsive-after", "1s", "--dead-after", "2s")
    with Daemon(workers=2, extra=flags) as d:
        results = [lose_a_worker(d, signal.SIGSTOP, os.path.join(d.home, f"stop-{i}"))
                   for i in range(3)]
    rerun = [r[0] for r in results]
    print(f"| SIGSTOP of a worker -> its task running again (dead_after 2s, heartbeat 200ms) | "
          f"{statistics.median(rerun):.0f} | {max(rerun):.0f} | <= 2200 |")

    with Daemon(workers=100) as d:
        body = {"defaults": {"cwd": "/", "env": {"PATH": os.environ["PATH"]}},
                "tasks": [{"argv": ["sleep", "120"]} for _ in range(100)]}
        d.call("POST", "/v1/tasks", body)
        wait(lambda: d.call("GET", "/v1/status")["tasks"]["running"] == 100)
        start = time.monotonic()
        d.rota("daemon", "restart", "--workers", "100")
        d.conn.close()
        adopted = lambda: sum(1 for w in d.call("GET", "/v1/workers")
                              if w["state"] == "working" and w["pid"]) == 100
        wait(adopted)
        seconds = time.monotonic() - start
        attempts = {t["attempts"] for t in d.call("GET", "/v1/tasks?limit=1000")}
        assert attempts == {1}, attempts
        d.call("POST", "/v1/tasks/cancel", {"ids": list(range(1, 101))})
    print(f"| `rota daemon restart` with 100 running tasks -> all 100 adopted, none restarted | "
          f"{seconds * 1000:.0f} | | |")


if __name__ == "__main__":
    main()
