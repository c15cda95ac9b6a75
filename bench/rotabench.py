"""Shared helpers for rota's benchmarks: a daemon in a temp home, and the API over its socket."""
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROTA = os.environ.get("ROTA_BIN", os.path.join(ROOT, "build", "rota"))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("rota")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Daemon:
    """A rota daemon in a fresh temporary home, stopped on exit."""

    def __init__(self, workers=2, extra=()):
        self.home = tempfile.mkdtemp(prefix="rota-bench.")
        self.env = dict(os.environ, ROTA_HOME=self.home)
        self.rota("daemon", "start", "--workers", str(workers), *extra)
        self.conn = UnixHTTPConnection(os.path.join(self.home, "rota.sock"))

    def rota(self, *args, input=None):
        return subprocess.run([ROTA, *args], env=self.env, input=input, check=True,
                              capture_output=True, text=True).stdout

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=None if body is None else json.dumps(body),
                          headers={"Content-Type": "application/json"})
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status} {data!r}")
        return json.loads(data)

    def stop(self):
        subprocess.run([ROTA, "daemon", "stop", "--grace", "2s"], env=self.env,
                       capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)
