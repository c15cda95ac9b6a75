"""Queueing and running tasks through the CLI: add, list, show, log, wait, retries,
dependencies, cancel, retry, clean, priority and queue limits."""

import datetime
import json
import os
import subprocess

from conftest import ROTA_BIN, TIMESTAMP_RE, exact_procs, procs_with, unique_sleep_arg, wait_for

TASK_FIELDS = {
    "id", "state", "queue", "priority", "attempts", "max_attempts", "exit_code", "signal",
    "error", "labels", "depends_on", "command", "created_at", "started_at", "finished_at",
    "worker",
}


def parse_ts(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )


# ---- add / wait / log / list / show -------------------------------------------------------


# `rota add -- echo hello` prints the new id alone, `rota wait` exits 0 once it succeeded,
# and `rota log` prints what it wrote.
def test_add_wait_log_hello(rota):
    tid = rota.add("--", "echo", "hello")
    assert rota.wait(tid) == 0
    assert rota.log(tid) == "hello\n"
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    assert t["exit_code"] == 0
    assert t["attempts"] == 1


# A task's log holds both what it wrote on stdout and what it wrote on stderr.
def test_log_has_stdout_and_stderr(rota):
    tid = rota.add("--shell", "echo to-out; echo to-err >&2")
    assert rota.wait(tid) == 0
    log = rota.log(tid)
    assert "to-out\n" in log
    assert "to-err\n" in log


# `rota wait` exits 1 when the task failed, and the failure's exit code is recorded.
def test_wait_exits_1_on_failure(rota):
    tid = rota.add("--", "sh", "-c", "exit 7")
    r = rota.run("wait", tid)
    assert r.returncode == 1, r
    t = rota.show(tid)
    assert t["state"] == "failed"
    assert t["exit_code"] == 7


