"""Pools of the user's programs and message tasks: `rota pool`, `rota add --pool --json`,
results, retries, and the supervision of programs that fail in every way a program can."""

import json
import os
import signal
import sys

from conftest import pid_alive, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = f"{sys.executable} {HERE}/workers/raw_worker.py"


def add_pool(rota, name="py", cmd=RAW, *args):
    return rota.json("pool", "add", name, "--cmd", cmd, *args)


def add_message(rota, payload, *args, pool="py"):
    return rota.add("--pool", pool, "--json", json.dumps(payload), *args)


def pool_workers(rota, name="py"):
    return [w for w in rota.workers() if w["pool"] == name]


def ready_workers(rota, name, n):
    """Waits until the pool has `n` live workers past their hello; returns them."""
    def ready():
        ws = [w for w in pool_workers(rota, name) if w["state"] in ("idle", "working")]
        return ws if len(ws) == n else None
    return wait_for(ready, message=f"{n} ready workers in pool {name}")


def events(rota, kind):
    return [e for e in rota.api("GET", "/v1/events?after=0&limit=1000").json()
            if e["kind"] == kind]


def test_pool_lifecycle_and_it_survives_a_restart(rota):
    p = add_pool(rota, "py", RAW, "--size", "2", "--queues", "a,b", "--concurrency", "2",
                 "--env", "K=V")
    assert (p["name"], p["size"], p["queues"], p["concurrency"], p["env"]) == (
        "py", 2, ["a", "b"], 2, {"K": "V"})
    ready_workers(rota, "py", 2)
    names = [p["name"] for p in rota.json("pool", "list")]
    assert names == ["commands", "py"]
    # A second pool of that name, and the built-in one, are refused with one line.
    for name in ("py", "commands"):
        r = rota.run("pool", "add", name, "--cmd", "true")
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    rota.ok("pool", "set", "py", "--size", "1")
    ready_workers(rota, "py", 1)
    rota.stop()
    rota.start()
    shown = rota.json("pool", "show", "py")
    assert (shown["size"], shown["queues"], shown["env"]) == (1, ["a", "b"], {"K": "V"})
    ready_workers(rota, "py", 1)
    pid = pool_workers(rota)[0]["pid"]
    rota.ok("pool", "remove", "py")
    wait_for(lambda: not pid_alive(pid), message="the removed pool's worker to exit")
    assert [p["name"] for p in rota.json("pool", "list")] == ["commands"]
    r = rota.run("pool", "show", "py")
    assert r.returncode != 0 and "no pool named py" in r.stderr


def test_results_are_stored_and_exported(rota):
    add_pool(rota, "py", RAW, "--size", "2")
    ids = [add_message(rota, {"echo": i}) for i in range(5)]
    assert rota.wait(*ids) == 0
    t = rota.show(ids[2])
    assert (t["state"], t["pool"], t["payload"], t["command"]) == ("succeeded", "py", {"echo": 2}, None)
    assert json.loads(rota.ok("result", ids[2]))["echo"] == 2
    rows = [json.loads(line) for line in rota.ok("results", "--pool", "py").splitlines()]
    assert [r["task"] for r in rows] == ids
    assert [r["result"]["echo"] for r in rows] == list(range(5))
    # A command task is not in the pool's results.
    rota.wait(rota.add("--", "true"))
    assert len(rota.ok("results", "--pool", "py").splitlines()) == 5


# Every task option applies to message tasks: --priority orders them for the pool's one
# worker, --after holds one until a command task succeeded, --delay keeps one scheduled until
# its time, --label finds them, and the options are shown on the task.
def test_task_options_apply_to_message_tasks(rota):
    low = add_message(rota, {"echo": "low"})
    high = add_message(rota, {"echo": "high"}, "--priority", "5", "--label", "kind=urgent")
    gate = os.path.join(rota.root, "gate")
    first = rota.add("--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done")
    after = add_message(rota, {"echo": "after"}, "--after", str(first))
    later = add_message(rota, {"echo": "later"}, "--delay", "1s")
    assert rota.show(after)["state"] == "waiting"
    assert rota.show(later)["state"] == "scheduled"
    assert [t["id"] for t in rota.tasks("--label", "kind=urgent")] == [high]
    add_pool(rota, "py", RAW, "--size", "1")
    assert rota.wait(low, high, later) == 0
    starts = [e["task"] for e in events(rota, "task") if e["to"] == "running"]
    assert starts.index(high) < starts.index(low), starts
    assert rota.show(after)["state"] == "waiting"
    open(gate, "w").close()
    assert rota.wait(first, after) == 0
    assert rota.show(after)["result"]["echo"] == "after"
    assert rota.show(high)["priority"] == 5


