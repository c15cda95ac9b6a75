"""Real damage: timeouts that must kill whole process trees, kill -9 of workers and of the
daemon, corrupted stores, and stopping the daemon while tasks run."""

import json
import os
import re
import signal
import subprocess

import pytest

from conftest import ROTA_BIN, exact_procs, pid_alive, procs_with, sha256, unique_sleep_arg, wait_for

# Once the task is running for the first time it creates `started` and sleeps for good;
# every later attempt finds the file and succeeds at once.
FIRST_ATTEMPT_HANGS = (
    'if [ -e started ]; then echo "second attempt"; '
    "else touch started; exec sleep {arg}; fi"
)


# ---- timeouts ------------------------------------------------------------------------------


# `--timeout` kills the task's whole process tree: the task ends failed with a timeout error
# and neither the shell's child nor its background grandchild survives.
def test_timeout_kills_process_tree(rota):
    bg, fg = unique_sleep_arg(), unique_sleep_arg()
    tid = rota.add("--timeout", "1s", "--shell", f"sleep {bg} & sleep {fg}; wait")
    rota.wait_state(tid, "running")
    wait_for(
        lambda: exact_procs("sleep", bg) and exact_procs("sleep", fg),
        message="both sleeps of the task to start",
    )
    assert rota.wait(tid) == 1
    t = rota.show(tid)
    assert t["state"] == "failed"
    assert "timeout" in t["error"].lower(), t["error"]
    assert t["attempt_history"][0]["outcome"] == "timeout"
    wait_for(
        lambda: not procs_with(bg) and not procs_with(fg),
        message=lambda: f"the task's sleeps to be gone (left: {procs_with(bg) + procs_with(fg)})",
    )


# A timed-out task's grandchild that ignores SIGTERM does not outlive the task either.
def test_timeout_kills_grandchild_ignoring_sigterm(rota):
    arg = unique_sleep_arg()
    tid = rota.add(
        "--timeout", "500ms", "--retries", "1", "--backoff", "50ms",
        "--shell", f"(trap '' TERM; exec sleep {arg}) & sleep {unique_sleep_arg()}; wait",
    )
    wait_for(lambda: exact_procs("sleep", arg), message="the grandchild sleep to start")
    assert rota.wait(tid) == 1
    t = rota.show(tid)
    assert t["state"] == "failed"
    assert t["attempts"] == 2
    assert [a["outcome"] for a in t["attempt_history"]] == ["timeout", "timeout"]
    wait_for(lambda: not procs_with(arg), message=f"`sleep {arg}` (ignores SIGTERM) to be gone")


# ---- kill -9 of a worker ---------------------------------------------------------------------


# kill -9 of the worker running a task: the task is retried on another worker and succeeds,
# attempt 1 is recorded as worker_lost, the task's own process is killed, and a new worker
# (new id) brings the pool back to 2.
def test_kill9_worker(rota):
    arg = unique_sleep_arg()
    tid = rota.add("--retries", "1", "--backoff", "50ms", "--cwd", rota.work,
                   "--shell", FIRST_ATTEMPT_HANGS.format(arg=arg))
    # The first attempt is in its `sleep` (the shell has exec'd it), so `started` exists.
    wait_for(lambda: exact_procs("sleep", arg), message="the task's first attempt to start")
    before = rota.workers()
    assert len(before) == 2
    victim = [w for w in before if w["task"] == tid]
    assert len(victim) == 1, before
    victim = victim[0]
    os.kill(victim["pid"], signal.SIGKILL)

    rota.wait_state(tid, "succeeded", "failed", "cancelled")
    assert rota.wait(tid) == 0
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    assert t["attempts"] == 2
    first, second = t["attempt_history"]
    assert first["outcome"] == "worker_lost"
    assert "worker_lost" in first["error"]
    assert first["worker"] == victim["id"]
    assert second["outcome"] == "succeeded"
    assert "second attempt" in rota.log(tid)

    wait_for(lambda: not procs_with(f"sleep {arg}"), message="the lost attempt's sleep to die")
    assert not pid_alive(victim["pid"])

    def replaced():
        ws = rota.workers()
        return len(ws) == 2 and victim["id"] not in {w["id"] for w in ws} and ws

    workers = wait_for(replaced, message="a new worker to replace the killed one")
    old_ids = {w["id"] for w in before}
    new = [w for w in workers if w["id"] not in old_ids]
    assert len(new) == 1 and new[0]["id"] > max(old_ids)
    assert pid_alive(new[0]["pid"])