# `rota list --json` is a JSON array of tasks with the documented fields, and timestamps are
# RFC 3339 in UTC with milliseconds ("2026-11-23T08:05:05.183Z").
def test_list_json_fields_and_timestamps(rota):
    tid = rota.add("--label", "team=infra", "--", "echo", "x")
    assert rota.wait(tid) == 0
    tasks = rota.tasks()
    assert isinstance(tasks, list) and len(tasks) == 1
    t = tasks[0]
    missing = TASK_FIELDS - set(t)
    assert not missing, f"list --json lacks {missing}: {t}"
    assert t["id"] == tid
    assert t["state"] == "succeeded"
    assert t["queue"] == "default"
    assert t["priority"] == 0
    assert t["attempts"] == 1 and t["max_attempts"] == 1
    assert t["exit_code"] == 0 and t["signal"] is None and t["error"] is None
    assert t["labels"] == {"team": "infra"}
    assert t["depends_on"] == []
    assert t["command"]["argv"] == ["echo", "x"]
    assert t["command"]["cwd"] == rota.work
    for key in ("created_at", "started_at", "finished_at"):
        assert TIMESTAMP_RE.match(t[key]), f"{key} = {t[key]!r}"
    created, started, finished = (parse_ts(t[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished
    # UTC, not local time: the stamp is close to the current UTC time.
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - created).total_seconds()) < 600


# `rota add --json` prints the whole new task rather than just its id.
def test_add_json_prints_task(rota):
    out = rota.json("add", "--shell", "echo hi | cat", "--priority", "3", "--label", "k=v")
    assert TASK_FIELDS - set(out) == set(), out
    assert out["command"]["shell"] == "echo hi | cat"
    assert "argv" not in out["command"]
    assert out["priority"] == 3
    assert out["labels"] == {"k": "v"}
    assert out["state"] in {"queued", "running", "succeeded"}
    assert TIMESTAMP_RE.match(out["created_at"])
    assert rota.wait(out["id"]) == 0
    assert rota.log(out["id"]) == "hi\n"


# `--shell` runs a command line through sh (pipes work); argv mode runs the program directly,
# so shell syntax such as `$HOME` reaches it literally.
def test_shell_versus_argv(rota):
    piped = rota.add("--shell", "echo abc | tr a-z A-Z")
    literal = rota.add("--", "echo", "$HOME", "a|b", "*")
    assert rota.wait(piped, literal) == 0
    assert rota.log(piped) == "ABC\n"
    assert rota.log(literal) == "$HOME a|b *\n"


# The caller's environment reaches the task, `--env KEY=VALUE` adds to it and overrides it.
def test_environment(rota):
    tid = rota.add(
        "--env", "FROM_FLAG=flag-value",
        "--env", "OVERRIDDEN=from-flag",
        "--shell", 'echo "$FROM_CALLER|$FROM_FLAG|$OVERRIDDEN"',
        env={"FROM_CALLER": "caller-value", "OVERRIDDEN": "from-caller"},
    )
    assert rota.wait(tid) == 0
    assert rota.log(tid) == "caller-value|flag-value|from-flag\n"


# `--cwd DIR` sets the task's working directory; without it the task runs where `rota add`
# was called (relative --cwd is taken from there too).
def test_working_directory(rota):
    a = os.path.join(rota.work, "a")
    b = os.path.join(rota.work, "b")
    os.makedirs(os.path.join(b, "sub"))
    os.makedirs(a)
    explicit = rota.add("--cwd", a, "--", "pwd")
    default = rota.add("--", "pwd", cwd=b)
    relative = rota.add("--cwd", "sub", "--", "pwd", cwd=b)
    assert rota.wait(explicit, default, relative) == 0
    assert rota.log(explicit) == a + "\n"
    assert rota.log(default) == b + "\n"
    assert rota.log(relative) == os.path.join(b, "sub") + "\n"
    assert rota.show(default)["command"]["cwd"] == b


# `rota list` filters by --label, --state and --queue, and --limit caps the count (oldest
# first).
def test_list_filters(rota):
    a1 = rota.add("--label", "team=a", "--", "true")
    b1 = rota.add("--label", "team=b", "--queue", "other", "--", "true")
    a2 = rota.add("--label", "team=a", "--label", "tier=1", "--", "false")
    assert rota.run("wait", a1, b1, a2).returncode == 1
    assert [t["id"] for t in rota.tasks("--label", "team=a")] == [a1, a2]
    assert [t["id"] for t in rota.tasks("--label", "tier=1")] == [a2]
    assert [t["id"] for t in rota.tasks("--label", "team=zzz")] == []
    assert [t["id"] for t in rota.tasks("--state", "failed")] == [a2]
    assert [t["id"] for t in rota.tasks("--state", "succeeded")] == [a1, b1]
    assert [t["id"] for t in rota.tasks("--queue", "other")] == [b1]
    assert [t["id"] for t in rota.tasks("--limit", "2")] == [a1, b1]
    assert [t["id"] for t in rota.tasks("--state", "succeeded", "--queue", "default")] == [a1]


# ---- add --stdin ---------------------------------------------------------------------------


# `rota add --stdin` queues one task per line and prints the ids one per line; 2000 lines
# all get queued and all succeed.
def test_add_stdin_2000(rota):
    n = 2000
    lines = "".join(f"echo line-{i}\n" for i in range(n))
    out = rota.ok("add", "--stdin", input=lines)
    ids = [int(x) for x in out.split("\n") if x]
    assert len(ids) == n
    assert len(set(ids)) == n
    assert ids == sorted(ids)
    assert rota.wait("--all", timeout=120) == 0
    tasks = rota.tasks()
    assert len(tasks) == n
    assert {t["state"] for t in tasks} == {"succeeded"}
    assert {t["id"] for t in tasks} == set(ids)
    for i in (0, 1234, n - 1):
        assert rota.log(ids[i]) == f"line-{i}\n"


# A line that is not UTF-8 cannot be a task's shell line: the input stops there with its
# number, and the lines before it are queued.
def test_add_stdin_stops_at_a_line_that_is_not_utf8(rota):
    rota.ok("queue", "pause", "default")
    r = subprocess.run([ROTA_BIN, "--home", rota.home, "add", "--stdin"],
                       input=b"echo one\necho two\necho \xff\xfe\necho four\n",
                       capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 2 and "stdin line 3 is not UTF-8" in err, err
    assert len(r.stdout.split()) == 2
    assert [t["command"]["shell"] for t in rota.tasks()] == ["echo one", "echo two"]


# ---- retries -------------------------------------------------------------------------------


# A task that always fails is tried 1 + --retries times, then ends failed; every attempt is
# in its history.
def test_retries_exhausted(rota):
    tid = rota.add("--retries", "2", "--backoff", "50ms", "--", "sh", "-c", "exit 1")
    assert rota.wait(tid) == 1
    t = rota.show(tid)
    assert t["state"] == "failed"
    assert t["attempts"] == 3
    assert t["max_attempts"] == 3
    assert t["exit_code"] == 1
    history = t["attempt_history"]
    assert [a["attempt"] for a in history] == [1, 2, 3]
    assert [a["outcome"] for a in history] == ["failed"] * 3
    assert all(a["exit_code"] == 1 for a in history)


# A task that fails once and then succeeds ends succeeded after 2 attempts.
def test_retry_then_success(rota):
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "try $n"; [ $n -ge 2 ]'
    tid = rota.add("--retries", "3", "--backoff", "50ms", "--cwd", rota.work, "--shell", script)
    assert rota.wait(tid) == 0
    t = rota.show(tid)
    assert t["state"] == "succeeded"
    assert t["attempts"] == 2
    assert [a["outcome"] for a in t["attempt_history"]] == ["failed", "succeeded"]
    log = rota.log(tid)
    assert "try 1" in log and "try 2" in log


# With no backoff (`--backoff 0ms`) a failing task is still tried exactly 1 + --retries
# times: each failed attempt is counted and recorded as failed.
def test_retries_without_backoff_are_counted(rota):
    tid = rota.add("--retries", "2", "--backoff", "0ms", "--", "sh", "-c", "exit 1")
    t = rota.wait_state(tid, "failed", "succeeded", "cancelled", timeout=10)
    outcomes = [a["outcome"] for a in t["attempt_history"]]
    assert t["state"] == "failed", (t["state"], t["attempts"], outcomes[:5])
    assert t["attempts"] == 3, (t["attempts"], outcomes[:5])
    assert t["max_attempts"] == 3
    assert outcomes == ["failed"] * 3


# ---- dependencies ---------------------------------------------------------------------------


# `--after A` keeps a task waiting until A succeeded, then runs it.
def test_after_waits_for_dependency(rota):
    gate = os.path.join(rota.work, "gate")
    a = rota.add("--shell", f"while [ ! -e {gate} ]; do sleep 0.02; done; echo a")
    b = rota.add("--after", a, "--", "echo", "b")
    rota.wait_state(a, "running")
    t = rota.show(b)
    assert t["state"] == "waiting"
    assert t["depends_on"] == [a]
    open(gate, "w").close()
    assert rota.wait(b) == 0
    ta, tb = rota.show(a), rota.show(b)
    assert ta["state"] == "succeeded" and tb["state"] == "succeeded"
    assert parse_ts(tb["started_at"]) >= parse_ts(ta["finished_at"])


# If A fails, the tasks after it end `skipped` (transitively), whether they were added before
# or after A failed, and `rota wait` on them exits 1.
def test_after_failed_dependency_skips(rota):
    gate = os.path.join(rota.work, "gate")
    a = rota.add("--shell", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 1")
    b = rota.add("--after", a, "--", "echo", "b")
    c = rota.add("--after", b, "--", "echo", "c")
    rota.wait_state(a, "running")
    open(gate, "w").close()
    assert rota.wait(c) == 1
    assert rota.state(a) == "failed"
    assert rota.state(b) == "skipped"
    assert rota.state(c) == "skipped"
    late = rota.add("--after", a, "--", "echo", "late")
    assert rota.wait(late) == 1
    assert rota.state(late) == "skipped"
    for tid in (b, c, late):
        assert rota.show(tid)["attempts"] == 0
        assert not os.path.exists(rota.log_path(tid))


# `--after` a task that does not exist is refused: exit 2, one line on stderr, nothing queued.
def test_after_missing_task(rota):
    existing = rota.add("--", "true")
    assert rota.wait(existing) == 0
    for after in ("999", f"{existing},999"):
        r = rota.run("add", "--after", after, "--", "echo", "never")
        assert r.returncode == 2, r
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("rota: "), r.stderr
        assert "999" in r.stderr
    assert [t["id"] for t in rota.tasks()] == [existing]


# Retrying a failed dependency gives the tasks it doomed another chance: they run after it.
def test_retry_revives_skipped_dependents(rota):
    flag = os.path.join(rota.work, "ok")
    a = rota.add("--", "test", "-e", flag)
    b = rota.add("--after", a, "--", "echo", "b")
    assert rota.wait(b) == 1
    assert rota.state(b) == "skipped"
    open(flag, "w").close()
    assert rota.ok("retry", a).split() == [str(a)]
    assert rota.wait(a, b) == 0
    assert rota.log(b) == "b\n"


# ---- cancel / retry / clean ------------------------------------------------------------------


# Cancelling a queued task (its queue is paused) makes it `cancelled`; it never runs, even
# after the queue resumes.
def test_cancel_queued(rota):
    rota.ok("queue", "pause", "q")
    tid = rota.add("--queue", "q", "--", "echo", "never")
    assert rota.state(tid) == "queued"
    rota.ok("cancel", tid)
    assert rota.state(tid) == "cancelled"
    rota.ok("queue", "resume", "q")
    after = rota.add("--queue", "q", "--", "true")
    assert rota.wait(after) == 0
    t = rota.show(tid)
    assert t["state"] == "cancelled"
    assert t["attempts"] == 0
    assert rota.wait(tid) == 1


# Cancelling a running task stops its process: the task ends `cancelled` and no process of it
# is left.
def test_cancel_running(rota):
    arg = unique_sleep_arg()
    tid = rota.add("--", "sleep", arg)
    rota.wait_state(tid, "running")
    wait_for(lambda: exact_procs("sleep", arg), message="the task's sleep to start")
    rota.ok("cancel", tid)
    t = rota.wait_state(tid, "cancelled")
    assert t["attempt_history"][-1]["outcome"] == "cancelled"
    wait_for(lambda: not procs_with(f"sleep {arg}"), message=f"`sleep {arg}` to be gone")
    assert rota.wait(tid) == 1


# `rota retry ID` runs a failed task again; `rota retry --failed` retries every failed task.
def test_retry_commands(rota):
    flag = os.path.join(rota.work, "ok")
    one = rota.add("--", "test", "-e", flag)
    two = rota.add("--", "test", "-e", flag)
    three = rota.add("--", "test", "-e", flag)
    fine = rota.add("--", "true")
    assert rota.wait(one, two, three, fine) == 1
    open(flag, "w").close()
    assert rota.ok("retry", one).split() == [str(one)]
    assert rota.wait(one) == 0
    t = rota.show(one)
    assert t["state"] == "succeeded" and t["attempts"] == 2
    assert [a["outcome"] for a in t["attempt_history"]] == ["failed", "succeeded"]
    retried = sorted(int(x) for x in rota.ok("retry", "--failed").split())
    assert retried == [two, three]
    assert rota.wait(two, three) == 0
    assert rota.show(fine)["attempts"] == 1
    # A task that succeeded cannot be retried.
    r = rota.run("retry", fine)
    assert r.returncode != 0 and r.stderr.startswith("rota: ")


# `rota clean` removes finished tasks and their logs, and leaves unfinished ones alone.
def test_clean(rota):
    done = rota.add("--", "echo", "done")
    failed = rota.add("--", "false")
    assert rota.run("wait", done, failed).returncode == 1
    rota.ok("queue", "pause", "held")
    held = rota.add("--queue", "held", "--", "true")
    assert os.path.exists(rota.log_path(done))
    out = rota.json("clean")
    assert out["removed"] == 2
    assert [t["id"] for t in rota.tasks()] == [held]
    assert not os.path.exists(rota.log_path(done))
    assert not os.path.exists(rota.log_path(failed))
    r = rota.run("show", done)
    assert r.returncode == 1 and "does not exist" in r.stderr


# ---- priority and queue limits ------------------------------------------------------------


# With one worker, higher priority tasks start first, and tasks of equal priority start in
# the order they were added.
def test_priority_order(rota):
    rota.ok("scale", "1")
    wait_for(lambda: len(rota.workers()) == 1, message="the pool to shrink to 1 worker")
    rota.ok("queue", "pause", "q")
    order = os.path.join(rota.work, "order")
    ids = {}
    for name, prio in [("low1", 0), ("high1", 10), ("low2", 0), ("mid", 5), ("high2", 10),
                       ("neg", -1), ("low3", 0)]:
        ids[name] = rota.add("--queue", "q", "--priority", prio, "--shell", f"echo {name} >> {order}")
    rota.ok("queue", "resume", "q")
    assert rota.wait(*ids.values()) == 0
    with open(order) as f:
        assert f.read().split() == ["high1", "high2", "mid", "low1", "low2", "low3", "neg"]
    started = [rota.show(ids[n])["started_at"] for n in ("high1", "high2", "mid", "low1")]
    assert started == sorted(started)


# `rota queue limit q 1`: with 2 workers, at most one task of q runs at a time, while other
# queues keep using the other worker.
def test_queue_limit(rota):
    rota.ok("queue", "limit", "q", "1")
    trace = os.path.join(rota.work, "trace")
    ids = [
        rota.add("--queue", "q", "--shell",
                 f"echo start >> {trace}; sleep 0.15; echo end >> {trace}")
        for _ in range(4)
    ]
    other = rota.add("--", "echo", "other")
    # The other queue is not held up behind q's limit.
    assert rota.wait(other) == 0
    for _ in range(3):
        running = rota.tasks("--state", "running", "--queue", "q")
        assert len(running) <= 1, running
    assert rota.wait(*ids) == 0
    with open(trace) as f:
        assert f.read().split() == ["start", "end"] * 4
    queues = {q["name"]: q for q in rota.json("queue", "list")}
    assert queues["q"]["limit"] == 1


# --unique KEY: while a task with the key is unfinished, adding another queues nothing and
# prints the existing id (exit 0, a note on stderr); once it finished, the key is free again,
# unless --unique-for says it stays taken that long after.
def test_unique_tasks(rota):
    gate = os.path.join(rota.work, "gate")
    first = rota.add("--unique", "nightly", "--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done")
    again = rota.run("add", "--unique", "nightly", "--", "true")
    assert again.returncode == 0
    assert again.stdout.strip() == str(first)
    assert "already holds --unique nightly" in again.stderr
    open(gate, "w").close()
    assert rota.wait(first) == 0
    # It finished: the key is free for a plain --unique ...
    second = rota.add("--unique", "nightly", "--", "true")
    assert second != first
    assert rota.wait(second) == 0
    # ... but not for one that asks for no task finished within the hour.
    third = rota.run("add", "--unique", "nightly", "--unique-for", "1h", "--", "true")
    assert third.stdout.strip() == str(second)
    assert len(rota.tasks()) == 2
    assert rota.run("add", "--unique-for", "1h", "--", "true").returncode == 2


# A command task returns a result by writing JSON to the file named by $ROTA_RESULT: rota keeps
# it (shown by rota show --json and rota result); a result that is not JSON or is over 64 KiB
# is not kept, and the task's record says why; a task without one has no result (exit 1).
def test_command_results_through_rota_result(rota):
    ok = rota.add("--shell", 'printf \'{"module": "core", "findings": [1, 2]}\' > "$ROTA_RESULT"')
    bad = rota.add("--shell", 'echo not json > "$ROTA_RESULT"')
    big = rota.add("--shell", 'printf \'"%070000d"\' 0 > "$ROTA_RESULT"')
    none = rota.add("--", "true")
    for t in (ok, bad, big, none):
        assert rota.wait(t) == 0
    assert json.loads(rota.ok("result", str(ok))) == {"module": "core", "findings": [1, 2]}
    assert rota.show(ok)["result"] == {"module": "core", "findings": [1, 2]}
    assert rota.show(bad)["result"] is None and "not JSON" in rota.show(bad)["error"]
    assert rota.show(big)["result"] is None and "64 KiB" in rota.show(big)["error"]
    missing = rota.run("result", str(none))
    assert missing.returncode == 1 and "no result" in missing.stderr
    assert not [f for f in os.listdir(os.path.join(rota.home, "logs")) if f.endswith(".result")]