def test_stdin_jsonl_queues_one_task_per_line(rota):
    add_pool(rota, "py", RAW, "--size", "2", "--concurrency", "4")
    lines = "".join(json.dumps({"echo": i}) + "\n" for i in range(2000))
    ids = [int(x) for x in rota.ok("add", "--pool", "py", "--stdin", "--jsonl", input=lines).split()]
    assert len(ids) == 2000 and len(set(ids)) == 2000
    assert rota.wait("--all", timeout=120) == 0
    rows = [json.loads(line) for line in rota.ok("results", "--pool", "py").splitlines()]
    assert sorted(r["result"]["echo"] for r in rows) == list(range(2000))
    # A line that is not JSON stops the input there, with its number; earlier lines are queued.
    r = rota.run("add", "--pool", "py", "--stdin", "--jsonl", input='{"echo": 1}\nnope\n{"echo": 2}\n')
    assert r.returncode == 2 and "stdin line 2 is not JSON" in r.stderr
    assert len(r.stdout.split()) == 1


def test_stdin_jsonl_for_a_pool_not_yet_added_warns_once(rota):
    # 25,000 lines go to the daemon in three batches; the warning is the same for each.
    lines = "".join(json.dumps({"n": i}) + "\n" for i in range(25000))
    r = rota.run("add", "--pool", "later", "--stdin", "--jsonl", input=lines)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 25000
    assert r.stderr == ("rota: warning: no pool named later yet: its tasks wait for one "
                        "(rota pool add)\n"), r.stderr


# What the CLI lets through, the daemon takes: a line that nlohmann would read up to a NUL
# byte stops the input at that line, and the lines before it, in the same batch, are queued.
def test_stdin_jsonl_line_with_a_nul_byte_stops_there(rota):
    r = rota.run("add", "--pool", "later", "--stdin", "--jsonl",
                 input='{"n": 1}\n{"n": 2}\n{"n": 3}\0junk\n{"n": 4}\n')
    assert r.returncode == 2, r.stderr
    assert "stdin line 3 is not JSON" in r.stderr and r.stderr.count("\n") == 2, r.stderr
    assert len(r.stdout.split()) == 2
    assert len(rota.tasks()) == 2


def test_retries_and_a_failure_that_is_not_retried(rota):
    add_pool(rota)
    retried = add_message(rota, {"fail_until": 2}, "--retries", "3", "--backoff", "10ms")
    final = add_message(rota, {"fail": "bad input", "retryable": False}, "--retries", "3")
    rota.wait(retried, final)
    t = rota.show(retried)
    assert (t["state"], t["attempts"], t["result"]["attempt"]) == ("succeeded", 3, 3)
    t = rota.show(final)
    assert (t["state"], t["attempts"], t["error"]) == ("failed", 1, "bad input")


def test_a_hung_worker_is_killed_and_its_task_runs_again(rota_home):
    rota = rota_home
    rota.start(extra=("--heartbeat-interval", "100ms", "--unresponsive-after", "300ms",
                      "--dead-after", "600ms"))
    add_pool(rota)
    first = ready_workers(rota, "py", 1)[0]
    task = add_message(rota, {"stop": True}, "--retries", "1")
    t = rota.wait_state(task, "succeeded")
    assert t["attempts"] == 2
    assert t["attempt_history"][0]["outcome"] == "worker_lost"
    assert t["result"]["pid"] != first["pid"]
    wait_for(lambda: not pid_alive(first["pid"]), message="the stopped worker to be killed")


def test_a_payload_that_crashes_its_worker_is_poison(rota):
    add_pool(rota, "py", RAW, "--size", "2")
    poison = add_message(rota, {"crash": True}, "--retries", "10")
    fine = [add_message(rota, {"echo": i}) for i in range(3)]
    t = rota.wait_state(poison, "failed", timeout=30)
    assert t["attempts"] == 3 and "poison" in t["error"]
    # Each lost attempt says how its worker ended.
    assert all("status 3" in a["error"] for a in t["attempt_history"]), t["attempt_history"]
    assert rota.wait(*fine) == 0
    ready_workers(rota, "py", 2)


def test_lines_that_are_not_messages(rota):
    log = os.path.join(rota.root, "worker.log")
    add_pool(rota, "py", RAW, "--env", f"WORKER_LOG={log}")
    stray = add_message(rota, {"print": "just a print() call"})
    broken = add_message(rota, {"garbage": '{"type": "done", oops'})
    assert rota.wait(stray, broken) == 0
    daemon_log = open(os.path.join(rota.home, "daemon.log")).read()
    assert "just a print() call" in daemon_log
    assert any("oops" in e["detail"] for e in events(rota, "protocol"))
    # The worker was told, in a line of its own.
    told = [json.loads(line) for line in open(log) if '"error"' in line]
    assert told and told[0]["type"] == "error" and "oops" in told[0]["line"]
    assert len(pool_workers(rota)) == 1 and pool_workers(rota)[0]["restarts"] == 0


