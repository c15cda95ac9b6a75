"""Real pools built on each worker helper (clients/python/rota_worker.py,
clients/node/rota-worker.js, clients/cpp/rota_worker.h), against a real daemon, driven through
the CLI: results, retries, Permanent, a hung worker, a crashing payload, and scaling.

Every test runs once per language. The workers are tests/integration/workers/helper_worker.py,
helper-worker.js and helper_worker.cc, which do the same for the same payload["op"]; the C++
one is compiled here, in the background while the Python and Node tests run (the language is a
module-scoped parameter, so pytest runs all the tests of one language before the next).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from conftest import REPO, pid_alive, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "workers")
CPP_SOURCE = os.path.join(WORKERS, "helper_worker.cc")
LANGS = ["python", "node", "cpp"]
POOL = "helped"

# The daemon's health settings for the test of a hung worker: heartbeats every 100 ms, dead
# after a second of silence.
FAST_HEALTH = ("--heartbeat-interval", "100ms", "--unresponsive-after", "400ms",
               "--dead-after", "1s")
POISON_AFTER = 2  # not the default (3), to show that the setting is what counts


# ---- the workers -----------------------------------------------------------------------------


def _uses_cpp(session):
    return any(getattr(item, "callspec", None) and item.callspec.params.get("lang") == "cpp"
               for item in session.items)


@pytest.fixture(scope="session", autouse=True)
def cpp_build(request, tmp_path_factory):
    """Starts compiling helper_worker.cc before the first test of this file (if a C++ test is
    selected), so that the compiler runs while the other languages' tests do."""
    if not _uses_cpp(request.session):
        yield None
        return
    out = str(tmp_path_factory.mktemp("helper-worker-cc") / "helper_worker")
    cmd = ["g++", "-std=c++20", "-O1", "-I", os.path.join(REPO, "clients", "cpp"), CPP_SOURCE,
           "-o", out, "-pthread"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    build = {"proc": proc, "out": out, "cmd": cmd}
    yield build
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def _cpp_worker(build):
    proc = build["proc"]
    try:
        output, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(build['cmd'])}` did not finish within 600s")
    assert proc.returncode == 0, f"`{' '.join(build['cmd'])}` failed:\n{output}"
    return shlex.quote(build["out"])


@pytest.fixture(scope="module", params=LANGS)
def lang(request, cpp_build):
    """(language, the pool's --cmd) for a worker built on that language's helper."""
    if request.param == "python":
        cmd = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(WORKERS, 'helper_worker.py'))}"
    elif request.param == "node":
        node = shutil.which("node")
        assert node, "node is not on PATH: the Node helper cannot be tested"
        cmd = f"{shlex.quote(node)} {shlex.quote(os.path.join(WORKERS, 'helper-worker.js'))}"
    else:
        cmd = _cpp_worker(cpp_build)
    return request.param, cmd


@pytest.fixture(autouse=True)
def worker_logs_on_failure(request, rota_home):
    """Prints the end of every pool worker's log (the program's stderr) after a failed test."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    logs = os.path.join(rota_home.home, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        if name.startswith(f"pool-{POOL}-"):
            with open(os.path.join(logs, name), errors="replace") as f:
                print(f"---- last lines of logs/{name} ----")
                print("".join(f.readlines()[-30:]))


# ---- helpers ---------------------------------------------------------------------------------


def start(rota, lang, *pool_args, daemon=()):
    """Starts the daemon (one command worker: none of these tests uses it) and adds the pool;
    returns the path of the pool's run log (one line per handler call)."""
    rota.start(workers=1, extra=daemon)
    run_log = os.path.join(rota.root, "runs.log")
    rota.json("pool", "add", POOL, "--cmd", lang[1], "--env", f"RUN_LOG={run_log}", *pool_args)
    return run_log


def add(rota, payload, *args):
    return rota.add("--pool", POOL, "--json", json.dumps(payload), *args)


def runs(run_log):
    """The handler calls so far, as (task, attempt, pid, op)."""
    if not os.path.exists(run_log):
        return []
    with open(run_log) as f:
        return [(int(t), int(a), int(p), op) for t, a, p, op in (line.split() for line in f)]


def pool_workers(rota):
    return [w for w in rota.workers() if w["pool"] == POOL]


def ready_workers(rota, n):
    """Waits until the pool has exactly `n` workers past their hello; returns them."""
    def ready():
        ws = [w for w in pool_workers(rota) if w["state"] in ("idle", "working")]
        return ws if len(ws) == n else None
    return wait_for(ready, message=lambda: f"{n} ready workers in pool {POOL}: {pool_workers(rota)}")


def history(task):
    return [(a["attempt"], a["outcome"]) for a in task["attempt_history"]]


def events(rota):
    out = rota.ok("events", "--json", "--last", "10000")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---- the tests -------------------------------------------------------------------------------


# What a handler returns is the task's result: kept in the store, printed by `rota result`,
# shown by `rota show --json` and listed by `rota results --pool`; a handler that returns
# nothing succeeds without a result.
def test_results_are_stored_and_shown(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang, "--size", "2")
    pids = {w["pid"] for w in ready_workers(rota, 2)}
    values = [{"nested": {"list": [1, "two", None, 3.5], "flag": True}}, "žluťoučký kůň ✓", 42,
              [1, [2, [3]]], None]
    ids = [add(rota, {"op": "echo", "value": v}) for v in values]
    empty = add(rota, {"op": "none"})
    assert rota.wait(*ids, empty) == 0
    for task_id, value in zip(ids, values):
        printed = json.loads(rota.ok("result", task_id))
        assert printed["pid"] in pids, (printed, pids)
        assert printed == {"value": value, "task": task_id, "attempt": 1, "pid": printed["pid"]}
        t = rota.show(task_id)
        assert (t["state"], t["pool"], t["attempts"], t["result"]) == (
            "succeeded", POOL, 1, printed)
        assert t["payload"] == {"op": "echo", "value": value}
    t = rota.show(empty)
    assert (t["state"], t["result"]) == ("succeeded", None)
    r = rota.run("result", empty)
    assert r.returncode != 0 and "has no result" in r.stderr, r
    rows = [json.loads(line) for line in rota.ok("results", "--pool", POOL).splitlines()]
    by_task = {row["task"]: row["result"] for row in rows}
    assert [by_task[i]["value"] for i in ids] == values
    # Each ran once, and the pool's workers are the ones that were ready (none restarted).
    assert sorted(t for t, _, _, _ in runs(run_log)) == ids + [empty]
    assert {w["pid"] for w in pool_workers(rota)} == pids


# An exception in a handler is a retryable failure: the task runs again while --retries
# allow (each attempt and its error in `rota show --json`), succeeds once the handler does, and
# fails when the attempts are used up; without --retries it fails after one attempt.
def test_an_exception_is_retried_per_retries(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang)
    recovers = add(rota, {"op": "fail_until", "n": 2}, "--retries", "3", "--backoff", "10ms")
    exhausted = add(rota, {"op": "fail_until", "n": 99}, "--retries", "2", "--backoff", "10ms")
    once = add(rota, {"op": "fail_until", "n": 99})
    assert rota.wait(recovers) == 0
    assert rota.wait(exhausted, once) == 1

    t = rota.show(recovers)
    assert (t["state"], t["attempts"], t["max_attempts"]) == ("succeeded", 3, 4)
    assert history(t) == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    errors = [a["error"] or "" for a in t["attempt_history"]]
    assert errors[0].endswith("attempt 1 fails") and errors[1].endswith("attempt 2 fails"), errors
    assert t["result"]["attempt"] == 3 and t["error"] is None

    t = rota.show(exhausted)
    assert (t["state"], t["attempts"], t["max_attempts"]) == ("failed", 3, 3)
    assert history(t) == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert t["error"].endswith("attempt 3 fails"), t["error"]

    t = rota.show(once)
    assert (t["state"], t["attempts"], t["max_attempts"]) == ("failed", 1, 1)
    assert t["error"].endswith("attempt 1 fails"), t["error"]

    # The handler saw exactly those attempts, in order, and its worker survived them all.
    calls = runs(run_log)
    for task_id, attempts in ((recovers, 3), (exhausted, 3), (once, 1)):
        assert [a for t, a, _, _ in calls if t == task_id] == list(range(1, attempts + 1))
    assert len({p for _, _, p, _ in calls}) == 1
    assert [w["restarts"] for w in pool_workers(rota)] == [0]


# The helper's Permanent fails the task at once, with its message as the error and one
# attempt, whatever --retries say; the worker stays and takes the next task.
def test_permanent_fails_at_once(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang)
    worker = ready_workers(rota, 1)[0]
    task = add(rota, {"op": "permanent", "message": "bad input"}, "--retries", "5",
               "--backoff", "10ms")
    assert rota.wait(task) == 1
    t = rota.show(task)
    assert (t["state"], t["attempts"], t["max_attempts"], t["error"]) == ("failed", 1, 6, "bad input")
    assert history(t) == [(1, "failed")]
    assert t["attempt_history"][0]["error"] == "bad input"
    after = add(rota, {"op": "echo", "value": "next"})
    assert rota.wait(after) == 0
    assert rota.show(after)["result"]["pid"] == worker["pid"]
    assert [(t, a) for t, a, _, _ in runs(run_log)] == [(task, 1), (after, 1)]
    assert [(w["id"], w["restarts"]) for w in pool_workers(rota)] == [(worker["id"], 0)]


# A worker whose process stops in the middle of a task (the handler SIGSTOPs its own process,
# so the helper's heartbeat thread or timer stops too) goes unresponsive, then dead: it is
# killed, the attempt ends as worker_lost, and the task runs again on another worker, where it
# succeeds.
def test_a_hung_worker_is_declared_dead_and_its_task_runs_again(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang, "--size", "2", daemon=FAST_HEALTH)
    ready_workers(rota, 2)
    task = add(rota, {"op": "stop"}, "--retries", "1", "--backoff", "10ms")
    t = rota.wait_state(task, "succeeded", "failed", timeout=30)
    assert (t["state"], t["attempts"]) == ("succeeded", 2), history(t)
    first, second = t["attempt_history"]
    assert first["outcome"] == "worker_lost" and "no heartbeat" in first["error"], first
    assert second["outcome"] == "succeeded" and second["worker"] != first["worker"]
    (_, _, stopped_pid, _), (_, _, rerun_pid, _) = runs(run_log)
    assert t["result"] == {"value": None, "task": task, "attempt": 2, "pid": rerun_pid}
    assert rerun_pid != stopped_pid
    wait_for(lambda: not pid_alive(stopped_pid), message="the stopped worker to be killed")
    # Its health went the documented way, for want of heartbeats.
    went = [e["to"] for e in events(rota) if e["kind"] == "worker" and e["worker"] == first["worker"]]
    assert "unresponsive" in went and "dead" in went, went
    assert went.index("unresponsive") < went.index("dead"), went
    ready_workers(rota, 2)


# A payload whose handler kills its worker process (os._exit, process.exit, std::_Exit) costs
# an attempt each time (worker_lost), and after poison_after such deaths the task fails as
# poison with attempts left; the other tasks succeed and the pool refills its slots.
def test_a_payload_that_crashes_its_worker_is_poison(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang, "--size", "2", daemon=("--poison-after", POISON_AFTER))
    ready_workers(rota, 2)
    poison = add(rota, {"op": "crash"}, "--retries", "10", "--backoff", "10ms")
    fine = [add(rota, {"op": "echo", "value": i}) for i in range(4)]
    t = rota.wait_state(poison, "succeeded", "failed", timeout=30)
    assert (t["state"], t["attempts"], t["max_attempts"]) == ("failed", POISON_AFTER, 11)
    assert history(t) == [(a, "worker_lost") for a in range(1, POISON_AFTER)] + [
        (POISON_AFTER, "poison")]
    assert t["error"].startswith("poison"), t["error"]
    assert rota.wait(*fine) == 0
    assert [rota.show(i)["result"]["value"] for i in fine] == list(range(4))
    # Each attempt ran in a worker of its own, which it killed.
    crashed = [(a, p) for task, a, p, _ in runs(run_log) if task == poison]
    assert [a for a, _ in crashed] == list(range(1, POISON_AFTER + 1))
    assert len({p for _, p in crashed}) == POISON_AFTER
    wait_for(lambda: not any(pid_alive(p) for _, p in crashed), message="the crashed workers to be gone")
    ready = ready_workers(rota, 2)
    assert not {w["pid"] for w in ready} & {p for _, p in crashed}
    assert sum(w["restarts"] for w in ready) == POISON_AFTER
    assert any(e["kind"] == "alert" and "poison" in e["detail"] for e in events(rota))


# A crash with several tasks in flight cannot be pinned on one of them: each task in flight
# loses that attempt as `worker_lost_shared`, which does not count towards poison, and from
# then on runs alone (its worker is sent nothing beside it). So the crashing task's next crashes
# are its own and it becomes poison after poison_after of them, with retries left, while the
# task that only shared its worker succeeds. Tasks held back to run alone and lost with their
# worker before they were sent are handed back (`interrupted`), not charged.
def test_a_crash_beside_other_tasks_is_pinned_on_its_task_by_running_each_alone(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang, "--size", "1", "--concurrency", "2",
                    daemon=("--poison-after", POISON_AFTER))
    ready_workers(rota, 1)
    gate = os.path.join(rota.root, "gate")
    bystander = add(rota, {"op": "gate", "gate": gate}, "--retries", "10", "--backoff", "10ms")
    wait_for(lambda: rota.show(bystander)["state"] == "running", message="the bystander to run")
    crasher = add(rota, {"op": "crash"}, "--retries", "10", "--backoff", "10ms")
    wait_for(lambda: history(rota.show(bystander))[:1] == [(1, "worker_lost_shared")],
             message=lambda: f"the shared crash: {history(rota.show(bystander))}")
    with open(gate, "w") as f:
        f.write("open")
    t = rota.wait_state(crasher, "succeeded", "failed", timeout=30)
    charged = [o for _, o in history(t) if o != "interrupted"]
    assert charged == ["worker_lost_shared"] + ["worker_lost"] * (POISON_AFTER - 1) + ["poison"], \
        history(t)
    assert t["error"].startswith("poison") and t["max_attempts"] == 11, t
    b = rota.wait_state(bystander, "succeeded", "failed", timeout=30)
    assert b["state"] == "succeeded", history(b)
    assert [o for _, o in history(b) if o != "interrupted"] == ["worker_lost_shared", "succeeded"]
    # The crasher ran once beside the bystander, then POISON_AFTER times on its own.
    assert [a for task, a, _, _ in runs(run_log) if task == crasher] == list(
        range(1, POISON_AFTER + 2))


# A task that must run alone waits for its worker to let go of what it holds: lost in a shared
# crash, the gated task comes back (its queue paused meanwhile, and the daemon restarted: the
# suspicion is read back from its attempts) to a worker that is running another task; it is
# claimed but held back, and sent only once the other task is done.
def test_a_task_to_run_alone_waits_for_its_worker_to_be_free(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang, "--size", "1", "--concurrency", "3", "--queues", "first,second")
    ready_workers(rota, 1)
    gate_a, gate_b = (os.path.join(rota.root, g) for g in ("gate-a", "gate-b"))
    alone = add(rota, {"op": "gate", "gate": gate_a}, "--queue", "first", "--retries", "3",
                "--backoff", "10ms")
    wait_for(lambda: rota.show(alone)["state"] == "running", message="the gated task to run")
    rota.ok("queue", "pause", "first")  # its retry waits
    crasher = add(rota, {"op": "crash"}, "--queue", "second", "--retries", "0")
    assert rota.wait_state(crasher, "failed")["attempt_history"][0]["outcome"] == "worker_lost_shared"
    with open(gate_a, "w") as f:
        f.write("open")
    rota.stop()
    rota.start(workers=1)
    ready_workers(rota, 1)
    other = add(rota, {"op": "gate", "gate": gate_b}, "--queue", "second")
    wait_for(lambda: rota.show(other)["state"] == "running", message="the other task to run")
    rota.ok("queue", "resume", "first")
    wait_for(lambda: rota.show(alone)["attempts"] == 2, message="the gated task to be claimed again")
    assert rota.show(alone)["state"] == "running"
    assert (alone, 2) not in [(t, a) for t, a, _, _ in runs(run_log)]
    with open(gate_b, "w") as f:
        f.write("open")
    a, o = rota.wait_state(alone, "succeeded"), rota.wait_state(other, "succeeded")
    assert a["finished_at"] >= o["finished_at"], (a, o)
    assert [o for _, o in history(a)] == ["worker_lost_shared", "succeeded"]


# Scaling a pool while it works: a new worker takes tasks at once while the others are busy;
# shrinking tells the leaving workers to stop, and they finish the tasks they hold (on the
# same worker, not handed back and run again); every task runs and succeeds exactly once. The
# handlers wait for a gate file, so that each step happens with tasks in flight.
def test_scaling_a_pool_up_and_down_while_it_works(rota_home, lang):
    rota = rota_home
    run_log = start(rota, lang, "--size", "1", "--concurrency", "2")
    gate = os.path.join(rota.root, "gate")
    lines = "".join(json.dumps({"op": "gate", "gate": gate}) + "\n" for _ in range(30))
    ids = [int(x) for x in rota.ok("add", "--pool", POOL, "--stdin", "--jsonl", input=lines).split()]
    assert len(ids) == 30

    def running_on(n_workers):
        def check():
            tasks = rota.tasks("--state", "running")
            held = Counter(t["worker"] for t in tasks)
            return held if len(held) == n_workers and set(held.values()) == {2} else None
        return wait_for(check, timeout=30,
                        message=lambda: f"2 tasks on each of {n_workers} workers: {pool_workers(rota)}")

    running_on(1)
    rota.ok("pool", "set", POOL, "--size", "3")
    held = running_on(3)  # two new workers took tasks while the first still held its two
    holding = {t["id"]: t["worker"] for t in rota.tasks("--state", "running")}
    rota.ok("pool", "set", POOL, "--size", "1")
    ws = pool_workers(rota)
    leaving = {w["id"]: w["pid"] for w in ws if w["slot"] is None}
    assert len(leaving) == 2 and set(leaving) <= set(held), ws
    with open(gate, "w"):
        pass
    assert rota.wait(*ids, timeout=60) == 0

    # Exactly once: one handler call and one attempt per task.
    calls = runs(run_log)
    assert sorted(t for t, _, _, _ in calls) == ids, Counter(t for t, _, _, _ in calls).most_common(3)
    assert all(a == 1 for _, a, _, _ in calls)
    listed = {t["id"]: t for t in rota.tasks() if t["id"] in ids}
    assert sorted(listed) == ids
    assert all((t["state"], t["attempts"]) == ("succeeded", 1) for t in listed.values())
    assert len({t["result"]["pid"] for t in listed.values()}) == 3
    # The tasks the leaving workers held when told to go were finished by them.
    for task_id, worker_id in holding.items():
        if worker_id in leaving:
            t = rota.show(task_id)
            assert t["result"]["pid"] == leaving[worker_id], t
            assert [(a["worker"], a["outcome"]) for a in t["attempt_history"]] == [
                (worker_id, "succeeded")]
    # Then they left (stopped, not dead), and one worker remains.
    wait_for(lambda: not any(pid_alive(p) for p in leaving.values()),
             message="the leaving workers to exit")
    went = {(e["worker"], e["to"]) for e in events(rota) if e["kind"] == "worker"}
    for worker_id in leaving:
        assert (worker_id, "stopped") in went and (worker_id, "dead") not in went, went
    ready_workers(rota, 1)
