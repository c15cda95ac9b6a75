"""Command throughput while being watched: N x `true` on 2 workers, alone and watched, in
alternating runs on one daemon (alone, watched, alone, watched, ...); the figure is the median
over the pairs of alone seconds / watched seconds. Target: at least 0.95x.

Watched means what a user and a Prometheus server do: the web dashboard open on its overview
page in headless Chromium (bench/dashboard-viewer.mjs), following the daemon's events live, and
/metrics scraped every second, both over the daemon's TCP listener with its token. Without node,
Chromium or playwright-core the bench says so and measures the scrape plus a Python reader of
the event stream instead.

Usage: python3 bench/observed.py [TASKS] [--pairs P]"""
import argparse
import http.client
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time

from rotabench import ROOT, Daemon, timed

VIEWER = os.path.join(ROOT, "bench", "dashboard-viewer.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = os.path.join(ROOT, "tests", "browser", "node_modules", "playwright-core")
LIVE_TIMEOUT = 90  # the viewer gives up after 60 s itself
# After "live", the page's first fetches and Chromium's start-up work are still finishing; a
# dashboard someone has open is past that.
SETTLE = 1.0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="?", type=int, default=5000)
    p.add_argument("--pairs", type=int, default=5, help="alone/watched pairs (default 5)")
    return p.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(d, n):
    """Seconds for `rota add --stdin` of n x `true` plus `rota wait --all`."""
    lines = "true\n" * n
    seconds = timed(lambda: (d.rota("add", "--stdin", input=lines), d.rota("wait", "--all")))
    counts = d.call("GET", "/v1/status")["tasks"]
    assert counts["succeeded"] == n, counts
    return seconds


class Listener:
    """The daemon's TCP listener: its address and token."""

    def __init__(self, d, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.token_file = os.path.join(d.home, "token")
        with open(self.token_file) as f:
            self.token = f.read().strip()

    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}


class Loop(threading.Thread):
    """A thread: `setup`, `step` until stopped, `teardown`; `stop()` re-raises what they raised."""

    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.error = None

    def run(self):
        try:
            self.setup()
            while not self.halt.is_set():
                self.step()
        except Exception as e:  # handed to the main thread by stop()
            self.error = e
        finally:
            self.teardown()

    def setup(self):
        pass

    def teardown(self):
        pass

    def stop(self):
        self.halt.set()
        self.join()
        if self.error:
            raise self.error


class MetricsScraper(Loop):
    """GET /metrics every second over one keep-alive connection, as Prometheus does."""

    def __init__(self, listener):
        super().__init__()
        self.listener = listener
        self.scrapes = 0

    def setup(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.listener.port, timeout=10)
        self.next = time.monotonic()

    def step(self):
        self.conn.request("GET", "/metrics", headers=self.listener.headers())
        reply = self.conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"/metrics: {reply.status} {body[:200]!r}")
        self.scrapes += 1
        self.next += 1
        self.halt.wait(max(0.0, self.next - time.monotonic()))

    def teardown(self):
        if hasattr(self, "conn"):
            self.conn.close()


class EventReader(Loop):
    """Reads /v1/events as server-sent events: the fallback when there is no browser."""

    def __init__(self, listener):
        super().__init__()
        self.listener = listener
        self.received = 0

    def setup(self):
        self.sock = socket.create_connection(("127.0.0.1", self.listener.port))
        self.sock.sendall(f"GET /v1/events HTTP/1.1\r\nHost: rota\r\nAccept: text/event-stream\r\n"
                          f"Authorization: Bearer {self.listener.token}\r\n\r\n".encode())
        self.sock.settimeout(0.1)

    def step(self):
        try:
            self.received += len(self.sock.recv(1 << 16))
        except socket.timeout:
            pass

    def teardown(self):
        if hasattr(self, "sock"):
            self.sock.close()


