#!/usr/bin/env python3
"""Peer job queues on the rota benchmark "N no-op message tasks with 2 worker processes".

For each peer (BullMQ on Redis, Graphile Worker on PostgreSQL, RQ on Redis with its default forking
Worker and with SimpleWorker, and rota itself: a user pool whose workers use rota's C++ or Python
helper) this enqueues N no-op tasks the fastest batched way the peer offers, then starts 2 worker
processes and times how long they take to complete all N, polling the completion count every
--poll-ms (50 ms). Every run gets a fresh private server: a redis-server (AOF on, fsync every
second, no RDB snapshots), a new database in a private PostgreSQL 15 cluster (fsync and
synchronous_commit on, the defaults), both on 127.0.0.1 and on free ports, or a rota daemon in a
fresh ROTA_HOME (durability normal, the default), all under one temporary directory that is removed
at exit.

Standard library only. `bench/peers/install` installs the servers, RQ and the npm packages first;
the rota peers need build/rota (or $ROTA_BIN) and g++ with nlohmann/json.

    python3 bench/peers/run.py [--tasks N] [--only bullmq,graphile,rq,rq-simple,rota-cpp,rota-python]
                               [--concurrency 1,10] [--cap rq=20000] [--json FILE]
"""
import argparse
import http.client
import json
import os
import platform
import pwd
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = ("bullmq", "graphile", "rq", "rq-simple", "rota-cpp", "rota-python")
# Peers whose worker processes take --concurrency jobs at once (RQ runs one at a time per process).
CONCURRENT = ("bullmq", "graphile", "rota-cpp", "rota-python")
ROTA = os.environ.get("ROTA_BIN", os.path.join(ROOT, "build", "rota"))
CXX = os.environ.get("CXX", "g++")
PG_BIN = "/usr/lib/postgresql/15/bin"
# RQ comes from Debian's python3-rq, installed for Debian's python3 (not a pyenv or venv one).
DEBIAN_PYTHON = "/usr/bin/python3"
REDIS_SETTINGS = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
WORKERS = 2
# What each peer stores its queue in and how durable an acknowledged write is (the table's columns).
STORE = {"bullmq": "Redis 7.0", "rq": "Redis 7.0", "rq-simple": "Redis 7.0", "graphile": "PostgreSQL 15",
         "rota-cpp": "SQLite (WAL)", "rota-python": "SQLite (WAL)"}
DURABILITY = {
    "bullmq": "AOF, fsync every 1 s", "rq": "AOF, fsync every 1 s", "rq-simple": "AOF, fsync every 1 s",
    "graphile": "fsync per commit",
    "rota-cpp": "normal: synchronous=NORMAL", "rota-python": "normal: synchronous=NORMAL",
}


class BenchError(Exception):
    pass


def check_queued(peer, queued, n):
    if queued != n:
        raise BenchError(f"{peer}: {queued} tasks queued after enqueueing {n}")


def log(msg):
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Redis:
    """Just enough RESP to poll counters: one connection, commands as lists of strings."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = self.sock.makefile("rb")

    def call(self, *commands):
        out = bytearray()
        for cmd in commands:
            out += b"*%d\r\n" % len(cmd)
            for arg in cmd:
                a = str(arg).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return [self._reply() for _ in commands]

    def _reply(self):
        line = self.buf.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+",):
            return rest.decode()
        if kind == b"-":
            raise BenchError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise BenchError(f"redis: unexpected reply {line!r}")

    def close(self):
        self.sock.close()


class Pg:
    """Just enough of the PostgreSQL v3 protocol for simple queries over trust authentication."""

    def __init__(self, port, database="postgres", user="postgres"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = self.sock.makefile("rb")
        params = b"user\0%s\0database\0%s\0\0" % (user.encode(), database.encode())
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        self._until_ready()

    def _message(self):
        kind = self.buf.read(1)
        if not kind:
            raise BenchError("postgres closed the connection")
        (length,) = struct.unpack("!i", self.buf.read(4))
        return kind, self.buf.read(length - 4)

    def _until_ready(self):
        rows, error = [], None
        while True:
            kind, body = self._message()
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise BenchError("postgres asks for a password; the private cluster should trust")
            if kind == b"E":
                fields = dict((f[:1], f[1:].decode(errors="replace")) for f in body.split(b"\0") if f)
                error = fields.get(b"M", "error")
            elif kind == b"D":
                (ncols,) = struct.unpack("!h", body[:2])
                pos, row = 2, []
                for _ in range(ncols):
                    (n,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    row.append(None if n < 0 else body[pos:pos + n].decode())
                    pos += max(n, 0)
                rows.append(tuple(row))
            elif kind == b"Z":
                if error:
                    raise BenchError(f"postgres: {error}")
                return rows

    def query(self, sql):
        q = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
        return self._until_ready()

    def close(self):
        try:
            self.sock.sendall(b"X\0\0\0\4")
        finally:
            self.sock.close()


class UnixHTTP(http.client.HTTPConnection):
    """rota's HTTP API on its unix socket, $ROTA_HOME/rota.sock: one keep-alive connection."""

    def __init__(self, path):
        super().__init__("rota", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)

    def get(self, path):
        self.request("GET", path)
        reply = self.getresponse()
        data = reply.read()
        if reply.status >= 400:
            raise BenchError(f"rota: GET {path}: {reply.status} {data[:200]!r}")
        return json.loads(data)