# A worker that dies is replaced at once even after the pool was scaled up and down several
# times (workers asked to leave did not crash, so they must not delay restarts).
def test_worker_replaced_after_scaling_churn(rota):
    for _ in range(5):
        rota.ok("scale", "3")
        wait_for(lambda: len(rota.workers()) == 3, message="3 workers")
        rota.ok("scale", "1")
        wait_for(lambda: len(rota.workers()) == 1, message="1 worker")
    [w] = rota.workers()
    os.kill(w["pid"], signal.SIGKILL)
    wait_for(
        lambda: [x for x in rota.workers() if x["id"] != w["id"]],
        timeout=10,
        message="a replacement for the killed worker",
    )
    tid = rota.add("--", "echo", "still working")
    assert rota.wait(tid) == 0


# ---- kill -9 of the daemon -------------------------------------------------------------------


# kill -9 of the daemon mid-batch: the two running tasks go on under their workers, which
# reattach to the restarted daemon; every one of the 50 tasks then succeeds exactly once, the
# two that ran across the crash with a single attempt, and nothing is lost.
def test_kill9_daemon_mid_batch(rota):
    gate = os.path.join(rota.work, "gate")
    marker = f"gated-{unique_sleep_arg()}"
    # Tasks 25 and 26 hold both workers until `gate` exists, so they are surely running
    # when the daemon dies; the others are short.
    lines = []
    for i in range(1, 51):
        if i in (25, 26):
            lines.append(f": {marker}; while [ ! -e {gate} ]; do sleep 0.02; done\n")
        else:
            lines.append("sleep 0.05\n")
    ids = [int(x) for x in rota.ok("add", "--stdin", "--retries", "3", "--backoff", "50ms",
                                   input="".join(lines)).split()]
    assert len(ids) == 50
    gated = [ids[24], ids[25]]

    def both_gated_running():
        running = sorted(t["id"] for t in rota.tasks("--state", "running"))
        return running == gated and len(procs_with(marker)) >= 2

    wait_for(both_gated_running, message="the two gated tasks to be running")
    workers = rota.workers()
    assert sorted(w["task"] for w in workers) == gated

    rota.kill9_daemon()
    # With no daemon, the tasks run on; one of them finishes, and its worker keeps the result.
    assert all(pid_alive(w["pid"]) for w in workers)
    assert len(procs_with(marker)) >= 2
    open(gate, "w").close()
    wait_for(lambda: not procs_with(marker), message="the gated tasks to finish")

    rota.start(workers=2)
    assert rota.wait("--all") == 0
    tasks = rota.tasks()
    assert len(tasks) == 50
    assert sorted(t["id"] for t in tasks) == sorted(ids)
    assert {t["state"] for t in tasks} == {"succeeded"}
    for t in tasks:
        full = rota.show(t["id"])
        outcomes = [a["outcome"] for a in full["attempt_history"]]
        where = f"task {t['id']}: attempts={full['attempts']} outcomes={outcomes}"
        assert full["attempts"] == len(outcomes), where
        assert outcomes == ["succeeded"], where


