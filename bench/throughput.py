"""Command throughput: N tasks running `true` on 2 workers, against xargs -P2 and GNU parallel -j2.

rota's figure is end to end: from the first line handed to `rota add --stdin` until `rota wait
--all` returns, with every task and result committed to the store."""
import shutil
import subprocess
import sys

from rotabench import Daemon, timed

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000


def rota(durability):
    with Daemon(workers=2, extra=("--durability", durability)) as d:
        lines = "true\n" * N
        def run():
            d.rota("add", "--stdin", input=lines)
            d.rota("wait", "--all")
        seconds = timed(run)
        counts = d.call("GET", "/v1/status")["tasks"]
        assert counts["succeeded"] == N, counts
        return seconds


def xargs():
    return timed(lambda: subprocess.run(f"seq {N} | xargs -P2 -n1 true", shell=True, check=True))


def parallel():
    if not shutil.which("parallel"):
        return None
    return timed(lambda: subprocess.run(f"seq {N} | parallel -j2 true", shell=True, check=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def main():
    results = [("xargs -P2 (keeps nothing)", xargs()),
               ("GNU parallel -j2 (keeps nothing)", parallel()),
               ("rota, durability normal", rota("normal")),
               ("rota, durability full (fsync per commit)", rota("full"))]
    base = results[0][1]
    print(f"\n### Command throughput: {N} x `true`, 2 workers\n")
    print("| runner | seconds | tasks/s | vs xargs |")
    print("|---|---:|---:|---:|")
    for name, seconds in results:
        if seconds is None:
            print(f"| {name} | n/a | n/a | n/a |")
            continue
        print(f"| {name} | {seconds:.2f} | {N / seconds:,.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