class Bench:
    """Owns the temporary directory, the servers and the worker processes; close() ends them all."""

    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="rota-peers-")
        os.chmod(self.tmp, 0o711)  # PostgreSQL runs as another user and must reach its directory
        self.procs = []  # (Popen, name) of everything started, each in its own process group
        self.redis = None
        self.redis_dir = None
        self.pg_port = None
        self.pg_dir = None
        self.run_no = 0
        self.rota_noop = None  # the compiled rota_noop.cc, built once per run.py

    # --- processes -------------------------------------------------------------------------------
    def spawn(self, name, argv, cwd=HERE, env=None, stdout=None):
        logf = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=stdout or logf, stderr=logf, start_new_session=True)
        logf.close()
        self.procs.append((p, name))
        return p

    def end(self, p, grace=5.0):
        if p.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Whatever it forked (RQ's work horses) goes with its group.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.procs = [(q, n) for q, n in self.procs if q is not p]

    def helper(self, name, argv, env=None):
        """Runs a short-lived helper (an enqueuer), returns its JSON line."""
        out = os.path.join(self.tmp, f"{name}.out")
        with open(out, "wb") as f:
            p = self.spawn(name, argv, env=env, stdout=f)
            try:
                rc = p.wait(self.args.timeout)
            except subprocess.TimeoutExpired:
                self.end(p)
                raise BenchError(f"{name} took longer than {self.args.timeout} s")
        self.procs = [(q, n) for q, n in self.procs if q is not p]
        if rc != 0:
            raise BenchError(f"{name} exited {rc}:\n{tail(os.path.join(self.tmp, name + '.log'))}")
        with open(out) as f:
            lines = f.read().strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    # --- Redis: a fresh server for each run -----------------------------------------------------------
    def start_redis(self):
        self.stop_redis()
        self.run_no += 1
        port = free_port()
        self.redis_dir = os.path.join(self.tmp, f"redis{self.run_no}")
        os.mkdir(self.redis_dir)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", self.redis_dir,
                "--logfile", os.path.join(self.redis_dir, "redis.log"), *REDIS_SETTINGS]
        p = self.spawn(f"redis{self.run_no}", argv)
        deadline = time.monotonic() + 10
        while True:
            try:
                r = Redis(port)
                if r.call(["PING"]) == ["PONG"]:
                    break
            except OSError:
                pass
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start:\n{tail(os.path.join(self.redis_dir, 'redis.log'))}")
            time.sleep(0.05)
        self.redis = (p, port, r)
        return port, r

    def stop_redis(self):
        if self.redis:
            p, _, r = self.redis
            r.close()
            self.end(p)
            self.redis = None
            shutil.rmtree(self.redis_dir, ignore_errors=True)

    # --- PostgreSQL: one private cluster, a new database for each run ---------------------------------
    def pg_argv(self, argv):
        if os.geteuid() != 0:
            return argv
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise BenchError("running as root, PostgreSQL needs a non-root user 'postgres'")
        return ["runuser", "-u", "postgres", "--", *argv]

    def start_pg(self):
        if self.pg_port:
            return
        self.pg_dir = os.path.join(self.tmp, "pg")
        os.mkdir(self.pg_dir)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.pg_dir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.pg_dir, "data")
        subprocess.run(self.pg_argv([f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust",
                                     "-E", "UTF8", "--locale=C"]),
                       cwd=self.pg_dir, check=True, stdout=subprocess.DEVNULL)
        self.pg_port = free_port()
        conf = (f"listen_addresses = '127.0.0.1'\nport = {self.pg_port}\n"
                f"unix_socket_directories = '{self.pg_dir}'\n")
        subprocess.run(self.pg_argv(["sh", "-c", f"cat >> {data}/postgresql.conf"]), input=conf.encode(),
                       cwd=self.pg_dir, check=True)
        # pg_ctl leaves the postmaster running when it returns; stop_pg ends it.
        r = subprocess.run(self.pg_argv([f"{PG_BIN}/pg_ctl", "-D", data, "-l", f"{self.pg_dir}/log",
                                         "-w", "-t", "60", "start"]),
                           cwd=self.pg_dir, stdout=subprocess.DEVNULL, start_new_session=True)
        if r.returncode != 0:
            raise BenchError(f"postgres did not start:\n{tail(self.pg_dir + '/log')}")

    def stop_pg(self):
        if not self.pg_dir:
            return
        data = os.path.join(self.pg_dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            r = subprocess.run(self.pg_argv([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "-w",
                                             "-t", "30", "stop"]),
                               cwd=self.pg_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode != 0:
                try:
                    with open(os.path.join(data, "postmaster.pid")) as f:
                        os.kill(int(f.readline()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        self.pg_port = None
        self.pg_dir = None

    def pg_settings(self):
        pg = Pg(self.pg_port)
        try:
            names = ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
                     "shared_buffers", "max_connections")
            return {n: pg.query(f"show {n}")[0][0] for n in names}
        finally:
            pg.close()

    def close(self):
        for p, _ in list(reversed(self.procs)):
            self.end(p, grace=2.0)
        self.redis = None
        self.stop_pg()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the measurement ---------------------------------------------------------------------------------
    def measure(self, label, n, start_workers, progress, watch=None):
        """Starts the workers and polls progress() -> (done, failed) every --poll-ms until done == n.

        start_workers() returns the processes it started, which are ended at the end; a peer whose
        workers are not our children (rota's, the daemon's) returns none and passes `watch`, the
        processes that must stay alive meanwhile (the daemon).

        Returns (seconds from the workers' start until done == n was seen, seconds until the first
        completion was seen, done). The clock stops at the first poll that sees all N done, so
        `seconds` is late by at most one poll interval plus the poll's own latency."""
        poll = self.args.poll_ms / 1000
        t0 = time.perf_counter()
        workers = start_workers()
        watched = workers if watch is None else watch
        first = None
        tick = 0
        try:
            while True:
                done, failed = progress()
                now = time.perf_counter()
                if first is None and done > 0:
                    first = now - t0
                if done >= n:
                    return now - t0, first, done
                if failed:
                    raise BenchError(f"{label}: {failed} tasks failed")
                if now - t0 > self.args.timeout:
                    log(f"{label}: timed out after {now - t0:.1f} s with {done}/{n} done")
                    return now - t0, first, done
                if watched and all(w.poll() is not None for w in watched):
                    if watch is None:
                        logs = "".join(tail(os.path.join(self.tmp, f"{label}-w{i}.log")) for i in range(WORKERS))
                        raise BenchError(f"{label}: all workers exited with {done}/{n} done:\n{logs}")
                    logs = "".join(tail(os.path.join(self.tmp, f"{name}.log")) for p, name in self.procs
                                   if any(p is w for w in watch))
                    raise BenchError(f"{label}: the server exited with {done}/{n} done:\n{logs}")
                tick += 1
                time.sleep(max(0.0, t0 + tick * poll - time.perf_counter()))
        finally:
            for w in workers:
                self.end(w)

    def start_workers(self, label, argv, env=None):
        return lambda: [self.spawn(f"{label}-w{i}", argv, env=env) for i in range(WORKERS)]

    # --- the peers ----------------------------------------------------------------------------------------
    def bullmq(self, n, concurrency):
        port, r = self.start_redis()
        queue = "bench"
        node = ["node", os.path.join(HERE, "bullmq.js")]
        enq = self.helper("bullmq-enqueue", [*node, "enqueue", str(port), queue, str(n), str(self.args.batch)])
        check_queued("bullmq", r.call(["LLEN", f"bull:{queue}:wait"])[0], n)
        label = f"bullmq-c{concurrency}"
        seconds, first, done = self.measure(
            label, n, self.start_workers(label, [*node, "work", str(port), queue, str(concurrency)]),
            lambda: tuple(r.call(["ZCARD", f"bull:{queue}:completed"], ["ZCARD", f"bull:{queue}:failed"])))
        kept = r.call(["ZCARD", f"bull:{queue}:completed"])[0]
        self.stop_redis()
        return enq["seconds"], seconds, first, done, (
            f"Queue.addBulk, {self.args.batch} jobs per call; 2 processes x Worker(concurrency="
            f"{concurrency}); default job options (removeOnComplete unset: {kept} completed jobs kept); "
            f"redis-server {' '.join(repr(a) if a == '' else a for a in REDIS_SETTINGS)}")

    def graphile(self, n, concurrency):
        self.start_pg()
        self.run_no += 1
        db = f"gw{self.run_no}"
        pg = Pg(self.pg_port)
        pg.query(f"create database {db}")
        pg.close()
        url = f"postgres://postgres@127.0.0.1:{self.pg_port}/{db}"
        node = ["node", os.path.join(HERE, "graphile.js")]
        self.helper("graphile-migrate", [*node, "migrate", url])
        enq = self.helper("graphile-enqueue", [*node, "enqueue", url, str(n), str(self.args.batch)])
        pg = Pg(self.pg_port, db)
        (lo, count), = pg.query("select min(id), count(*) from graphile_worker._private_jobs")
        check_queued("graphile", int(count), n)
        lo = int(lo)
        pg.query("checkpoint")

        def progress():
            # Graphile Worker deletes a job when it succeeds, so all are done when none is left. The
            # smallest id left comes cheaply from the primary key index. Workers take jobs by
            # (priority, run_at), and run_at is the time of each add_jobs call, so batches go in id
            # order: done ~ smallest id left - first id (only the first-completion time uses this).
            rows = pg.query("select id from graphile_worker._private_jobs order by id limit 1")
            return (n if not rows else int(rows[0][0]) - lo), 0

        label = f"graphile-c{concurrency}"
        env = dict(os.environ, NO_LOG_SUCCESS="1")
        seconds, first, done = self.measure(
            label, n, self.start_workers(label, [*node, "work", url, str(concurrency)], env=env), progress)
        failed = pg.query("select count(*) from graphile_worker._private_jobs where attempts > 0 "
                          "and last_error is not null")[0][0]
        pg.close()
        if int(failed):
            raise BenchError(f"{label}: {failed} jobs failed")
        return enq["seconds"], seconds, first, done, (
            f"WorkerUtils.addJobs (graphile_worker.add_jobs), {self.args.batch} jobs per call; 2 processes "
            f"x run(concurrency={concurrency}, pollInterval 2000 ms default, LISTEN/NOTIFY); "
            f"NO_LOG_SUCCESS=1; completed jobs are deleted (Graphile Worker keeps no records); "
            f"postgres {self.pg_settings_text}")

    def rq(self, n, simple):
        port, r = self.start_redis()
        queue = "bench"
        url = f"redis://127.0.0.1:{port}/0"
        enq = self.helper("rq-enqueue", [DEBIAN_PYTHON, os.path.join(HERE, "rq_tasks.py"), url, queue, str(n),
                                         str(self.args.batch)])
        check_queued("rq", r.call(["LLEN", f"rq:queue:{queue}"])[0], n)
        rq = "/usr/bin/rq" if os.path.exists("/usr/bin/rq") else shutil.which("rq")
        worker_class = "rq.worker.SimpleWorker" if simple else "rq.worker.Worker"
        argv = [rq, "worker", "--burst", "--quiet", "--url", url, "--path", HERE, "--worker-class", worker_class,
                queue]
        label = "rq-simple" if simple else "rq"
        seconds, first, done = self.measure(
            label, n, self.start_workers(label, argv),
            lambda: tuple(r.call(["ZCARD", f"rq:finished:{queue}"], ["ZCARD", f"rq:failed:{queue}"])))
        self.stop_redis()
        return enq["seconds"], seconds, first, done, (
            f"Queue.enqueue_many on a pipeline, {self.args.batch} jobs per pipeline; 2 processes x "
            f"`rq worker --burst --quiet --worker-class {worker_class}`"
            f"{' (no fork)' if simple else ' (forks a work horse per job)'}; default result_ttl 500 s; "
            f"redis-server {' '.join(repr(a) if a == '' else a for a in REDIS_SETTINGS)}")

    # --- rota: a daemon in a fresh home for each run, a user pool of 2 workers -------------------
    def build_rota_noop(self):
        """Compiles rota_noop.cc (the C++ helper's no-op worker) into the temporary directory, once."""
        if not self.rota_noop:
            out = os.path.join(self.tmp, "rota_noop")
            argv = [CXX, "-std=c++20", "-O2", "-I", os.path.join(ROOT, "clients", "cpp"),
                    os.path.join(HERE, "rota_noop.cc"), "-o", out, "-pthread"]
            log("compiling rota_noop.cc: " + " ".join(argv))
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode != 0:
                raise BenchError(f"rota_noop.cc did not compile:\n{r.stderr[-3000:]}")
            self.rota_noop = out
        return self.rota_noop

    def rota(self, n, concurrency, lang):
        label = f"rota-{lang}-c{concurrency}"
        if lang == "cpp":
            cmd = shlex.quote(self.build_rota_noop())
        else:
            cmd = f"{shlex.quote(DEBIAN_PYTHON)} {shlex.quote(os.path.join(HERE, 'rota_noop.py'))}"
        self.run_no += 1
        home = os.path.join(self.tmp, f"rota{self.run_no}")
        os.mkdir(home, 0o700)
        env = dict(os.environ, ROTA_HOME=home)
        env.pop("ROTA_CONCURRENCY", None)

        def cli(name, *args, stdin=None):
            """Runs `rota ARGS` in this home: its output goes to NAME.out, returns (seconds, stdout)."""
            out = os.path.join(self.tmp, f"{name}.out")
            with open(out, "wb") as f:
                t0 = time.perf_counter()
                r = subprocess.run([ROTA, *args], env=env, cwd=HERE, stdin=stdin or subprocess.DEVNULL,
                                   stdout=f, stderr=subprocess.PIPE, timeout=self.args.timeout)
                seconds = time.perf_counter() - t0
            if r.returncode != 0:
                raise BenchError(f"rota {' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
            with open(out) as f:
                return seconds, f.read()

        # The daemon in the foreground, as a child of ours: its log in rota-daemonN.log, and ended
        # with SIGTERM (a graceful stop) by close() on an error or Ctrl-C.
        daemon = self.spawn(f"rota-daemon{self.run_no}", [ROTA, "daemon", "run"], env=env)
        sock = os.path.join(home, "rota.sock")
        deadline = time.monotonic() + 30
        while True:
            try:
                api = UnixHTTP(sock)
                status = api.get("/v1/status")
                break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"rota daemon did not start:\n{tail(os.path.join(self.tmp, f'rota-daemon{self.run_no}.log'))}")
            time.sleep(0.05)

        # N message tasks for the pool `bench` on the queue `bench`, one JSON payload a line, through
        # `rota add --stdin --jsonl` (which sends them 10,000 to a POST /v1/tasks). There is no pool
        # named bench yet, so they wait: adding the pool below is what starts the workers.
        jsonl = os.path.join(self.tmp, f"rota{self.run_no}.jsonl")
        with open(jsonl, "w") as f:
            f.writelines(f'{{"i":{i}}}\n' for i in range(n))
        with open(jsonl, "rb") as f:
            enq_s, ids = cli(f"rota-enqueue{self.run_no}", "add", "--pool", "bench", "--queue", "bench",
                             "--stdin", "--jsonl", stdin=f)
        os.unlink(jsonl)
        if len(ids.split()) != n:
            raise BenchError(f"{label}: rota add printed {len(ids.split())} ids for {n} tasks")
        check_queued(label, api.get("/v1/status")["tasks"]["queued"], n)

        def start_workers():
            cli(f"rota-pool{self.run_no}", "pool", "add", "bench", "--cmd", cmd, "--size", str(WORKERS),
                "--concurrency", str(concurrency), "--queues", "bench", "--cwd", HERE)
            return []

        def progress():
            t = api.get("/v1/status")["tasks"]
            return t["succeeded"], t["failed"] + t["cancelled"] + t["skipped"]

        seconds, first, done = self.measure(label, n, start_workers, progress, watch=[daemon])
        tasks = api.get("/v1/status")["tasks"]
        restarts = sum(w.get("restarts", 0) for w in api.get("/v1/workers"))
        api.close()
        if done >= n and (tasks["succeeded"] != n or any(v for k, v in tasks.items() if k != "succeeded")):
            raise BenchError(f"{label}: not every task succeeded: {tasks}")
        cli(f"rota-stop{self.run_no}", "daemon", "stop", "--grace", "2s")
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.end(daemon)
        shutil.rmtree(home, ignore_errors=True)
        helper = ("C++ helper clients/cpp/rota_worker.h (rota_noop.cc, g++ -O2)" if lang == "cpp" else
                  f"Python helper clients/python/rota_worker.py (rota_noop.py, {DEBIAN_PYTHON})")
        return enq_s, seconds, first, done, (
            f"`rota add --pool bench --queue bench --stdin --jsonl` (10,000 tasks per POST /v1/tasks; "
            f"the CLI's start-up and connect included); then `rota pool add bench --size {WORKERS} "
            f"--concurrency {concurrency} --queues bench` starts the 2 workers: {helper}; "
            f"all {tasks['succeeded']} succeeded, {restarts} worker restarts; every task and its attempt "
            f"kept in the store; `rota daemon run` with the defaults: durability normal (SQLite WAL, "
            f"synchronous=NORMAL: survives any process crash, not a power loss), plus the built-in "
            f"commands pool's {status.get('workers', '?')} idle workers")


def cpu_busy(seconds=1.0):
    """Fraction of all cores busy over `seconds`, from /proc/stat: taken before each run, while the
    bench's own servers are idle, to tell a quiet machine from one where something else runs."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle + iowait
        return sum(v[:8]) - idle, sum(v[:8])
    try:
        b0, t0 = sample()
        time.sleep(seconds)
        b1, t1 = sample()
        return (b1 - b0) / max(1, t1 - t0)
    except OSError:
        return 0.0


class OtherCpu:
    """Samples /proc twice a second in a thread and adds up the CPU time of every process that is
    not this script, its descendants or the postgres user's (the private cluster): how much the rest
    of the machine took while a peer ran. Catches all but processes shorter than a sample."""

    def __init__(self):
        import threading
        self.tick = os.sysconf("SC_CLK_TCK")
        self.me = os.getpid()
        try:
            self.pg_uid = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            self.pg_uid = None
        with open("/proc/uptime") as f:
            self.start_ticks = float(f.read().split()[0]) * self.tick
        self.seen = {}  # pid -> cpu ticks at the last sample, for other processes
        self.other = 0
        self.by_name = {}
        self.stopping = threading.Event()
        self.sample()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def sample(self):
        procs = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
                fields = rest.split()
                uid = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                continue
            # fields[0] is the state (field 3): ppid is field 4, utime/stime 14/15, starttime 22
            procs[int(pid)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]), uid,
                               head.split("(", 1)[1])
        for pid, (ppid, cpu, start, uid, comm) in procs.items():
            p, ours = pid, False
            while p > 1 and p in procs:
                if p == self.me:
                    ours = True
                    break
                p = procs[p][0]
            # Kernel threads (children of kthreadd, pid 2) are left out too: they mostly write back
            # and flush the servers' files.
            if ours or uid == self.pg_uid or pid <= 2 or ppid == 2:
                continue
            used = 0
            if pid in self.seen:
                used = max(0, cpu - self.seen[pid])
            elif start >= self.start_ticks:  # started while we watch: all its time counts
                used = cpu
            self.seen[pid] = cpu
            self.other += used
            if used:
                self.by_name[comm] = self.by_name.get(comm, 0) + used

    def loop(self):
        while not self.stopping.wait(0.5):
            self.sample()

    def stop(self):
        self.stopping.set()
        self.thread.join()
        self.sample()
        return self.other / self.tick

    def top(self, n=3):
        top = sorted(self.by_name.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {ticks / self.tick:.1f} s" for name, ticks in top) or "none"


def versions():
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    def npm(name):
        try:
            with open(os.path.join(HERE, "node_modules", name, "package.json")) as f:
                return json.load(f)["version"]
        except OSError:
            return "not installed"

    return {
        "bullmq": npm("bullmq"), "ioredis": npm("ioredis"), "graphile-worker": npm("graphile-worker"),
        "pg": npm("pg"),
        "rq": out([DEBIAN_PYTHON, "-c", "import rq, redis; print(rq.__version__, 'redis-py', redis.__version__)"]),
        "redis-server": out(["redis-server", "--version"]).split(" sha=")[0],
        "postgres": out([f"{PG_BIN}/postgres", "--version"]),
        "node": out(["node", "--version"]),
        "rota": out([ROTA, "--version"]) if os.path.exists(ROTA) else "not built",
        # rota links the system's libsqlite3, as Debian's python3 does
        "sqlite": out([DEBIAN_PYTHON, "-c", "import sqlite3; print(sqlite3.sqlite_version)"]),
        "g++": out([CXX, "-dumpfullversion"]),
        "python": out([DEBIAN_PYTHON, "-c", "import platform; print(platform.python_version())"]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100_000, help="tasks per peer (default 100000)")
    ap.add_argument("--only", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--concurrency", default="1",
                    help="jobs at once per worker process for BullMQ, Graphile Worker and rota (the pool's "
                         "--concurrency); a comma-separated list runs each (e.g. 1,10). RQ runs one job at a "
                         "time per process.")
    ap.add_argument("--cap", action="append", default=[], metavar="PEER=N",
                    help="run PEER with at most N tasks (for a peer too slow for --tasks); repeatable")
    ap.add_argument("--batch", type=int, default=1000,
                    help="tasks per enqueue call (default 1000); rota's `rota add --stdin` sends 10000 per call")
    ap.add_argument("--poll-ms", type=float, default=50, help="completion poll interval (default 50)")
    ap.add_argument("--timeout", type=float, default=900,
                    help="give up on a processing phase after this many seconds, reporting the rate so far")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="before each run, wait up to this long for the CPU to be under 15%% busy")
    ap.add_argument("--json", metavar="FILE", help="write the results as a JSON array to FILE")
    args = ap.parse_args()

    only = [p.strip() for p in args.only.split(",") if p.strip()]
    for p in only:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r} (know {', '.join(PEERS)})")
    caps = {}
    for c in args.cap:
        peer, _, n = c.partition("=")
        if peer not in PEERS or not n.isdigit():
            ap.error(f"--cap wants PEER=N, got {c!r}")
        caps[peer] = int(n)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if not os.path.isdir(os.path.join(HERE, "node_modules", "bullmq")) and {"bullmq", "graphile"} & set(only):
        sys.exit("bench/peers/run.py: run bench/peers/install first")
    if not os.access(ROTA, os.X_OK) and {"rota-cpp", "rota-python"} & set(only):
        sys.exit(f"bench/peers/run.py: no rota binary at {ROTA} (build it, or set ROTA_BIN)")

    vers = versions()
    log("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    redis_v = vers["redis-server"].removeprefix("Redis server v=") or "7.0"
    pg_v = vers["postgres"].split(") ", 1)[-1].split(" ")[0] or "15"
    store = {peer: STORE[peer].replace(" 7.0", f" {redis_v}").replace(" 15", f" {pg_v}") for peer in PEERS}
    store["rota-cpp"] = store["rota-python"] = f"SQLite {vers['sqlite']} (WAL)"

    # Ctrl-C, SIGTERM and SIGHUP end every server and worker and remove the temporary directory
    # (SIGINT explicitly too: a shell starts background jobs with it ignored).
    def on_signal(signum, _frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    bench = Bench(args)
    results = []
    try:
        runs = []
        for peer in only:
            if peer in CONCURRENT:
                runs += [(peer, c) for c in concurrencies]
            else:
                runs.append((peer, 1))
        if "rota-cpp" in only:
            bench.build_rota_noop()  # before any run, so that the compiler competes with none
        if "graphile" in only:
            bench.start_pg()
            s = bench.pg_settings()
            bench.pg_settings_text = ", ".join(f"{k}={v}" for k, v in s.items())
            log(f"postgres settings: {bench.pg_settings_text}")
        for peer, conc in runs:
            n = min(caps.get(peer, args.tasks), args.tasks)
            busy = cpu_busy()
            waited = time.monotonic()
            while busy > 0.15 and time.monotonic() - waited < args.wait_quiet:
                busy = cpu_busy()
            log(f"{peer} (concurrency {conc}): {n} tasks; CPU {busy:.0%} busy in the second before")
            if busy > 0.15:
                log("warning: something else is using the CPU; figures will be low")
            other = OtherCpu()
            if peer == "bullmq":
                enq_s, seconds, first, done, notes = bench.bullmq(n, conc)
            elif peer == "graphile":
                enq_s, seconds, first, done, notes = bench.graphile(n, conc)
            elif peer.startswith("rota-"):
                enq_s, seconds, first, done, notes = bench.rota(n, conc, peer.removeprefix("rota-"))
            else:
                enq_s, seconds, first, done, notes = bench.rq(n, peer == "rq-simple")
            other_s = other.stop()
            if done < n:
                notes = f"TIMED OUT: {done} of {n} done after {seconds:.1f} s; rate is over those. " + notes
            if n != args.tasks:
                notes = f"capped at {n} tasks (--cap). " + notes
            res = {
                "peer": peer, "store": store[peer], "durability": DURABILITY[peer], "tasks": n, "workers": WORKERS,
                "concurrency": conc if peer in CONCURRENT else 1,
                "enqueue_per_s": round(n / enq_s, 1), "process_per_s": round(done / seconds, 1),
                "seconds": round(seconds, 3), "enqueue_seconds": round(enq_s, 3),
                "first_done_seconds": None if first is None else round(first, 3),
                "poll_ms": args.poll_ms, "cpu_busy_before": round(busy, 3),
                "other_cpu_seconds": round(other_s, 2), "version": {
                    "bullmq": f"bullmq {vers['bullmq']}, ioredis {vers['ioredis']}, {vers['redis-server']}",
                    "graphile": f"graphile-worker {vers['graphile-worker']}, pg {vers['pg']}, {vers['postgres']}",
                    "rota-cpp": f"rota {vers['rota']}, SQLite {vers['sqlite']}, g++ {vers['g++']}",
                    "rota-python": f"rota {vers['rota']}, SQLite {vers['sqlite']}, Python {vers['python']}",
                }.get(peer, f"rq {vers['rq']}, {vers['redis-server']}"),
                "notes": notes,
            }
            results.append(res)
            log(f"{peer} (concurrency {conc}): enqueue {res['enqueue_per_s']}/s, "
                f"process {res['process_per_s']}/s ({res['seconds']} s); other processes took "
                f"{other_s:.1f} CPU s meanwhile ({other.top()})")
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        bench.close()
        sys.exit(130)
    except BenchError as e:
        log(f"error: {e}")
        bench.close()
        sys.exit(1)
    finally:
        bench.close()

    print(f"## Peer queues — {WORKERS} worker processes, {os.cpu_count()} cores, {platform.platform()}")
    print()
    print("| peer | worker | store | durability | tasks | enqueue tasks/s | processed tasks/s | processing s |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for r in results:
        worker = {"bullmq": f"Worker, concurrency {r['concurrency']}",
                  "graphile": f"run(), concurrency {r['concurrency']}",
                  "rq": "Worker (fork per job)", "rq-simple": "SimpleWorker (no fork)",
                  "rota-cpp": f"C++ helper, concurrency {r['concurrency']}",
                  "rota-python": f"Python helper, concurrency {r['concurrency']}"}[r["peer"]]
        timed_out = " (timed out)" if "TIMED OUT" in r["notes"] else ""
        print(f"| {r['peer']} | {worker} | {r['store']} | {r['durability']} | {r['tasks']:,} | "
              f"{r['enqueue_per_s']:,.0f} | {r['process_per_s']:,.0f}{timed_out} | {r['seconds']:.2f} |")
    print()
    print(f"Processing time runs from starting the {WORKERS} worker processes (interpreter start-up "
          f"included; for rota, `rota pool add`) until a poll sees all tasks done; polls every "
          f"{args.poll_ms:g} ms.")
    busy = [f"{r['peer']} c{r['concurrency']} ({r['other_cpu_seconds']:.1f} CPU s)" for r in results
            if r["cpu_busy_before"] > 0.15
            or r["other_cpu_seconds"] > 0.05 * (r["seconds"] + r["enqueue_seconds"])]
    if busy:
        print(f"Warning: other processes used the CPU during {', '.join(busy)}; those figures are low.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