class Viewer:
    """bench/dashboard-viewer.mjs in its own process group: Chromium on the overview page."""

    def __init__(self, listener):
        self.proc = subprocess.Popen(
            ["node", VIEWER, listener.url, listener.token_file], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.lines = queue.Queue()
        self.errors = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, put):
        for line in stream:
            put(line.rstrip("\n"))
        put(None)

    def wait_live(self):
        """Returns once the page is live; raises with the viewer's own words otherwise."""
        try:
            line = self.lines.get(timeout=LIVE_TIMEOUT)
        except queue.Empty:
            line = f"no \"live\" within {LIVE_TIMEOUT} s"
        if line != "live":
            self.close()
            raise RuntimeError(self.errors[-1] if self.errors else line or "exited")

    def close(self):
        """Stops the viewer (end of stdin); its last line, e.g. "closed: live, 12 API requests"."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own group: node and its Chromium
            self.proc.wait()
        last = None
        while (line := self.lines.get()) is not None:
            last = line
        return last


def browser_missing():
    """Why the dashboard viewer cannot run here, or None."""
    if not shutil.which("node"):
        return "no node"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (scripts/install-deps browser)"
    if not os.path.isdir(PLAYWRIGHT):
        return "no playwright-core (npm ci in tests/browser)"
    return None


def probe_browser(listener):
    """Opens the dashboard once, untimed (this also warms Chromium's files); None if it went
    live, else why not."""
    missing = browser_missing()
    if missing:
        return missing
    viewer = Viewer(listener)
    try:
        viewer.wait_live()
    except RuntimeError as e:
        return str(e)
    viewer.close()
    return None


class Watchers:
    """While entered: /metrics scraped every second, and the dashboard open and live (or, with
    browser=False, the event stream read). Entering returns once they are settled."""

    def __init__(self, listener, browser):
        self.listener = listener
        self.browser = browser
        self.scrapes = 0  # during the measured run
        self.viewer_said = None  # the viewer's closing line

    def __enter__(self):
        self.scraper = MetricsScraper(self.listener)
        self.scraper.start()
        if self.browser:
            self.viewer = Viewer(self.listener)
            self.viewer.wait_live()
        else:
            self.reader = EventReader(self.listener)
            self.reader.start()
        time.sleep(SETTLE)
        self.scrapes = -self.scraper.scrapes
        return self

    def __exit__(self, *exc):
        if self.browser:
            self.viewer_said = self.viewer.close()
        else:
            self.reader.stop()
        self.scrapes += self.scraper.scrapes
        self.scraper.stop()


def measure_pairs(d, listener, n, pairs, browser):
    """[(alone seconds, watched seconds, Watchers)] for alternating runs; every run starts from
    the same store, since finished tasks are removed (untimed) after each."""
    results = []
    for _ in range(pairs):
        alone = measure(d, n)
        d.rota("clean")
        with Watchers(listener, browser) as w:
            watched = measure(d, n)
        d.rota("clean")
        results.append((alone, watched, w))
    return results


def describe(browser, why_not):
    if browser:
        return ("the dashboard's overview open in headless Chromium (live) + /metrics every 1 s, "
                "both over the TCP listener")
    return (f"/metrics every 1 s + the event stream read by Python, over the TCP listener "
            f"(no browser: {why_not})")


def report(n, pairs, browser, why_not, results):
    ratios = [alone / watched for alone, watched, _ in results]
    print(f"\n### Throughput while watched: {n} x `true`, 2 workers, {pairs} alternating pairs\n")
    print(f"Watched: {describe(browser, why_not)}.\n")
    print("| pair | alone s | alone tasks/s | watched s | watched tasks/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i, (alone, watched, _) in enumerate(results, 1):
        print(f"| {i} | {alone:.2f} | {n / alone:,.0f} | {watched:.2f} | {n / watched:,.0f} | "
              f"{alone / watched:.2f}x |")
    print(f"\nMedian ratio over {pairs} pairs: **{statistics.median(ratios):.2f}x** "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x; target >= 0.95x). "
          f"Scrapes per watched run: {', '.join(str(w.scrapes) for _, _, w in results)}.")
    if browser:
        print("Viewer, after each watched run: "
              + "; ".join(w.viewer_said or "no closing line" for _, _, w in results) + ".")
    print(f"Command: `python3 bench/observed.py {n} --pairs {pairs}`")


def main():
    args = parse_args()
    port = free_port()
    with Daemon(workers=2, extra=("--listen", f"127.0.0.1:{port}")) as d:
        listener = Listener(d, port)
        why_not = probe_browser(listener)
        if why_not:
            print(f"observed.py: dashboard viewer unavailable ({why_not}); measuring /metrics + "
                  f"event stream only")
        measure(d, args.tasks)  # warm up
        d.rota("clean")
        results = measure_pairs(d, listener, args.tasks, args.pairs, browser=not why_not)
    report(args.tasks, args.pairs, not why_not, why_not, results)


if __name__ == "__main__":
    main()