def test_a_worker_that_closes_stdout_is_dead(rota):
    add_pool(rota)
    first = ready_workers(rota, "py", 1)[0]
    task = add_message(rota, {"close_stdout": True}, "--retries", "1")
    t = rota.wait_state(task, "succeeded")
    assert t["attempts"] == 2 and "closed its stdout" in t["attempt_history"][0]["error"]
    wait_for(lambda: not pid_alive(first["pid"]), message="the worker to be killed")


def test_concurrency_puts_k_tasks_on_one_worker(rota):
    # The worker answers only once it holds three tasks at the same time.
    add_pool(rota, "py", RAW, "--size", "1", "--concurrency", "3")
    ids = [add_message(rota, {"hold": 3}) for _ in range(3)]
    assert rota.wait(*ids) == 0
    assert {rota.show(i)["result"]["held_together"] for i in ids} == {3}


def test_scaling_a_pool_while_it_works(rota):
    add_pool(rota, "py", RAW, "--size", "1", "--concurrency", "2")
    ids = [int(x) for x in rota.ok("add", "--pool", "py", "--stdin", "--jsonl",
                                   input="".join('{"sleep": 0.02}\n' for _ in range(150))).split()]
    rota.ok("pool", "set", "py", "--size", "3")
    wait_for(lambda: sum(w["tasks_done"] > 0 for w in rota.json("pool", "show", "py")["workers"]) >= 2,
             message="tasks done by more than one worker")
    rota.ok("pool", "set", "py", "--size", "1")
    assert rota.wait(*ids, timeout=120) == 0
    # Each task ran once: scaling down let the leaving workers finish what they held.
    assert all(rota.show(i)["attempts"] == 1 for i in ids[::10])
    ready_workers(rota, "py", 1)


def test_timeout_and_cancel_of_message_tasks(rota):
    add_pool(rota, "py", RAW, "--concurrency", "2")
    timed = add_message(rota, {"wait_cancel": True}, "--timeout", "300ms")
    t = rota.wait_state(timed, "failed")
    assert t["error"].startswith("timeout")
    cancelled = add_message(rota, {"wait_cancel": True})
    rota.wait_state(cancelled, "running")
    rota.ok("cancel", cancelled)
    assert rota.wait_state(cancelled, "cancelled")["attempts"] == 1
    # The worker let go of both: it is still the same one, with room for more.
    assert rota.wait(add_message(rota, {"echo": 1})) == 0
    assert pool_workers(rota)[0]["restarts"] == 0


def test_a_worker_that_ignores_a_cancel_is_killed(rota):
    add_pool(rota)
    first = ready_workers(rota, "py", 1)[0]
    task = add_message(rota, {"ignore_cancel": True}, "--timeout", "200ms")
    assert rota.wait_state(task, "failed")["error"].startswith("timeout")
    wait_for(lambda: not pid_alive(first["pid"]), timeout=30, message="the stuck worker to be killed")
    assert rota.wait(add_message(rota, {"echo": 1})) == 0


def test_payload_limit_and_bad_input(rota_home):
    rota = rota_home
    os.makedirs(rota.home, mode=0o700, exist_ok=True)
    with open(os.path.join(rota.home, "rota.toml"), "w") as f:
        f.write("max_payload_kib = 1\n")
    rota.start()
    add_pool(rota)
    r = rota.run("add", "--pool", "py", "--json", json.dumps({"x": "y" * 2000}))
    assert r.returncode == 2 and "over the 1 KiB limit" in r.stderr
    assert rota.tasks() == []
    for args, text in [(("--json", "{nope"), "not JSON"),
                       (("--json", "{}", "--", "echo"), "not a command"),
                       (("--json", "@/nonexistent.json"), "cannot read")]:
        r = rota.run("add", "--pool", "py", *args)
        assert r.returncode == 2 and text in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = rota.run("add", "--json", "{}", "--", "echo", "hi")
    assert r.returncode == 2 and "--pool" in r.stderr
    assert rota.tasks() == []


def test_message_tasks_run_again_after_the_daemon_is_killed(rota):
    add_pool(rota)
    worker = ready_workers(rota, "py", 1)[0]
    task = add_message(rota, {"sleep": 30}, "--retries", "1")
    rota.wait_state(task, "running")
    rota.kill9_daemon()
    # The program sees its stdin close and leaves; it does not run on unsupervised.
    wait_for(lambda: not pid_alive(worker["pid"]), message="the orphaned program to exit")
    rota.start()
    # Its next attempt runs on the new daemon's worker.
    wait_for(lambda: rota.show(task)["attempts"] == 2 and rota.state(task) == "running",
             message="the task's second attempt")
    assert rota.show(task)["attempt_history"][0]["outcome"] == "daemon_lost"
