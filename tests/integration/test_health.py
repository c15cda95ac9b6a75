"""Health monitoring and self-healing under injected faults: dead, hung and crash-looping
workers, poison tasks, daemon crashes and restarts with reattaching workers, fencing of late
results, alerts and their hook, `rota health`, `rota doctor` and rota.toml."""

import fcntl
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import (ROTA_BIN, TIMESTAMP_RE, Rota, exact_procs, pid_alive, procs_with, sha256,
                      unique_sleep_arg, wait_for)

# Short supervision thresholds, so that a silent worker is found out within a second or so.
# dead_after is kept above a few heartbeats so that a loaded 2-core machine does not kill a
# healthy worker.
FAST = ("--heartbeat-interval", "100ms", "--unresponsive-after", "400ms", "--dead-after", "1s")

# Attempt 1 sleeps for good (in `sleep ARG`, a unique argument); every later attempt prints
# which attempt it is and succeeds.
FIRST_ATTEMPT_SLEEPS = (
    'if [ "$ROTA_ATTEMPT" = 1 ]; then exec sleep {arg}; fi; echo "attempt $ROTA_ATTEMPT"'
)


# ---- helpers -----------------------------------------------------------------------------


class Gate:
    """A file the test holds an exclusive flock on. `cmd` (`flock -s FILE true`) blocks in a
    task, costing no CPU, until `open()`; `waiting()` lists the tasks' blocked flocks."""

    def __init__(self, rota, name="gate"):
        self.path = os.path.join(rota.work, f"{name}-{random.getrandbits(32):08x}")
        self._file = open(self.path, "w")
        fcntl.flock(self._file, fcntl.LOCK_EX)
        self.cmd = f"flock -s {self.path} true"

    def waiting(self):
        return exact_procs("flock", "-s", self.path, "true")

    def open(self):
        self._file.close()


def events(rota, **match):
    """Every event (`rota events --json`), or those whose fields equal `match`."""
    out = rota.ok("events", "--json", "--last", "1000000")
    evs = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [e for e in evs if all(e.get(k) == v for k, v in match.items())]


def worker_changes(rota, worker):
    """The health changes of one worker, in order, as (from, to, detail)."""
    return [(e["from"], e["to"], e["detail"]) for e in events(rota, kind="worker", worker=worker)
            if e["from"] is not None]


def alerts(rota, kind=None):
    """The complete lines of $ROTA_HOME/alerts.log, parsed; only `kind` alerts if given."""
    try:
        with open(os.path.join(rota.home, "alerts.log")) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # a last line without its newline is still being written
    out = [json.loads(line) for line in lines]
    return [a for a in out if kind is None or a["alert"] == kind]


def duration_ms(text):
    """rota's printed durations: 250ms, 1.5s, 2m05s."""
    m = re.fullmatch(r"(\d+)ms", text)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", text)
    if m:
        return int(float(m.group(1)) * 1000)
    m = re.fullmatch(r"(\d+)m(\d+)s", text)
    if m:
        return (int(m.group(1)) * 60 + int(m.group(2))) * 1000
    raise AssertionError(f"not a rota duration: {text!r}")


def live_workers(rota):
    return [w for w in rota.workers() if w["pid"] is not None and pid_alive(w["pid"])]


def wait_pool_refilled(rota, size, gone):
    """Waits until the pool has `size` live workers again, none of them one of `gone` (ids)."""

    def refilled():
        ws = rota.workers()
        live = [w for w in ws if w["pid"] is not None and pid_alive(w["pid"])]
        ok = len(ws) == size and len(live) == size and not {w["id"] for w in ws} & set(gone)
        return ok and ws

    return wait_for(refilled, message=f"the pool to be back to {size} live workers without {gone}")


def history(task):
    return [(a["attempt"], a["outcome"]) for a in task["attempt_history"]]


def wait_idle(rota, n):
    """Waits until the pool is `n` workers, every one idle (ready for a task); returns them."""

    def idle():
        ws = rota.workers()
        return len(ws) == n and {w["state"] for w in ws} == {"idle"} and ws

    return wait_for(idle, message=f"{n} idle workers")


def resume(pid):
    """SIGCONT, if the process still exists."""
    if pid_alive(pid):
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def other_rota():
    """A second, independent home (no daemon yet), cleaned up like the first."""
    root = tempfile.mkdtemp(prefix="rota-it-", dir="/tmp")
    r = Rota(root)
    try:
        yield r
    finally:
        r.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# ---- dead workers ------------------------------------------------------------------------