# kill -9 of the daemon while `rota add --stdin` still reads: the batch it sent before is
# queued whole; the next one fails, and the command says so and exits at once, though its
# input has not ended. Nothing is queued twice or half.
def test_kill9_daemon_while_add_stdin_reads(rota):
    rota.ok("queue", "pause", "default")
    add = subprocess.Popen([ROTA_BIN, "--home", rota.home, "add", "--stdin"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        add.stdin.write("echo first\n" * 10_000)  # one whole batch
        add.stdin.flush()
        wait_for(lambda: len(rota.tasks("--state", "queued")) == 10_000,
                 message="the first batch to be queued")
        rota.kill9_daemon()
        add.stdin.write("echo second\n" * 10_000)  # the next batch, sent to no daemon
        add.stdin.flush()
        wait_for(lambda: add.poll() is not None, message="rota add to give up")
        assert add.returncode != 0
        err = add.stderr.read()
        assert err.startswith("rota: ") and err.count("\n") == 1, err
    finally:
        add.kill()
        add.wait()
    rota.start(workers=2)
    tasks = rota.tasks()
    assert len(tasks) == 10_000
    assert {t["state"] for t in tasks} == {"queued"}


# ---- corrupted store -------------------------------------------------------------------------


def _garbage_middle(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 4)
        f.write(os.urandom(size // 2))


def _truncate_half(path):
    os.truncate(path, os.path.getsize(path) // 2)


def _truncate_zero(path):
    os.truncate(path, 0)


# A corrupted store is refused and left untouched: `rota daemon start` and `rota list` exit 3
# with one line on stderr that names the file, and the file's bytes do not change.
@pytest.mark.parametrize(
    "damage", [_garbage_middle, _truncate_half, _truncate_zero],
    ids=["garbage-in-middle", "truncated-to-half", "truncated-to-zero"],
)
def test_corrupted_store_refused_untouched(rota, damage):
    lines = "".join(f"echo {'x' * 200} {i}\n" for i in range(300))
    rota.ok("add", "--stdin", "--label", "pad=" + "y" * 100, input=lines)
    assert rota.wait("--all") == 0
    rota.stop()
    assert not rota.running()
    assert os.path.getsize(rota.store) > 64 * 1024

    damage(rota.store)
    digest = sha256(rota.store)
    size = os.path.getsize(rota.store)

    for args in (["daemon", "start", "--workers", "2"], ["list"], ["add", "--", "true"]):
        r = rota.run(*args)
        assert r.returncode == 3, (args, r)
        lines = r.stderr.splitlines()
        assert len(lines) == 1, f"`rota {' '.join(args)}` stderr is not one line: {r.stderr!r}"
        assert rota.store in lines[0], f"stderr does not name {rota.store}: {r.stderr!r}"
        assert sha256(rota.store) == digest
        assert os.path.getsize(rota.store) == size
    assert rota.run("daemon", "status").returncode == 3
    assert rota.daemon_pid() is None


# ---- graceful stop ---------------------------------------------------------------------------


# `rota daemon stop --grace 5s` lets a task that needs 1 second finish: after a restart it is
# succeeded with a single attempt.
def test_graceful_stop_lets_short_task_finish(rota):
    tid = rota.add("--shell", "sleep 1; echo finished")
    rota.wait_state(tid, "running")
    rota.stop(grace="5s")
    assert not rota.running()
    rota.start(workers=2)
    assert rota.wait(tid) == 0
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    outcomes = [(a["outcome"], a["signal"]) for a in t["attempt_history"]]
    assert outcomes == [("succeeded", None)], (
        f"the task did not finish within the grace; its attempts (outcome, signal): {outcomes}"
    )
    assert t["attempts"] == 1
    assert rota.log(tid) == "finished\n"


# A task still running when the grace runs out is handed back, not failed: its process is
# killed, after a restart it is queued again with its attempt budget intact, and it then
# succeeds (with --retries 0).
def test_graceful_stop_hands_back_long_task(rota):
    arg = unique_sleep_arg(30)
    tid = rota.add("--cwd", rota.work, "--shell", FIRST_ATTEMPT_HANGS.format(arg=arg))
    wait_for(lambda: exact_procs("sleep", arg), message="the task to start")
    before = rota.show(tid)
    assert before["state"] == "running"
    budget = before["max_attempts"] - before["attempts"] + 1  # attempts left, this one included
    # Keep it from being picked up at once after the restart, so its state can be seen.
    rota.ok("queue", "pause", "default")
    rota.stop(grace="200ms")
    assert not rota.running()
    wait_for(lambda: not procs_with(f"sleep {arg}"), message="the task's sleep to be killed")

    rota.start(workers=2)
    t = rota.show(tid)
    assert t["state"] == "queued", t
    assert t["error"] is None
    assert t["max_attempts"] - t["attempts"] == budget, "the interrupted attempt was charged"
    assert t["attempt_history"][0]["outcome"] not in {"failed", "timeout", "cancelled"}

    rota.ok("queue", "resume", "default")
    assert rota.wait(tid) == 0
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    assert "second attempt" in rota.log(tid)


# ---- descriptors leaking into tasks -----------------------------------------------------------


# A task inherits no descriptor of rota's (such as the API's listening socket or its worker's
# control socket): only stdin, stdout and stderr.
def test_task_inherits_only_stdio(rota):
    tid = rota.add("--shell", "ls -l /proc/$$/fd; true")
    assert rota.wait(tid) == 0
    fds = {}
    for line in rota.log(tid).splitlines():
        m = re.search(r" (\d+) -> (.*)$", line)
        if m:
            fds[int(m.group(1))] = m.group(2)
    assert 0 in fds and 1 in fds and 2 in fds, rota.log(tid)
    leaked = {fd: target for fd, target in fds.items() if fd > 2}
    assert not leaked, f"descriptors leaked into the task: {leaked}"


# After kill -9 of the daemon, a process a task left behind in its own session (a daemonized
# helper) does not keep a new daemon from starting: `rota daemon start` starts one and the CLI
# answers.
def test_restart_after_kill9_with_escaped_task_process(rota):
    arg = unique_sleep_arg()
    # The helper writes its pid once it runs in its own session; the task waits for that, so
    # the helper is out of the task's process group before the task ends.
    tid = rota.add(
        "--cwd", rota.work, "--shell",
        f"setsid -f sh -c 'echo $$ > helper.pid; exec sleep {arg}' >/dev/null 2>&1 </dev/null; "
        "while [ ! -s helper.pid ]; do sleep 0.01; done; echo spawned",
    )
    assert rota.wait(tid) == 0
    wait_for(lambda: exact_procs("sleep", arg), message="the escaped sleep to run")
    old = rota.kill9_daemon()
    rota.start(workers=2)
    new = rota.daemon_pid()
    assert new and new != old, "`rota daemon start` did not start a new daemon"
    r = rota.run("list", "--json", timeout=10)
    assert r.returncode == 0 and [t["id"] for t in json.loads(r.stdout)] == [tid]
