"""Alternating runs of rota binaries on the message-task benchmark, for comparing two builds in
one hour of a machine whose speed varies (bench/peers/README.md): N no-op tasks queued with
`rota add --pool bench --stdin --jsonl`, then a pool of 2 workers written with the C++ helper
(bench/peers/rota_noop.cc) takes them. Each run prints the enqueue rate, the processing rate
(from `rota pool add` until every task succeeded, polled every 5 ms), and the CPU time per task
of the daemon (all its threads) and of the workers, from /proc.

    python3 bench/message_ab.py --bin build/rota --bin /tmp/old/rota [--tasks 200000]
        [--concurrency 10] [--rounds 4]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from rotabench import ROOT, UnixHTTPConnection

HZ = os.sysconf("SC_CLK_TCK")


def get(conn, path):
    import json
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime, every thread


def children_cpu_seconds(pid):
    """CPU of `pid`'s descendants that are still running (the pool's workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                child = int(entry)
                total += cpu_seconds(child) + children_cpu_seconds(child)
        except OSError:
            pass
    return total


def run(rota, worker, tasks, concurrency):
    home = tempfile.mkdtemp(prefix="rota-ab.")
    env = dict(os.environ, ROTA_HOME=home)
    with open(os.path.join(home, "daemon.out"), "w") as log:
        daemon = subprocess.Popen([rota, "daemon", "run"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = UnixHTTPConnection(os.path.join(home, "rota.sock"))
                get(conn, "/v1/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"{rota}: the daemon did not start")
                time.sleep(0.02)
        lines = "".join(f'{{"i":{i}}}\n' for i in range(tasks)).encode()
        cpu0, t0 = cpu_seconds(daemon.pid), time.perf_counter()
        subprocess.run([rota, "add", "--pool", "bench", "--queue", "bench", "--stdin", "--jsonl"],
                       input=lines, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        enqueue_s, enqueue_cpu = time.perf_counter() - t0, cpu_seconds(daemon.pid) - cpu0
        cpu1, t1 = cpu_seconds(daemon.pid), time.perf_counter()
        subprocess.run([rota, "pool", "add", "bench", "--cmd", worker, "--size", "2",
                        "--concurrency", str(concurrency), "--queues", "bench"],
                       env=env, stdout=subprocess.DEVNULL, check=True)
        while get(conn, "/v1/status")["tasks"]["succeeded"] < tasks:
            time.sleep(0.005)
        process_s, process_cpu = time.perf_counter() - t1, cpu_seconds(daemon.pid) - cpu1
        workers_cpu = children_cpu_seconds(daemon.pid)
        conn.close()
    finally:
        subprocess.run([rota, "daemon", "stop", "--grace", "2s"], env=env, capture_output=True)
        daemon.wait()
        shutil.rmtree(home, ignore_errors=True)
    us = 1e6 / tasks
    return (f"enqueue {tasks / enqueue_s:9,.0f}/s {enqueue_cpu * us:5.1f} us | "
            f"process {tasks / process_s:8,.0f}/s daemon {process_cpu * us:5.1f} us "
            f"workers {workers_cpu * us:5.1f} us")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", action="append", required=True, help="a rota binary (repeat)")
    ap.add_argument("--tasks", type=int, default=200_000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rota-ab-noop.")
    worker = os.path.join(work, "rota_noop")
    subprocess.run(["g++", "-std=c++20", "-O2", "-I", os.path.join(ROOT, "clients", "cpp"),
                    os.path.join(ROOT, "bench", "peers", "rota_noop.cc"), "-o", worker, "-pthread"],
                   check=True)
    try:
        for _ in range(args.rounds):
            for rota in args.bin:
                print(f"{rota:32s} {run(os.path.abspath(rota), worker, args.tasks, args.concurrency)}",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
