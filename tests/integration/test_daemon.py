"""The daemon and its pool as a user sees them: status, info, permissions, scaling, log caps,
exit codes and bad command lines."""

import json
import os
import stat

import pytest

from conftest import pid_alive, wait_for


# `rota daemon status --json` reports pid, uptime_ms, home and workers for a running daemon.
def test_daemon_status_json(rota):
    s = rota.json("daemon", "status")
    assert s["running"] is True
    assert s["pid"] == rota.daemon_pid()
    assert pid_alive(s["pid"])
    assert isinstance(s["uptime_ms"], int) and s["uptime_ms"] >= 0
    assert s["home"] == rota.home
    assert s["workers"] == 2


# `rota info --json` reports version, home, store, socket and workers.
def test_info_json(rota):
    i = rota.json("info")
    version = rota.ok("--version").strip()
    assert i["version"] and i["version"] in version
    assert i["home"] == rota.home
    assert i["store"] == rota.store
    assert i["socket"] == rota.socket
    assert i["workers"] == 2
    assert os.path.exists(i["store"])


# The API socket is mode 0600 and the home 0700, even when the home existed with looser
# permissions.
def test_socket_and_home_modes(rota_home):
    os.makedirs(rota_home.home, mode=0o755)
    os.chmod(rota_home.home, 0o755)
    rota_home.start(workers=2)
    assert stat.S_IMODE(os.stat(rota_home.home).st_mode) == 0o700
    st = os.stat(rota_home.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


# `rota daemon status` exits 3 when no daemon runs (and --json says running: false).
def test_status_without_daemon_exits_3(rota_home):
    r = rota_home.run("daemon", "status")
    assert r.returncode == 3, r
    assert r.stderr.startswith("rota: ")
    r = rota_home.run("daemon", "status", "--json")
    assert r.returncode == 3, r
    assert json.loads(r.stdout)["running"] is False
    assert not os.path.exists(rota_home.socket)


# `rota daemon stop` really stops the daemon and its workers; `daemon start` twice keeps one
# daemon.
def test_start_twice_and_stop(rota):
    pid = rota.daemon_pid()
    workers = rota.workers()
    rota.start(workers=2)
    assert rota.daemon_pid() == pid
    rota.stop()
    # `daemon stop` returns once the daemon lets go of the home's lock, which the kernel does
    # while the process exits: its last moment may come a little after.
    wait_for(lambda: not pid_alive(pid), message=f"daemon {pid} to exit")
    for w in workers:
        wait_for(lambda: not pid_alive(w["pid"]), message=f"worker {w['pid']} to exit")
    assert rota.run("daemon", "status").returncode == 3


# `rota scale 3` grows the pool to 3 workers; `rota scale 1` shrinks it to 1 and the others
# exit.
def test_scale(rota):
    rota.ok("scale", "3")
    workers = wait_for(lambda: (ws := rota.workers()) and len(ws) == 3 and ws,
                       message="3 workers")
    assert all(pid_alive(w["pid"]) for w in workers)
    assert rota.json("daemon", "status")["workers"] == 3
    rota.ok("scale", "1")
    [kept] = wait_for(lambda: (ws := rota.workers()) and len(ws) == 1 and ws, message="1 worker")
    for w in workers:
        if w["id"] != kept["id"]:
            wait_for(lambda: not pid_alive(w["pid"]), message=f"worker {w['id']} to exit")
    tid = rota.add("--", "true")
    assert rota.wait(tid) == 0


# `rota daemon start --log-cap 1KiB`: a task printing 10 KB keeps a log of about 1 KiB that
# ends with a line saying the output was cut.
def test_log_cap_daemon_start(rota_home):
    rota_home.start(workers=2, extra=["--log-cap", "1KiB"])
    _check_log_cap(rota_home)


# The same cap with `rota daemon run --log-cap 1KiB` (the daemon in the foreground).
def test_log_cap_daemon_run(rota_home):
    rota_home.run_foreground("--workers", "2", "--log-cap", "1KiB")
    _check_log_cap(rota_home)


def _check_log_cap(rota):
    tid = rota.add("--shell", "i=0; while [ $i -lt 1000 ]; do echo 123456789; i=$((i+1)); done")
    assert rota.wait(tid) == 0
    log = rota.log(tid)
    head, _, tail = log.partition("output cut")
    assert tail, f"no 'output cut' marker in a log of {len(log)} bytes"
    assert 1024 <= len(log.encode()) <= 1024 + 200, len(log)
    assert head.startswith("123456789\n")
    assert log.rstrip("\n").splitlines()[-1].count("output cut") == 1
    assert rota.show(tid)["state"] == "succeeded"


# Bad command lines exit 2 with one line on stderr saying what was wrong, and queue nothing.
@pytest.mark.parametrize(
    "args,mention",
    [
        (["add", "--bogus", "--", "true"], "--bogus"),
        (["add", "--timeout", "10x", "--", "true"], "10x"),
        (["add", "--"], "empty"),
        (["add"], "empty"),
        (["add", "--cwd", "/nonexistent/rota-it", "--", "true"], "/nonexistent/rota-it"),
        (["add", "--backoff", "fast", "--", "true"], "fast"),
        (["add", "--label", "novalue", "--", "true"], "novalue"),
        (["add", "--env", "NOEQUALS", "--", "true"], "NOEQUALS"),
        (["add", "--queue", "bad name", "--", "true"], "bad name"),
        (["add", "--retries", "-1", "--", "true"], "retries"),
        (["add", "--shell", "true", "--", "echo"], "--shell"),
        (["list", "--state", "nonsense"], "nonsense"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_input_exit_2(rota, args, mention):
    r = rota.run(*args)
    assert r.returncode == 2, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("rota: ")
    assert mention in lines[0], r.stderr
    assert rota.tasks() == []


# Bad input is caught before any daemon is started.
def test_bad_input_starts_no_daemon(rota_home):
    r = rota_home.run("add", "--timeout", "10x", "--", "true")
    assert r.returncode == 2
    assert rota_home.run("daemon", "status").returncode == 3
    assert not os.path.exists(rota_home.socket)


# A queue name that is not a name is a usage error (exit 2), not "the daemon stopped
# answering".
@pytest.mark.parametrize("verb", [["pause"], ["resume"], ["limit", "1"]], ids=["pause", "resume", "limit"])
def test_queue_bad_name(rota, verb):
    r = rota.run("queue", verb[0], "bad name", *verb[1:])
    assert r.returncode == 2, r
    assert len(r.stderr.splitlines()) == 1 and "bad name" in r.stderr, r.stderr
    assert rota.running()


# `rota show` / `rota wait` / `rota log` of a task that does not exist exit 1 with one line.
def test_missing_task_exit_1(rota):
    for args in (["show", "4242"], ["wait", "4242"], ["log", "4242"], ["cancel", "4242"]):
        r = rota.run(*args)
        assert r.returncode == 1, (args, r)
        assert len(r.stderr.splitlines()) == 1 and "4242" in r.stderr, (args, r.stderr)


# Started in the background (no terminal), the daemon writes its own log as JSON lines with
# time, level, component, worker, task and message; a bad --log-level is refused.
def test_daemon_log_is_json_lines_off_a_terminal(rota):

    pid = rota.workers()[0]["pid"]
    os.kill(pid, 9)
    path = os.path.join(rota.home, "daemon.log")

    def lines():
        return [json.loads(line) for line in open(path) if line.startswith("{")]
    wait_for(lambda: any(e["worker"] is not None and e["component"] == "pool" for e in lines()),
             message="a pool line about the killed worker")
    for e in lines():
        assert list(e) == ["time", "level", "component", "worker", "task", "message"]
    assert rota.run("daemon", "run", "--log-level", "loud").returncode == 2