def start_first_attempt(rota):
    """Adds a task whose first attempt sleeps (the retry succeeds at once), waits until that
    attempt runs, and returns (task id, the sleep's unique argument, the worker running it)."""
    arg = unique_sleep_arg()
    tid = rota.add("--retries", "1", "--backoff", "50ms", "--shell",
                   FIRST_ATTEMPT_SLEEPS.format(arg=arg))
    wait_for(lambda: exact_procs("sleep", arg), message="the task's first attempt to run")
    [victim] = [w for w in rota.workers() if w["task"] == tid]
    return tid, arg, victim


# kill -9 of the worker running a task: the task is retried and succeeds, the slot gets a new
# worker (new id, new pid), the worker's death is an event `working -> dead` and an alert
# worker_dead in alerts.log.
def test_kill9_worker_mid_task_heals(rota):
    tid, arg, victim = start_first_attempt(rota)
    os.kill(victim["pid"], signal.SIGKILL)

    assert rota.wait(tid) == 0
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    assert history(t) == [(1, "worker_lost"), (2, "succeeded")]
    assert t["attempt_history"][1]["worker"] != victim["id"]
    assert "attempt 2" in rota.log(tid)
    wait_for(lambda: not procs_with(f"sleep {arg}"), message="the lost attempt's sleep to die")

    workers = wait_pool_refilled(rota, 2, gone=[victim["id"]])
    [new] = [w for w in workers if w["slot"] == victim["slot"]]
    assert new["id"] > victim["id"] and new["pid"] != victim["pid"]

    changes = worker_changes(rota, victim["id"])
    assert any(f == "working" and to == "dead" and "signal 9" in d for f, to, d in changes), changes
    dead = [a for a in alerts(rota, "worker_dead") if a["worker"] == victim["id"]]
    assert len(dead) == 1, alerts(rota)
    assert TIMESTAMP_RE.match(dead[0]["time"]) and dead[0]["message"]


