"""Shared helpers for rota's black-box integration tests.

Every test gets a fresh home in /tmp (short paths: a unix socket path must fit in 108 bytes)
and talks to a real daemon through the CLI (subprocess) or the HTTP API on the home's unix
socket. Every process a test starts (the daemon, its workers, and the tasks they run) carries
a unique tag in its environment, so teardown can find and kill -9 whatever is left.
"""

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROTA_BIN = os.environ.get("ROTA_BIN") or os.path.join(REPO, "build", "rota")
TAG_VAR = "ROTA_IT_TAG"
CMD_TIMEOUT = 60  # seconds any single CLI call may take before the test fails

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TERMINAL = {"succeeded", "failed", "cancelled", "skipped"}


# ---- waiting -----------------------------------------------------------------------------


def wait_for(predicate, timeout=20, interval=0.03, message=None):
    """Polls `predicate` until it returns something truthy and returns that value; fails the
    test with a clear message (and the last value seen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            what = what or getattr(predicate, "__name__", "a condition")
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


# ---- processes ---------------------------------------------------------------------------


def pid_alive(pid):
    """True while `pid` exists and is not a zombie (a zombie has done all it will do)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def _proc_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def procs_with(marker):
    """Live processes whose command line contains `marker`."""
    needle = marker.encode()
    me = os.getpid()
    out = []
    for pid in _proc_pids():
        if pid == me:
            continue
        cmdline = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ")
        if needle in cmdline and pid_alive(pid):
            out.append(pid)
    return out


def exact_procs(*argv):
    """Live processes whose argv is exactly `argv` (so a shell whose script merely mentions
    the command does not count)."""
    want = [a.encode() for a in argv]
    me = os.getpid()
    out = []
    for pid in _proc_pids():
        if pid == me:
            continue
        cmdline = _read(f"/proc/{pid}/cmdline").split(b"\0")
        if cmdline[-1:] == [b""]:
            cmdline = cmdline[:-1]
        if cmdline == want and pid_alive(pid):
            out.append(pid)
    return out


def tagged_procs(tag):
    """Live processes whose environment carries this test's tag."""
    needle = f"{TAG_VAR}={tag}".encode()
    me = os.getpid()
    out = []
    for pid in _proc_pids():
        if pid == me:
            continue
        env = _read(f"/proc/{pid}/environ").split(b"\0")
        if needle in env and pid_alive(pid):
            out.append(pid)
    return out