# `rota events --follow --json` streams health changes as they happen: kill -9 of a worker
# shows up as its `-> dead` event and the worker_dead alert event, without a new call.
def test_events_follow_streams_worker_death(rota):
    proc = subprocess.Popen(
        [ROTA_BIN, "--home", rota.home, "events", "--follow", "--json", "--last", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=rota.env(), bufsize=0)
    try:
        victim = rota.workers()[0]
        os.kill(victim["pid"], signal.SIGKILL)
        seen = []
        pending = b""

        def streamed():
            nonlocal pending
            fd = proc.stdout.fileno()
            while select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
            *lines, pending = pending.split(b"\n")
            seen.extend(json.loads(line) for line in lines)
            dead = [e for e in seen if e["kind"] == "worker" and e["worker"] == victim["id"]
                    and e["to"] == "dead"]
            alert = [e for e in seen if e["kind"] == "alert" and "worker_dead" in e["detail"]]
            return dead and alert

        wait_for(streamed, message=lambda: f"the follower to print the death (got {seen})")
        assert proc.poll() is None, "events --follow exited"
    finally:
        proc.kill()
        proc.wait()


# kill -9 of the daemon: its idle workers do not live on as orphans, they exit.
def test_idle_workers_exit_after_daemon_crash(rota):
    workers = wait_idle(rota, 2)
    rota.kill9_daemon()
    for w in workers:
        wait_for(lambda: not pid_alive(w["pid"]), message=f"idle worker {w['id']} to exit")


# SIGSTOP of the worker running a task: its heartbeats stop, so it goes `unresponsive` and
# then `dead`; the supervisor kills it (and its task) and refills the slot; the task runs again
# on another worker and succeeds, attempt 1 being worker_lost for "no heartbeat".
def test_sigstopped_worker_unresponsive_then_dead(rota_home):
    rota = rota_home
    rota.start(2, FAST)
    tid, arg, victim = start_first_attempt(rota)
    os.kill(victim["pid"], signal.SIGSTOP)

    def declared_dead():
        changes = [(f, to) for f, to, _ in worker_changes(rota, victim["id"])]
        return ("unresponsive", "dead") in changes and changes

    changes = wait_for(declared_dead, message=f"worker {victim['id']} to be declared dead")
    assert changes.index(("working", "unresponsive")) < changes.index(("unresponsive", "dead"))
    wait_for(lambda: not pid_alive(victim["pid"]), message="the stopped worker to be killed")
    wait_for(lambda: not procs_with(f"sleep {arg}"), message="its task's sleep to be killed")

    assert rota.wait(tid) == 0
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    assert history(t) == [(1, "worker_lost"), (2, "succeeded")]
    first, second = t["attempt_history"]
    assert "no heartbeat" in first["error"], first
    assert first["worker"] == victim["id"] and second["worker"] != victim["id"]
    wait_pool_refilled(rota, 2, gone=[victim["id"]])
    assert [a for a in alerts(rota, "worker_dead") if a["worker"] == victim["id"]]


# A worker silent past --unresponsive-after but back before --dead-after is not killed: it goes
# `unresponsive` and back to `working` ("heartbeats resumed"), keeps its pid and its task, and
# the task finishes with one attempt.
def test_unresponsive_worker_recovers_when_heartbeats_resume(rota_home):
    rota = rota_home
    rota.start(2, ("--heartbeat-interval", "100ms", "--unresponsive-after", "300ms",
                   "--dead-after", "10s"))
    gate = Gate(rota)
    tid = rota.add("--shell", f"{gate.cmd}; echo done")
    wait_for(gate.waiting, message="the task to run")
    [w] = [w for w in rota.workers() if w["task"] == tid]
    os.kill(w["pid"], signal.SIGSTOP)
    try:
        wait_for(lambda: ("working", "unresponsive") in
                 [(f, to) for f, to, _ in worker_changes(rota, w["id"])],
                 message=f"worker {w['id']} to be unresponsive")
    finally:
        resume(w["pid"])
    changes = wait_for(
        lambda: [c for c in worker_changes(rota, w["id"]) if c[:2] == ("unresponsive", "working")],
        message=f"worker {w['id']} to be working again")
    assert "heartbeats resumed" in changes[0][2], changes
    [again] = [x for x in rota.workers() if x["id"] == w["id"]]
    assert again["pid"] == w["pid"] and again["task"] == tid and again["state"] == "working"
    gate.open()
    assert rota.wait(tid) == 0
    assert history(rota.show(tid)) == [(1, "succeeded")]
    assert not [to for _, to, _ in worker_changes(rota, w["id"]) if to == "dead"]
    assert not alerts(rota, "worker_dead")


# A task handed to a worker that hung while idle (SIGSTOPped before the task reached it) is not
# lost: the worker is declared dead, the task runs on its replacement and succeeds. Cleaning up
# after the dead worker kills nothing of another rota home, even a task with the same id.
def test_task_sent_to_hung_idle_worker_retried_other_home_untouched(rota_home, other_rota):
    rota = rota_home
    other_rota.start(1)
    arg = unique_sleep_arg()
    theirs = other_rota.add("--", "sleep", arg)
    wait_for(lambda: exact_procs("sleep", arg), message="the other home's task to run")

    rota.start(1, FAST)
    [w] = wait_idle(rota, 1)
    os.kill(w["pid"], signal.SIGSTOP)
    ours = rota.add("--retries", "1", "--backoff", "50ms", "--", "echo", "ran")
    assert ours == theirs  # both homes' first task: the same id
    assert rota.wait(ours) == 0
    t = rota.show(ours)
    assert history(t) == [(1, "worker_lost"), (2, "succeeded")]
    assert "no heartbeat" in t["attempt_history"][0]["error"]
    assert t["attempt_history"][0]["worker"] == w["id"]
    wait_for(lambda: not pid_alive(w["pid"]), message="the hung worker to be killed")
    assert rota.log(ours) == "ran\n"

    other = other_rota.show(theirs)
    assert other["state"] == "running" and exact_procs("sleep", arg), (
        f"home {rota.home}'s dead worker took down task {theirs} of home {other_rota.home}: "
        f"{other['state']}, {other['error']}")


# A task that kills its own worker (`kill -9 $PPID`) on every attempt is poison: even with
# --retries 5 it fails after --poison-after attempts (3 by default) with an error starting
# "poison:", its last attempt's outcome is poison, an alert poison_task names it, and each
# attempt's worker was replaced by a new one.
@pytest.mark.parametrize("poison_after", [None, 2], ids=["default", "poison-after-2"])
def test_task_killing_its_worker_is_poison(rota_home, poison_after):
    rota = rota_home
    rota.start(2, () if poison_after is None else ("--poison-after", poison_after))
    n = poison_after or 3
    arg = unique_sleep_arg()
    tid = rota.add("--retries", "5", "--backoff", "50ms", "--shell",
                   f"kill -9 $PPID; exec sleep {arg}")
    assert rota.wait(tid) == 1
    t = rota.show(tid)
    assert t["state"] == "failed"
    assert t["attempts"] == n
    assert [o for _, o in history(t)] == ["worker_lost"] * (n - 1) + ["poison"]
    assert t["error"].startswith("poison:"), t["error"]
    killed = [a["worker"] for a in t["attempt_history"]]
    assert len(set(killed)) == n, f"the attempts did not each get a fresh worker: {killed}"
    wait_pool_refilled(rota, 2, gone=killed)
    poison = [a for a in alerts(rota, "poison_task") if a["task"] == tid]
    assert len(poison) == 1, alerts(rota)
    wait_for(lambda: not procs_with(f"sleep {arg}"), message="the poison task's sleeps to die")


# Fault injection: workers that crash before their hello are restarted at once, then after
# growing delays; past --max-restarts the slot is given up, alerts slot_given_up and
# pool_degraded are written to alerts.log, `rota health` exits 1 (degraded) and `rota doctor`
# fails. `rota restart` of the given-up slot's last worker starts the slot again.
def test_crash_looping_worker_slot_given_up(rota_home):
    rota = rota_home
    rota.ok("daemon", "start", "--workers", "1", "--max-restarts", "3", "--restart-window", "10m",
            env={"ROTA_TEST_WORKER_FAULT": "exit-at-start"})

    def given_up():
        ws = rota.workers()
        return len(ws) == 1 and ws[0]["state"] == "given-up" and ws[0]

    w = wait_for(given_up, message="the crash-looping slot to be given up")
    assert w["pid"] is None and w["slot"] == 0 and w["restarts"] == 3

    worker_evs = events(rota, kind="worker")
    died = [e["worker"] for e in worker_evs if e["to"] == "dead"]
    assert len(died) == 4 and len(set(died)) == 4, worker_evs  # the first worker + 3 restarts
    delays = []
    for e in worker_evs:
        if e["to"] == "recovering":
            m = re.search(r"restart (\d+) in (\S+)", e["detail"])
            assert m, e
            delays.append(duration_ms(m.group(2)))
    assert len(delays) == 3, worker_evs
    assert delays[0] == 0, f"the first restart is not immediate: {delays}"
    assert all(a < b for a, b in zip(delays[1:], delays[2:])) and delays[1] > 0, delays
    assert [(e["from"], e["to"]) for e in worker_evs][-1] == ("dead", "given-up")

    gave_up = alerts(rota, "slot_given_up")
    assert len(gave_up) == 1 and gave_up[0]["slot"] == 0, alerts(rota)
    assert len(alerts(rota, "pool_degraded")) == 1, alerts(rota)
    for a in alerts(rota):
        assert TIMESTAMP_RE.match(a["time"]) and a["message"], a

    r = rota.run("health")
    assert r.returncode == 1, r
    assert "degraded" in r.stdout.splitlines()[0], r.stdout
    r = rota.run("health", "--json")
    assert r.returncode == 1, r
    h = json.loads(r.stdout)
    assert h["status"] == "degraded" and h["pool"]["state"] == "degraded"
    r = rota.run("doctor")
    assert r.returncode != 0, r
    assert any(line.startswith("✗") and "given-up" in line
               for line in r.stdout.splitlines()), r.stdout

    # A hand restart clears the slot's history: new workers are started (and crash again).
    rota.ok("restart", w["id"])
    again = wait_for(given_up, message="the restarted slot to be given up again")
    assert again["id"] > w["id"]
    assert len([e for e in events(rota, kind="worker") if e["to"] == "dead"]) == 8


# ---- workers outliving the daemon --------------------------------------------------------


def _twenty_tasks_survive(rota, restart_daemon):
    n = 20
    rota.start(n)
    gate = Gate(rota)
    runs = os.path.join(rota.work, "runs")
    line = f'{gate.cmd} && echo "$ROTA_TASK_ID $ROTA_ATTEMPT" >> {runs}\n'
    ids = [int(x) for x in rota.ok("add", "--stdin", "--retries", "2", "--backoff", "50ms",
                                   input=line * n).split()]
    assert len(ids) == n
    wait_for(lambda: len(gate.waiting()) == n, message=f"the {n} tasks to be blocked on the gate")
    before = {w["id"]: (w["pid"], w["task"]) for w in rota.workers()}
    assert sorted(task for _, task in before.values()) == sorted(ids)
    old_daemon = rota.daemon_pid()

    restart_daemon()
    assert rota.daemon_pid() not in (None, old_daemon)

    def reattached():
        ws = rota.workers()
        now = {w["id"]: (w["pid"], w["task"]) for w in ws if w["state"] == "working"}
        return now == before and ws

    wait_for(reattached, message="every worker to reattach with its task")
    assert len(gate.waiting()) == n
    gate.open()
    assert rota.wait("--all") == 0
    for tid in ids:
        t = rota.show(tid)
        assert t["state"] == "succeeded" and t["attempts"] == 1, (tid, history(t))
        assert history(t) == [(1, "succeeded")]
    with open(runs) as f:
        ran = sorted(tuple(map(int, line.split())) for line in f)
    assert ran == [(tid, 1) for tid in sorted(ids)], "a task did not run exactly once"
    back = events(rota, kind="worker", detail="reattached after a daemon restart")
    assert sorted(e["worker"] for e in back) == sorted(before)
    assert not [e for e in events(rota) if "refused" in e["detail"]]


# kill -9 of the daemon while 20 tasks run: the workers keep their tasks, reattach to the
# restarted daemon with the same pids, and all 20 tasks finish exactly once with one attempt.
def test_kill9_daemon_20_running_tasks_reattach(rota_home):
    def crash_and_start():
        workers = rota_home.workers()
        rota_home.kill9_daemon()
        assert all(pid_alive(w["pid"]) for w in workers)
        rota_home.start(20)

    _twenty_tasks_survive(rota_home, crash_and_start)


# `rota daemon restart` detaches the workers: the 20 running tasks go on, their workers
# reattach to the new daemon, and every task finishes exactly once with one attempt.
def test_daemon_restart_20_running_tasks_reattach(rota_home):
    _twenty_tasks_survive(rota_home, lambda: rota_home.ok("daemon", "restart", "--workers", 20))


# kill -9 of the daemon, then of one of the two busy workers: after --reattach-grace, the task
# of the worker that did not come back is daemon_lost and runs again (and its lost attempt's
# process does not run on unsupervised); the other worker reattached and its task finishes
# with one attempt.
def test_worker_not_back_after_daemon_crash_is_daemon_lost(rota_home):
    rota = rota_home
    rota.start(2)
    arg = unique_sleep_arg()
    gate = Gate(rota)
    lost = rota.add("--retries", "1", "--backoff", "50ms", "--shell",
                    FIRST_ATTEMPT_SLEEPS.format(arg=arg))
    kept = rota.add("--shell", f"{gate.cmd}; echo kept")
    wait_for(lambda: exact_procs("sleep", arg) and gate.waiting(), message="both tasks to run")
    by_task = {w["task"]: w for w in rota.workers()}
    rota.kill9_daemon()
    os.kill(by_task[lost]["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(by_task[lost]["pid"]), message="the worker to die")

    rota.start(2, ("--reattach-grace", "500ms"))
    assert rota.wait(lost) == 0
    t = rota.show(lost)
    assert history(t) == [(1, "daemon_lost"), (2, "succeeded")]
    assert t["attempt_history"][0]["error"].startswith("daemon_lost"), t["attempt_history"][0]
    assert t["attempt_history"][1]["worker"] != by_task[lost]["id"]
    assert "attempt 2" in rota.log(lost)

    assert rota.state(kept) == "running"
    [w] = [w for w in rota.workers() if w["task"] == kept]
    assert (w["id"], w["pid"]) == (by_task[kept]["id"], by_task[kept]["pid"])
    gate.open()
    assert rota.wait(kept) == 0
    assert history(rota.show(kept)) == [(1, "succeeded")]
    assert rota.log(kept) == "kept\n"

    # No unsupervised tasks: the attempt given up as daemon_lost does not run on beside its
    # retry.
    wait_for(lambda: not procs_with(f"sleep {arg}"), timeout=5,
             message=lambda: f"the daemon_lost attempt's `sleep {arg}` to be killed "
                             f"(alive: {procs_with(f'sleep {arg}')})")


# Fencing: the daemon is killed, a busy worker is SIGSTOPped so it cannot reattach in time,
# its task is declared daemon_lost and succeeds on another worker; then the stopped worker
# resumes with the (failed) result of the given-up attempt: its reattach is refused, the late
# result is rejected as an event of kind "rejected", and the task keeps the new attempt's
# result, exactly two attempts, and the new attempt's log.
def test_late_result_of_given_up_attempt_is_rejected(rota_home):
    rota = rota_home
    rota.start(2)
    gate = Gate(rota)
    marker = f"late-{random.getrandbits(32):08x}"
    tid = rota.add("--retries", "1", "--backoff", "50ms", "--shell",
                   f'if [ "$ROTA_ATTEMPT" = 1 ]; then : {marker}; {gate.cmd}; echo late; exit 7; '
                   'fi; echo "attempt $ROTA_ATTEMPT"')
    wait_for(gate.waiting, message="attempt 1 to run")
    [stale] = [w for w in rota.workers() if w["task"] == tid]
    rota.kill9_daemon()
    os.kill(stale["pid"], signal.SIGSTOP)
    try:
        rota.start(2, ("--reattach-grace", "500ms"))
        assert rota.wait(tid) == 0
        t = rota.show(tid)
        assert history(t) == [(1, "daemon_lost"), (2, "succeeded")]
        assert t["attempt_history"][1]["worker"] != stale["id"]
        # Attempt 1 now ends (exit 7) while its worker is stopped; the worker holds the result.
        gate.open()
        wait_for(lambda: not procs_with(marker), message="attempt 1's shell to exit")
    finally:
        resume(stale["pid"])

    refused = wait_for(
        lambda: [e for e in events(rota, kind="worker", worker=stale["id"])
                 if "reattach refused" in e["detail"]],
        message=f"worker {stale['id']}'s reattach to be refused")
    assert refused[0]["task"] == tid
    rejected = wait_for(lambda: events(rota, kind="rejected", task=tid),
                        message="the late result to be rejected")
    assert all(e["worker"] == stale["id"] for e in rejected), rejected
    wait_for(lambda: not pid_alive(stale["pid"]), message="the refused worker to leave")

    t = rota.show(tid)
    assert t["state"] == "succeeded" and t["exit_code"] == 0 and t["error"] is None, t
    assert t["attempts"] == 2
    assert history(t) == [(1, "daemon_lost"), (2, "succeeded")]
    assert t["attempt_history"][1]["exit_code"] == 0
    assert {w["id"] for w in rota.workers()}.isdisjoint({stale["id"]})
    assert len(live_workers(rota)) == 2
    # Nor does the given-up attempt's output end up in the log of the task it no longer runs.
    assert rota.log(tid) == "attempt 2\n", "the given-up attempt wrote to the task's log"


# ---- alerts ------------------------------------------------------------------------------


# --alert-command gets every alert as one JSON line on its stdin: after kill -9 of a worker, the
# hook has received the same worker_dead and worker_restarted alerts as alerts.log.
def test_alert_hook_receives_alerts(rota_home):
    rota = rota_home
    out = os.path.join(rota.work, "hook.out")
    rota.start(2, ("--alert-command", f"cat >> {out}"))
    victim = rota.workers()[0]
    os.kill(victim["pid"], signal.SIGKILL)

    def hooked():
        try:
            with open(out) as f:
                got = [json.loads(line) for line in f.read().split("\n")[:-1]]
        except FileNotFoundError:
            return None
        kinds = {a["alert"] for a in got if a.get("worker") == victim["id"]}
        return {"worker_dead", "worker_restarted"} <= kinds and got

    got = wait_for(hooked, message="the hook to receive worker_dead and worker_restarted")
    logged = alerts(rota)
    for a in got:
        assert a in logged, f"the hook got an alert that is not in alerts.log: {a}"
    assert not [e for e in events(rota, kind="alert_hook")], events(rota, kind="alert_hook")


# A hook that hangs (`sleep`) stalls nothing: alerts keep being appended to alerts.log, hooks
# beyond the limit are skipped (an alert_hook event), tasks keep running to completion, and
# `rota health` answers healthy.
def test_hanging_alert_hook_stalls_nothing(rota_home):
    rota = rota_home
    arg = unique_sleep_arg()
    rota.start(2, ("--alert-command", f"exec sleep {arg}"))
    killed = []
    for _ in range(3):  # 2 alerts each (worker_dead, worker_restarted): more hooks than allowed
        victim = live_workers(rota)[0]
        os.kill(victim["pid"], signal.SIGKILL)
        killed.append(victim["id"])
        wait_pool_refilled(rota, 2, gone=killed)
    wait_for(lambda: [a for a in alerts(rota, "worker_dead") if a["worker"] == killed[-1]],
             message="the last worker_dead alert in alerts.log")
    assert sorted(a["worker"] for a in alerts(rota, "worker_dead")) == sorted(killed)
    assert exact_procs("sleep", arg), "the hanging hooks are not running"
    skipped = wait_for(lambda: events(rota, kind="alert_hook"), message="an alert_hook event")
    assert "skipped" in skipped[0]["detail"], skipped

    ids = [int(x) for x in rota.ok("add", "--stdin", input="echo ok\n" * 20).split()]
    assert rota.wait("--all") == 0
    assert {rota.state(i) for i in ids} == {"succeeded"}
    r = rota.run("health", "--json", timeout=10)
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["status"] == "healthy"


# With --stall-after 500ms, a queue whose ready task cannot start (the only worker is busy
# with a task blocked on a gate) raises the alert queue_stalled; once the gate opens both
# tasks run.
def test_queue_stalled_alert(rota_home):
    rota = rota_home
    rota.start(1, ("--stall-after", "500ms"))
    gate = Gate(rota)
    busy = rota.add("--shell", gate.cmd)
    wait_for(gate.waiting, message="the busy task to run")
    ready = rota.add("--", "true")
    stalled = wait_for(lambda: alerts(rota, "queue_stalled"), message="a queue_stalled alert")
    assert stalled[0]["ready"] == 1, stalled
    health = rota.run("health", "--json")
    assert "queue_stalled" in {a["alert"] for a in json.loads(health.stdout)["alerts_last_hour"]}
    gate.open()
    assert rota.wait(busy, ready) == 0


# ---- worker states and hand restarts -------------------------------------------------------


# A task running longer than its --slow-after makes its worker `slow` (an event says so), and
# the worker is idle again once the task is done.
def test_slow_task_makes_worker_slow(rota):
    gate = Gate(rota)
    tid = rota.add("--slow-after", "200ms", "--shell", gate.cmd)

    def slow():
        return [w for w in rota.workers() if w["task"] == tid and w["state"] == "slow"]

    [w] = wait_for(slow, message="the task's worker to be slow")
    changes = worker_changes(rota, w["id"])
    assert any(f == "working" and to == "slow" and f"task {tid}" in d
               for f, to, d in changes), changes
    gate.open()
    assert rota.wait(tid) == 0
    wait_for(lambda: [x for x in rota.workers() if x["id"] == w["id"] and x["state"] == "idle"],
             message="the worker to be idle again")


# `rota restart WORKER` replaces the worker: a new id and pid in the same slot, the old
# process gone; an unknown worker id is an error (exit 1).
def test_restart_worker_by_hand(rota):
    old = rota.workers()[0]
    rota.ok("restart", old["id"])
    wait_for(lambda: not pid_alive(old["pid"]), message="the old worker to exit")

    def replaced():
        ws = [w for w in live_workers(rota) if w["slot"] == old["slot"] and w["state"] == "idle"]
        return ws and ws[0]["id"] != old["id"] and ws[0]

    new = wait_for(replaced, message=f"a new worker in slot {old['slot']}")
    assert new["pid"] != old["pid"] and new["id"] > old["id"]
    assert len(live_workers(rota)) == 2
    changes = worker_changes(rota, old["id"])
    assert any(to == "dead" and "by hand" in d for _, to, d in changes), changes

    r = rota.run("restart", "999999")
    assert r.returncode == 1, r
    assert "999999" in r.stderr
    tid = rota.add("--", "echo", "after restart")
    assert rota.wait(tid) == 0


# ---- doctor --------------------------------------------------------------------------------


# `rota doctor` with the daemon stopped says so on a ✗ line and exits non-zero; its other
# checks (such as the store's integrity) still run and pass.
def test_doctor_daemon_down(rota):
    tid = rota.add("--", "true")
    assert rota.wait(tid) == 0
    rota.stop()
    r = rota.run("doctor")
    assert r.returncode != 0, r
    lines = r.stdout.splitlines()
    assert any(line.startswith("✗") and "daemon" in line and rota.socket in line
               for line in lines), r.stdout
    assert any(line.startswith("✓") and "integrity" in line for line in lines), r.stdout
    r = rota.run("doctor", "--json")
    assert r.returncode != 0, r
    checks = json.loads(r.stdout)
    [daemon] = [c for c in checks if "daemon answers" in c["check"]]
    assert daemon["ok"] is False and daemon["fix"]
    assert not rota.running()


# `rota doctor` on a corrupt store (daemon stopped, garbage written over its pages) reports the
# store's failure on a ✗ line naming the file, exits non-zero, and leaves the file's bytes as
# they were.
def test_doctor_corrupt_store_untouched(rota):
    rota.ok("queue", "pause", "default")  # the tasks only fill the store
    rota.ok("add", "--stdin", "--label", "pad=" + "y" * 100,
            input="".join(f"echo {'x' * 200} {i}\n" for i in range(300)))
    rota.stop()
    assert os.path.getsize(rota.store) > 64 * 1024
    size = os.path.getsize(rota.store)
    with open(rota.store, "r+b") as f:
        f.seek(size // 4)
        f.write(os.urandom(size // 2))
    digest = sha256(rota.store)
    wal = rota.store + "-wal"
    wal_digest = sha256(wal) if os.path.exists(wal) else None

    r = rota.run("doctor")
    assert r.returncode != 0, r
    bad = [line for line in r.stdout.splitlines() if line.startswith("✗") and rota.store in line]
    assert bad, r.stdout
    assert "integrity check" in bad[0] or "cannot be read" in bad[0], bad[0]
    assert sha256(rota.store) == digest and os.path.getsize(rota.store) == size
    r = rota.run("doctor", "--json")
    assert r.returncode != 0, r
    assert [c for c in json.loads(r.stdout) if not c["ok"] and rota.store in c["check"]], r.stdout
    assert sha256(rota.store) == digest
    if wal_digest:
        assert sha256(wal) == wal_digest
    else:  # SQLite may leave an empty -wal beside a store it only read
        assert not os.path.exists(wal) or os.path.getsize(wal) == 0


# ---- rota.toml -----------------------------------------------------------------------------


def _write_toml(rota, text):
    os.makedirs(rota.home, mode=0o700, exist_ok=True)
    with open(os.path.join(rota.home, "rota.toml"), "w") as f:
        f.write(text)


# An unknown key or a bad value in rota.toml: `rota daemon start` exits 2 with one line on
# stderr that names the file and the key, and no daemon runs.
@pytest.mark.parametrize("text, key", [
    ('heartbeat_interval = "100ms"\nno_such_key = "1s"\n', "no_such_key"),
    ('dead_after = "soon"\n', "dead_after"),
], ids=["unknown-key", "bad-value"])
def test_rota_toml_errors_fail_start(rota_home, text, key):
    rota = rota_home
    _write_toml(rota, text)
    r = rota.run("daemon", "start", "--workers", "1")
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and key in lines[0], r.stderr
    assert os.path.join(rota.home, "rota.toml") in lines[0], r.stderr
    assert rota.daemon_pid() is None and not rota.running()


def _stop_one_worker_until_dead(rota):
    """SIGSTOPs a live worker; returns how long it was silent when declared dead."""
    victim = live_workers(rota)[0]
    os.kill(victim["pid"], signal.SIGSTOP)
    try:
        def dead():
            return [d for _, to, d in worker_changes(rota, victim["id"]) if to == "dead"]

        [detail] = wait_for(dead, message=f"the stopped worker {victim['id']} to be declared dead")
    finally:
        resume(victim["pid"])
    wait_for(lambda: not pid_alive(victim["pid"]), message="the stopped worker to be killed")
    m = re.search(r"no heartbeat for (\S+)", detail)
    assert m, detail
    return duration_ms(m.group(1))


# rota.toml is read at start: its workers, heartbeat_interval, unresponsive_after and
# dead_after are used (a stopped worker is declared dead after about 1 s of silence, not the
# default 15 s); a flag overrides the file (--dead-after 1s over dead_after = "1m").
def test_rota_toml_honoured_and_flag_overrides(rota_home):
    rota = rota_home
    _write_toml(rota, 'workers = 1\nheartbeat_interval = "100ms"\n'
                      'unresponsive_after = "400ms"\ndead_after = "1s"\n')
    rota.ok("daemon", "start")
    assert len(rota.workers()) == 1
    silent = _stop_one_worker_until_dead(rota)
    assert 1000 <= silent < 15_000, f"declared dead after {silent} ms of silence"
    rota.stop()

    _write_toml(rota, 'workers = 1\nheartbeat_interval = "100ms"\n'
                      'unresponsive_after = "400ms"\ndead_after = "1m"\n')
    rota.ok("daemon", "start", "--dead-after", "1s")
    silent = _stop_one_worker_until_dead(rota)
    assert 1000 <= silent < 60_000, f"declared dead after {silent} ms of silence"