def unique_sleep_arg(whole=1000):
    """A `sleep` argument no other process on the machine uses, e.g. "1000.482913"."""
    return f"{whole}.{random.randint(100000, 999999)}"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---- HTTP over the unix socket -------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's HTTP/1.1 connection, over an AF_UNIX socket."""

    def __init__(self, path, timeout=30):
        super().__init__("rota", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class ApiResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"ApiResponse({self.status}, {self.body[:300]!r})"


# ---- one rota instance ---------------------------------------------------------------------


class Rota:
    """One rota home, driven through the CLI like a user would."""

    def __init__(self, root):
        self.root = root
        self.home = os.path.join(root, "home")  # created by rota itself
        self.work = os.path.join(root, "work")  # a scratch directory for the tasks
        os.makedirs(self.work)
        self.tag = f"{os.getpid()}-{random.getrandbits(48):012x}"
        self.foreground = []  # `rota daemon run` processes started by a test

    # paths
    @property
    def socket(self):
        return os.path.join(self.home, "rota.sock")

    @property
    def store(self):
        return os.path.join(self.home, "rota.db")

    @property
    def lock(self):
        return os.path.join(self.home, "rota.lock")

    def log_path(self, task_id):
        return os.path.join(self.home, "logs", f"{task_id}.log")

    def env(self, extra=None):
        env = dict(os.environ)
        env.pop("ROTA_HOME", None)
        env["NO_COLOR"] = "1"
        env[TAG_VAR] = self.tag
        if extra:
            env.update(extra)
        return env

    # the CLI
    def run(self, *args, input=None, env=None, cwd=None, timeout=CMD_TIMEOUT):
        """Runs `rota --home HOME ARGS...`; returns the CompletedProcess (text mode)."""
        cmd = [ROTA_BIN, "--home", self.home, *map(str, args)]
        try:
            return subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                text=True,
                env=self.env(env),
                cwd=cwd or self.work,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout}s (stderr: {e.stderr!r})")

    def ok(self, *args, **kw):
        """Runs the CLI, requires exit 0, returns stdout."""
        r = self.run(*args, **kw)
        assert r.returncode == 0, (
            f"`rota {' '.join(map(str, args))}` exited {r.returncode}\n"
            f"stdout: {r.stdout!r}\nstderr: {r.stderr!r}"
        )
        return r.stdout

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, "--json", **kw))

    def add(self, *args, **kw):
        """`rota add ARGS...`: requires exit 0 and the id alone on stdout; returns the id."""
        out = self.ok("add", *args, **kw)
        assert re.fullmatch(r"\d+\n", out), f"rota add printed {out!r}, not an id alone"
        return int(out)

    def show(self, task_id):
        return self.json("show", task_id)

    def tasks(self, *filters):
        return self.json("list", *filters)

    def state(self, task_id):
        return self.show(task_id)["state"]

    def workers(self):
        return self.json("workers")

    def wait(self, *ids, timeout=CMD_TIMEOUT):
        """`rota wait IDS...` (or --all); returns the exit code."""
        return self.run("wait", *ids, timeout=timeout).returncode

    def log(self, task_id):
        return self.ok("log", task_id)

    def wait_state(self, task_id, *states, timeout=20):
        """Polls until the task is in one of `states`; returns its `show --json`."""
        states = set(states)

        def reached():
            t = self.show(task_id)
            return t if t["state"] in states else None

        def describe():
            t = self.show(task_id)
            history = [(a["attempt"], a["worker"], a["outcome"], a["error"]) for a in t["attempt_history"]]
            if len(history) > 6:
                history = history[:3] + [f"... {len(history) - 6} more ..."] + history[-3:]
            return (
                f"task {task_id} to be {'/'.join(sorted(states))} (it is {t['state']}, "
                f"attempts {t['attempts']}/{t['max_attempts']}, history {history}; "
                f"workers {[(w['id'], w['pid'], w['state'], w['task']) for w in self.workers()]})"
            )

        return wait_for(reached, timeout=timeout, message=describe)

    # the daemon
    def start(self, workers=2, extra=()):
        self.ok("daemon", "start", "--workers", workers, *extra)

    def run_foreground(self, *args):
        """Starts `rota daemon run ARGS...` in the background, as a service manager would,
        and waits until its API answers."""
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        out = open(os.path.join(self.root, "foreground.log"), "ab")
        proc = subprocess.Popen(
            [ROTA_BIN, "--home", self.home, "daemon", "run", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env(),
            start_new_session=True,
        )
        out.close()
        self.foreground.append(proc)

        def answers():
            assert proc.poll() is None, f"`rota daemon run` exited with {proc.returncode}"
            try:
                return self.api("GET", "/v1/info").status == 200
            except OSError:
                return False

        wait_for(answers, message="`rota daemon run` to answer on its socket")
        return proc

    def daemon_pid(self):
        """The pid in the home's lock file, if that process is alive and is this home's daemon."""
        try:
            pid = int(_read(self.lock).strip() or 0)
        except ValueError:
            return None
        if pid <= 0 or not pid_alive(pid):
            return None
        if self.home.encode() not in _read(f"/proc/{pid}/cmdline"):
            return None
        return pid

    def running(self):
        return self.run("daemon", "status").returncode == 0

    def stop(self, grace="1s"):
        self.ok("daemon", "stop", "--grace", grace)

    def kill9_daemon(self):
        pid = self.daemon_pid()
        assert pid, "no daemon to kill"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), message=f"daemon pid {pid} to die")
        return pid

    # the API
    def api(self, method, path, body=None, raw=None, headers=None, timeout=30):
        """One HTTP/1.1 request on the home's unix socket. `body` is sent as JSON; `raw` as is."""
        conn = UnixHTTPConnection(self.socket, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
            if data is not None:
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            res = conn.getresponse()
            return ApiResponse(res.status, dict(res.getheaders()), res.read().decode())
        finally:
            conn.close()

    # teardown
    def cleanup(self):
        if self.daemon_pid():
            try:
                subprocess.run(
                    [ROTA_BIN, "--home", self.home, "daemon", "stop", "--grace", "1s"],
                    capture_output=True,
                    env=self.env(),
                    timeout=20,
                )
            except subprocess.TimeoutExpired:
                pass
        pid = self.daemon_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        for proc in self.foreground:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        # Whatever is left that this test started: workers, tasks, their children.
        deadline = time.monotonic() + 10
        while True:
            left = tagged_procs(self.tag)
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"processes survived kill -9: {left}")
            time.sleep(0.03)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def rota_home(request):
    """A fresh rota home with no daemon yet (it is started by the test)."""
    root = tempfile.mkdtemp(prefix="rota-it-", dir="/tmp")
    r = Rota(root)
    try:
        yield r
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            # Shown under "Captured stdout teardown" of the failed test.
            for name in ("home/daemon.log", "foreground.log"):
                text = _read(os.path.join(root, name)).decode(errors="replace")
                if text:
                    print(f"---- last lines of {name} ----")
                    print("\n".join(text.splitlines()[-60:]))
        r.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def rota(rota_home):
    """A fresh home with a daemon of 2 workers started the way a user would."""
    rota_home.start(workers=2)
    return rota_home
