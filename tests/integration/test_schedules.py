"""Schedules as a user sees them: every N and cron (in a time zone), the overlap policies, catch-up
after downtime, sweeps over a glob or @FILE whose cursor survives kill -9, `rota add --each`
batches, results of a sweep, and the schedule commands and HTTP routes with their errors."""

import csv
import datetime
import io
import json
import os
import re
import threading
import time

import pytest

from conftest import TIMESTAMP_RE, wait_for

EVERY_1H_MS = 3_600_000


# ---- helpers -------------------------------------------------------------------------------


def ms(text):
    """An RFC 3339 UTC stamp ("2026-11-23T08:05:05.183Z") as milliseconds since the epoch."""
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return round(t.timestamp() * 1000)


def now_ms():
    return round(time.time() * 1000)


def sleep_until_ms(t):
    """Sleeps until the wall clock reads `t` (the scenario itself: time passing, not a guess)."""
    left = (t - now_ms()) / 1000
    if left > 0:
        time.sleep(left)


def slot_after(anchor, every, t):
    """The first slot of an every-`every` schedule created at `anchor` strictly after `t`."""
    if t < anchor:
        return anchor + every
    return anchor + ((t - anchor) // every + 1) * every


def slot_at_or_before(anchor, every, t):
    return anchor + ((t - anchor) // every) * every


def fired(rota, name):
    """The tasks schedule `name` fired, oldest first."""
    return sorted(rota.tasks("--schedule", name), key=lambda t: t["id"])


def show(rota, name):
    return rota.json("schedule", "show", name)


def events(rota):
    """Every event, as `rota events --json` prints them (one JSON object per line)."""
    out = rota.ok("events", "--json", "--last", "100000").strip()
    if out.startswith("["):
        return json.loads(out)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def schedule_events(rota, name):
    return [e for e in events(rota) if e["kind"] == "schedule" and e["detail"].startswith(name + ":")]


def add_schedule(rota, name, *args):
    """`rota schedule add NAME ARGS...` with --json (before any `--`); returns the schedule."""
    cut = args.index("--") if "--" in args else len(args)
    s = json.loads(rota.ok("schedule", "add", name, *args[:cut], "--json", *args[cut:]))
    assert s["name"] == name
    return s


def write_files(directory, names):
    os.makedirs(directory, exist_ok=True)
    for n in names:
        with open(os.path.join(directory, n), "w") as f:
            f.write(n + "\n")


def gate_loop(gate="gate"):
    """A shell line that runs until the file `gate` exists in its working directory."""
    return f"while [ ! -e {gate} ]; do sleep 0.01; done"


def assert_no_overlap(tasks):
    """No firing was made while the previous one was unfinished, and none ran alongside it."""
    for a, b in zip(tasks, tasks[1:]):
        assert a["finished_at"] is not None, f"task {b['id']} was fired while task {a['id']} ran: {a}"
        assert ms(b["created_at"]) >= ms(a["finished_at"]), (a, b)
        if b["started_at"] is not None:
            assert ms(b["started_at"]) >= ms(a["finished_at"]), (a, b)


# ---- overlap -------------------------------------------------------------------------------


# --overlap skip (the default): a schedule firing every 300ms whose task takes 1s never has two
# firings at once: each firing comes after the previous task finished, and every slot that
# came while a task ran is recorded as a "skipped" event naming that unfinished task.
def test_overlap_skip_never_overlaps(rota):
    s = add_schedule(rota, "tick", "--every", "300ms", "--", "sleep", "1")
    assert s["overlap"] == "skip"
    seen_unfinished = []

    def three_firings():
        seen_unfinished.append(show(rota, "tick")["unfinished"])
        ts = fired(rota, "tick")
        return ts if len(ts) >= 3 else None

    wait_for(three_firings, timeout=20, message="3 firings of tick")
    rota.ok("schedule", "pause", "tick")
    tasks = fired(rota, "tick")
    assert max(seen_unfinished) == 1, seen_unfinished
    assert_no_overlap(tasks)
    by_id = {t["id"]: t for t in tasks}

    skipped = [e for e in schedule_events(rota, "tick") if "skipped" in e["detail"]]
    assert skipped, "no 'skipped' event although slots came while a task ran"
    for e in skipped:
        m = re.search(r"for (\S+Z)\b.*task (\d+)", e["detail"])
        assert m, e
        slot, blocker = ms(m.group(1)), by_id[int(m.group(2))]
        # The skipped slot fell while the task it names was unfinished.
        assert ms(blocker["created_at"]) <= slot, (e, blocker)
        assert blocker["finished_at"] is None or slot <= ms(blocker["finished_at"]), (e, blocker)


# --overlap queue: a slot that comes while the previous task runs is held (the schedule shows
# held: 1), and the held firing runs as soon as that task finishes, before the next slot,
# never alongside it.
def test_overlap_queue_holds_then_runs_after(rota):
    s = add_schedule(rota, "q", "--every", "1s", "--overlap", "queue", "--shell", gate_loop())
    anchor, every = ms(s["created_at"]), 1000

    held = wait_for(lambda: (v := show(rota, "q"))["held"] >= 1 and v, timeout=20,
                    message="a held firing of q")
    assert held["unfinished"] == 1
    [first] = fired(rota, "q")
    assert first["state"] == "running"
    # Let the first task finish just after the slot that was held, well before the next one.
    open(os.path.join(rota.work, "gate"), "w").close()
    first = rota.wait_state(first["id"], "succeeded")
    next_slot = slot_after(anchor, every, ms(first["finished_at"]))

    second = wait_for(lambda: (ts := fired(rota, "q")) and len(ts) >= 2 and ts[1], timeout=20,
                      message="the held firing of q")
    assert ms(second["created_at"]) >= ms(first["finished_at"])
    assert ms(second["created_at"]) < next_slot, (
        f"the held firing came at {second['created_at']}, not right after task {first['id']} "
        f"finished at {first['finished_at']} (the next slot was at {next_slot})"
    )
    wait_for(lambda: show(rota, "q")["held"] == 0, message="the held firings to drain")
    rota.ok("schedule", "pause", "q")
    tasks = fired(rota, "q")
    assert rota.wait(*[t["id"] for t in tasks]) == 0
    assert_no_overlap(fired(rota, "q"))
    held_events = [e for e in schedule_events(rota, "q") if "held" in e["detail"]]
    assert held_events and f"task {first['id']} " in held_events[0]["detail"], held_events
    assert not [e for e in schedule_events(rota, "q") if "skipped" in e["detail"]]


# --overlap allow: a second firing runs while the first still runs (two tasks of the schedule
# running at once, overlapping intervals), and nothing is skipped.
def test_overlap_allow_runs_both(rota):
    add_schedule(rota, "a", "--every", "300ms", "--overlap", "allow", "--shell", gate_loop())

    def two_running():
        running = [t for t in fired(rota, "a") if t["state"] == "running"]
        return running if len(running) >= 2 else None

    wait_for(two_running, timeout=20, message="two firings of a running at once")
    assert show(rota, "a")["unfinished"] >= 2
    rota.ok("schedule", "pause", "a")
    open(os.path.join(rota.work, "gate"), "w").close()
    ids = [t["id"] for t in fired(rota, "a")]
    assert rota.wait(*ids) == 0
    t1, t2 = fired(rota, "a")[:2]
    assert ms(t2["started_at"]) < ms(t1["finished_at"]), (t1, t2)
    assert not [e for e in schedule_events(rota, "a") if "skipped" in e["detail"]]


# A paused schedule fires nothing: firings that --overlap queue held while a task ran are not
# started while the schedule is paused (an unpaused schedule beside it shows time passing).
def test_paused_queue_fires_nothing(rota):
    add_schedule(rota, "q", "--every", "300ms", "--overlap", "queue", "--shell", gate_loop())
    held = wait_for(lambda: (v := show(rota, "q"))["held"] >= 1 and v, timeout=20,
                    message="a held firing of q")
    assert held["unfinished"] == 1
    rota.ok("schedule", "pause", "q")
    [first] = fired(rota, "q")
    open(os.path.join(rota.work, "gate"), "w").close()
    rota.wait_state(first["id"], "succeeded")
    add_schedule(rota, "witness", "--every", "200ms", "--", "true")
    wait_for(lambda: len(fired(rota, "witness")) >= 2, message="the witness to fire twice")
    late = [t for t in fired(rota, "q") if t["id"] != first["id"]]
    assert late == [], (
        f"paused schedule q fired {len(late)} held firing(s) while paused: "
        f"{[(t['id'], t['created_at']) for t in late]}"
    )


# ---- catch-up ------------------------------------------------------------------------------


# After the daemon was down across several slots of an every-1s schedule: --catch-up none
# fires none of them, --catch-up one (the default) fires exactly one, and --catch-up all fires
# one per missed slot, all at restart; then each goes on from the next slot after the restart.
def test_catch_up_none_one_all(rota):
    every = 1000
    names = {"none": "cu-none", "one": "cu-one", "all": "cu-all"}
    common = ("--every", "1s", "--overlap", "allow")
    add_schedule(rota, names["none"], *common, "--catch-up", "none", "--", "true")
    s = add_schedule(rota, names["one"], *common, "--", "true")
    assert s["catch_up"] == "one"
    add_schedule(rota, names["all"], *common, "--catch-up", "all", "--", "true")
    anchors = {k: ms(show(rota, n)["created_at"]) for k, n in names.items()}
    ref = anchors["one"]
    # The slots of the three schedules are within a few ms of each other, so stopping and
    # restarting in the middle of a slot is far from every schedule's slot boundaries.
    assert max(anchors.values()) - min(anchors.values()) < 200, anchors
    for n in names.values():
        wait_for(lambda: fired(rota, n), timeout=10, message=f"a first firing of {n}")

    stop_at = slot_at_or_before(ref, every, now_ms()) + every // 2
    if stop_at < now_ms():
        stop_at += every
    sleep_until_ms(stop_at)
    rota.stop()  # (no CLI call until the restart: any would start the daemon again)
    stopped = now_ms()
    # Down across three slots; back in the middle of the next one.
    restart_at = stop_at + 3 * every
    if restart_at - now_ms() < 100:
        restart_at += every
    sleep_until_ms(restart_at)
    restart_lo = now_ms()
    rota.start(workers=2)
    restart_hi = now_ms()

    for key, name in names.items():
        anchor = anchors[key]
        before = [t for t in fired(rota, name) if ms(t["created_at"]) <= stopped]
        last_fired = slot_at_or_before(anchor, every, ms(before[-1]["created_at"]))
        missed = (restart_lo - last_fired) // every
        assert missed == (restart_hi - last_fired) // every, "restarted on a slot boundary"
        assert missed >= 3, (key, missed)
        first_after = slot_after(anchor, every, restart_hi)
        # Wait for the first regular firing after the restart: the schedule goes on.
        after = wait_for(
            lambda: (ts := fired(rota, name)[len(before):])
            and any(ms(t["created_at"]) >= first_after for t in ts) and ts,
            timeout=10, message=f"{name} to fire after the restart",
        )
        catch_up = [t for t in after if ms(t["created_at"]) < first_after]
        expected = {"none": 0, "one": 1, "all": missed}[key]
        assert len(catch_up) == expected, (
            f"--catch-up {key}: {len(catch_up)} firings at restart for {missed} missed slots: "
            f"{[t['created_at'] for t in catch_up]}"
        )
        # The catch-up firings happen at the restart, not spread over the following slot.
        assert all(restart_lo - 5 <= ms(t["created_at"]) <= restart_hi + 5 for t in catch_up), catch_up
        for t in after:
            assert t["schedule"] == name and t["labels"]["schedule"] == name
        nxt = show(rota, name)["next_fire"]
        assert (ms(nxt) - anchor) % every == 0, f"{name}: next_fire {nxt} is off its slots"


# A paused schedule stays paused across kill -9 of the daemon, and fires nothing at restart
# (no catch-up) while an unpaused one beside it goes on firing.
def test_paused_survives_kill9(rota):
    add_schedule(rota, "held-back", "--every", "200ms", "--", "true")
    add_schedule(rota, "witness", "--every", "200ms", "--", "true")
    rota.ok("schedule", "pause", "held-back")
    before = len(fired(rota, "held-back"))
    rota.kill9_daemon()
    time.sleep(0.5)  # the scenario: a couple of slots pass while the daemon is dead
    rota.start(workers=2)
    s = show(rota, "held-back")
    assert s["paused"] is True and s["next_fire"] is None
    n = len(fired(rota, "witness"))
    wait_for(lambda: len(fired(rota, "witness")) >= n + 2, message="the witness to fire twice")
    assert len(fired(rota, "held-back")) == before


# ---- sweeps --------------------------------------------------------------------------------


# A sweep over 5 files takes the next file at each firing, and its cursor survives kill -9 of
# the daemon: in the order the tasks were fired, the first cycle is each file exactly once,
# the next cycle starts again at the first file, and a 6th file added during the first cycle
# is in the second one (which re-reads the list).
def test_sweep_cursor_survives_kill9(rota):
    d = os.path.join(rota.work, "items")
    first = ["f1", "f2", "f3", "f4", "f5"]
    write_files(d, first)
    s = add_schedule(rota, "sweep", "--every", "200ms", "--overlap", "allow",
                     "--over", f"{d}/*", "--cwd", d, "--", "echo", "{}")
    assert s["over"] == f"{d}/*"
    wait_for(lambda: len(fired(rota, "sweep")) >= 2, message="2 firings of the sweep")
    pid = rota.json("daemon", "status")["pid"]
    assert rota.kill9_daemon() == pid
    killed = now_ms()
    write_files(d, ["f6"])  # (no CLI call until the restart: any would start the daemon again)
    rota.start(workers=2)
    at_kill = len([t for t in fired(rota, "sweep") if ms(t["created_at"]) <= killed])
    assert at_kill <= 5, f"the first cycle ended before the kill ({at_kill} firings)"

    wait_for(lambda: len(fired(rota, "sweep")) >= 5 + 6 + 1, timeout=20,
             message="the sweep to finish 2 cycles and start a third")
    rota.ok("schedule", "pause", "sweep")
    tasks = fired(rota, "sweep")
    paths = [os.path.join(d, n) for n in first + ["f6"]]
    cycle1, cycle2, rest = tasks[:5], tasks[5:11], tasks[11:]
    assert [t["item"] for t in cycle1] == paths[:5]
    assert [t["item"] for t in cycle2] == paths
    assert [t["item"] for t in rest] == paths[: len(rest)]
    s = show(rota, "sweep")
    assert (s["cycle"], s["cursor"], s["item_count"]) == (3, len(rest), 6), s
    assert rota.wait(*[t["id"] for t in tasks]) == 0
    for t in tasks:
        assert t["schedule"] == "sweep"
        assert rota.log(t["id"]) == t["item"] + "\n"
    # show lists the last run of each item.
    assert sorted(i["item"] for i in s["items"]) == paths
    last_of = {t["item"]: t["id"] for t in tasks}
    assert {i["item"]: i["task"] for i in s["items"]} == last_of


# `--batch K` fires K items at a time and a firing does not straddle two cycles; `schedule
# run` takes the next items too, the cursor is kept across kill -9, and a file added before the
# end of a cycle is in the next one. (A schedule every hour: only `schedule run` fires it.)
def test_sweep_batch_and_run(rota):
    d = os.path.join(rota.work, "src")
    write_files(d, ["a", "b", "c", "d", "e"])
    add_schedule(rota, "pairs", "--every", "1h", "--over", "*", "--batch", "2", "--cwd", d,
                 "--overlap", "allow", "--", "cat", "{}")

    def run():
        ids = [int(x) for x in rota.ok("schedule", "run", "pairs").split()]
        assert rota.wait(*ids) == 0
        return [rota.show(i)["item"] for i in ids]

    assert run() == ["a", "b"]
    assert run() == ["c", "d"]
    rota.kill9_daemon()
    rota.start(workers=2)
    s = show(rota, "pairs")
    assert (s["cycle"], s["cursor"], s["item_count"], s["batch"]) == (1, 4, 5, 2), s
    write_files(d, ["f"])
    assert run() == ["e"]  # the end of cycle 1
    assert run() == ["a", "b"]
    s = show(rota, "pairs")
    assert (s["cycle"], s["cursor"], s["item_count"]) == (2, 2, 6), s
    assert run() == ["c", "d"]
    assert run() == ["e", "f"]
    t = fired(rota, "pairs")[-1]
    assert rota.log(t["id"]) == "f\n"
    assert t["command"]["argv"] == ["cat", "f"]


# A sweep over @FILE takes the file's non-empty lines as items; inside --shell, {} is the
# shell-quoted item (spaces and quotes survive) and $ROTA_ITEM is the item.
def test_sweep_over_file_shell_quoting(rota):
    with open(os.path.join(rota.work, "list.txt"), "w") as f:
        f.write("plain\n\n   \ntwo words\nit's\r\n")
    add_schedule(rota, "lines", "--every", "1h", "--over", "@list.txt",
                 "--shell", 'printf "%s|%s\\n" {} "$ROTA_ITEM"')
    items = []
    for _ in range(3):
        [tid] = [int(x) for x in rota.ok("schedule", "run", "lines").split()]
        assert rota.wait(tid) == 0
        t = rota.show(tid)
        items.append(t["item"])
        assert rota.log(tid) == f"{t['item']}|{t['item']}\n"
    assert items == ["plain", "two words", "it's"]
    assert show(rota, "lines")["item_count"] == 3


# A list may name an item twice: it is one item (once per cycle), the firing succeeds, and the
# daemon goes on running new work at once.
def test_sweep_batch_with_repeated_items(rota):
    with open(os.path.join(rota.work, "dup.txt"), "w") as f:
        f.write("x\nx\ny\n")
    add_schedule(rota, "dup", "--every", "1h", "--over", "@dup.txt", "--batch", "2", "--", "echo", "{}")
    r = rota.run("schedule", "run", "dup")
    after = rota.add("--", "echo", "after")
    waited = rota.run("wait", after, "--timeout", "5s")
    problems = []
    if r.returncode != 0:
        problems.append(f"`rota schedule run dup` exited {r.returncode}: {r.stderr.strip()!r}")
    if waited.returncode != 0:
        problems.append(f"a task queued after that stayed {rota.state(after)} with idle workers "
                        f"(`rota wait {after} --timeout 5s`: {waited.stderr.strip()!r})")
    assert not problems, "; ".join(problems)
    ids = [int(x) for x in r.stdout.split()]
    assert rota.wait(*ids) == 0
    assert [rota.show(i)["item"] for i in ids] == ["x", "y"]
    rota.kill9_daemon()
    rota.start(workers=2)
    s = show(rota, "dup")
    assert (s["cycle"], s["cursor"], s["item_count"]) == (1, 2, 2), s


# Many `schedule run` requests at once each fire the schedule once and return their own ids
# (two of them landing in the same millisecond must not collide).
def test_concurrent_runs_each_fire(rota):
    add_schedule(rota, "solo", "--every", "1h", "--overlap", "allow", "--", "true")
    results = []

    def run():
        r = rota.api("POST", "/v1/schedules/solo/run")
        results.append((r.status, r.body))

    threads = [threading.Thread(target=run) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [(status, body) for status, body in results if status != 200]
    assert not failed, f"{len(failed)} of 20 concurrent runs failed, e.g. {failed[0]}"
    ids = [i for _, body in results for i in json.loads(body)["ids"]]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert rota.wait(*ids) == 0
    assert sorted(t["id"] for t in fired(rota, "solo")) == sorted(ids)


# Each task of a sweep may return a JSON result through $ROTA_RESULT; `rota result ID` prints
# it, and the schedule's tasks carry it in `rota list --json`.
def test_sweep_results(rota):
    d = os.path.join(rota.work, "shards")
    write_files(d, ["s1", "s2", "s3"])
    add_schedule(rota, "res", "--every", "150ms", "--overlap", "allow", "--over", "*", "--cwd", d,
                 "--shell", 'printf \'{"item": "%s"}\' "$ROTA_ITEM" > "$ROTA_RESULT"')
    wait_for(lambda: len(fired(rota, "res")) >= 3, message="3 firings of res")
    rota.ok("schedule", "pause", "res")
    tasks = fired(rota, "res")
    assert rota.wait(*[t["id"] for t in tasks]) == 0
    assert [t["item"] for t in tasks[:3]] == ["s1", "s2", "s3"]
    for t in fired(rota, "res"):
        assert json.loads(rota.ok("result", t["id"])) == {"item": t["item"]}
        assert t["result"] == {"item": t["item"]}


def _results_command_exists(rota):
    r = rota.run("results", "--help")
    return r.returncode == 0 and re.search(r"Usage: \S*rota results", r.stdout) is not None


RESULT_LINE = ('[ "$ROTA_ITEM" != zbad ] || exit 3; '
               'printf \'{"item": "%s"}\' "$ROTA_ITEM" > "$ROTA_RESULT"')


def _check_result_rows(rows, want, parse_result):
    assert sorted(int(r["task"]) for r in rows) == sorted(want)
    for r in rows:
        t = want[int(r["task"])]
        assert r["item"] == t["item"] and r["state"] == t["state"], (r, t)
        assert int(r["duration_ms"]) >= 0
        if t["state"] == "succeeded":
            assert parse_result(r["result"]) == {"item": t["item"]}, r
        else:
            assert r["result"] in (None, ""), r


# `rota results --schedule NAME --format jsonl|csv` prints one row per finished task of the
# schedule (failed ones too) with its item, task, state, duration_ms and result; CSV quotes
# an item with a comma; `--batch N` does the same for an --each batch.
def test_results_command(rota):
    if not _results_command_exists(rota):
        pytest.skip("`rota results` is not there yet")
    d = os.path.join(rota.work, "shards")
    write_files(d, ["c,d", "good1", "zbad"])
    add_schedule(rota, "res", "--every", "1h", "--over", "*", "--cwd", d, "--overlap", "allow",
                 "--shell", RESULT_LINE)
    for _ in range(3):
        rota.ok("schedule", "run", "res")
    assert rota.wait(*[t["id"] for t in fired(rota, "res")]) == 1
    want = {t["id"]: t for t in fired(rota, "res")}
    assert sorted(t["state"] for t in want.values()) == ["failed", "succeeded", "succeeded"]
    # A task of the same home outside the schedule is not in its results.
    other = rota.add("--shell", 'echo "{}" > "$ROTA_RESULT"')
    assert rota.wait(other) == 0

    for fmt in ([], ["--format", "jsonl"]):
        out = rota.ok("results", "--schedule", "res", *fmt)
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert all({"item", "task", "state", "duration_ms", "result"} <= set(r) for r in rows), rows
        _check_result_rows(rows, want, lambda v: v)

    out = rota.ok("results", "--schedule", "res", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert {"item", "task", "state", "duration_ms", "result"} <= set(table[0]), table[0]
    _check_result_rows(table, want, json.loads)

    r = rota.run("add", "--each", "*", "--cwd", d, "--shell", RESULT_LINE)
    batch = int(re.search(r"batch (\d+)", r.stderr).group(1))
    assert rota.run("wait", "--batch", batch).returncode == 1
    want = {t["id"]: t for t in rota.tasks("--batch", batch)}
    out = rota.ok("results", "--batch", batch, "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    _check_result_rows(rows, want, lambda v: v)


# The tasks of a removed schedule stay, and so do their results: `rota results --schedule
# NAME` still prints them, as `rota list --schedule NAME` still lists them.
def test_results_of_removed_schedule(rota):
    if not _results_command_exists(rota):
        pytest.skip("`rota results` is not there yet")
    add_schedule(rota, "gone", "--every", "1h", "--shell", 'echo \'{"n": 1}\' > "$ROTA_RESULT"')
    [tid] = [int(x) for x in rota.ok("schedule", "run", "gone").split()]
    assert rota.wait(tid) == 0
    rota.ok("schedule", "remove", "gone")
    assert [t["id"] for t in rota.tasks("--schedule", "gone")] == [tid]
    r = rota.run("results", "--schedule", "gone", "--format", "jsonl")
    assert r.returncode == 0, r
    [row] = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert (row["task"], row["result"]) == (tid, {"n": 1})


# ---- rota add --each -----------------------------------------------------------------------


# `rota add --each GLOB` queues one task per match (the glob taken from --cwd), prints their ids
# on stdout and the batch id on stderr; {} is the item (shell-quoted inside --shell),
# $ROTA_ITEM too; `rota list --batch N` lists them, and `rota wait --batch N` exits 1 when one
# of them failed, 0 when all succeeded.
def test_add_each_batch(rota):
    d = os.path.join(rota.work, "in")
    names = ["a", "b b", "c'c", "fail"]
    write_files(d, names)
    r = rota.run("add", "--each", "*", "--cwd", d,
                 "--shell", 'printf "%s|%s\\n" {} "$ROTA_ITEM"; [ "$ROTA_ITEM" != fail ]')
    assert r.returncode == 0, r
    ids = [int(x) for x in r.stdout.split()]
    assert len(ids) == 4
    m = re.fullmatch(r"rota: batch (\d+): 4 tasks.*\n", r.stderr)
    assert m, r.stderr
    batch = int(m.group(1))
    assert rota.run("wait", "--batch", batch).returncode == 1
    tasks = rota.tasks("--batch", batch)
    assert [t["id"] for t in tasks] == ids
    assert [t["item"] for t in tasks] == names
    assert {t["batch"] for t in tasks} == {batch}
    for t in tasks:
        assert rota.log(t["id"]) == f"{t['item']}|{t['item']}\n"
        assert t["state"] == ("failed" if t["item"] == "fail" else "succeeded")

    # argv mode: {} is replaced inside each argument; a second batch gets its own id.
    r = rota.run("add", "--each", f"{d}/[abc]*", "--", "echo", "<{}>", "x{}{}")
    assert r.returncode == 0, r
    batch2 = int(re.search(r"batch (\d+)", r.stderr).group(1))
    assert batch2 != batch
    assert rota.run("wait", "--batch", batch2).returncode == 0
    second = rota.tasks("--batch", batch2)
    assert [t["id"] for t in second] == [int(x) for x in r.stdout.split()]
    for t in second:
        item = t["item"]
        assert item.startswith(d + "/")
        assert rota.log(t["id"]) == f"<{item}> x{item}{item}\n"
    assert [t["id"] for t in rota.tasks("--batch", batch)] == ids


# `rota add --each @FILE` takes the file's non-empty lines.
def test_add_each_from_file(rota):
    with open(os.path.join(rota.work, "hosts"), "w") as f:
        f.write("alpha\n\nbeta gamma\n")
    r = rota.run("add", "--each", "@hosts", "--", "echo", "host={}")
    assert r.returncode == 0, r
    batch = int(re.search(r"batch (\d+): 2 tasks", r.stderr).group(1))
    assert rota.run("wait", "--batch", batch).returncode == 0
    logs = [rota.log(t["id"]) for t in rota.tasks("--batch", batch)]
    assert logs == ["host=alpha\n", "host=beta gamma\n"]


# ---- the schedule commands -----------------------------------------------------------------


# add/list/show report a schedule's fields; pause makes next_fire null; `schedule run` fires
# once now even while paused and prints the new ids, and the schedule stays paused; resume
# fires again from the next slot; show reports recent runs and the success rate; remove
# deletes the schedule but keeps its tasks.
def test_pause_resume_run_remove_and_fields(rota):
    out = rota.ok("schedule", "add", "hourly", "--every", "1h", "--cwd", rota.work,
                  "--shell", "test -e ok && echo fine")
    s = show(rota, "hourly")
    assert out == f"hourly: next firing at {s['next_fire']}\n"
    assert TIMESTAMP_RE.match(s["created_at"]) and TIMESTAMP_RE.match(s["next_fire"])
    assert ms(s["next_fire"]) == ms(s["created_at"]) + EVERY_1H_MS
    assert s["paused"] is False
    assert (s["overlap"], s["catch_up"], s["every_ms"]) == ("skip", "one", EVERY_1H_MS)
    assert (s["unfinished"], s["held"], s["recent_runs"]) == (0, 0, [])
    assert s["success_rate"] is None and s["finished_runs"] == 0
    assert "over" not in s and "cron" not in s
    [listed] = rota.json("schedule", "list")
    assert listed["name"] == "hourly" and listed["next_fire"] == s["next_fire"]

    rota.ok("schedule", "pause", "hourly")
    s = show(rota, "hourly")
    assert s["paused"] is True and s["next_fire"] is None
    assert "paused" in rota.ok("schedule", "list")

    # Fire now, while paused: one failing run, then one succeeding run.
    [fail_id] = [int(x) for x in rota.ok("schedule", "run", "hourly").split()]
    assert rota.wait(fail_id) == 1
    open(os.path.join(rota.work, "ok"), "w").close()
    ran = rota.json("schedule", "run", "hourly")
    assert ran["schedule"] == "hourly"
    [ok_id] = ran["ids"]
    assert rota.wait(ok_id) == 0
    assert rota.log(ok_id) == "fine\n"
    t = rota.show(ok_id)
    assert t["schedule"] == "hourly" and t["labels"] == {"schedule": "hourly"}
    s = show(rota, "hourly")
    assert s["paused"] is True and s["next_fire"] is None
    assert [r["task"] for r in s["recent_runs"]] == [ok_id, fail_id]
    assert [r["state"] for r in s["recent_runs"]] == ["succeeded", "failed"]
    assert s["recent_runs"][0]["fired_at"] == t["created_at"]
    assert isinstance(s["recent_runs"][0]["duration_ms"], int)
    assert s["success_rate"] == 0.5 and s["finished_runs"] == 2

    before = now_ms()
    rota.ok("schedule", "resume", "hourly")
    s = show(rota, "hourly")
    assert s["paused"] is False
    anchor = ms(s["created_at"])
    assert ms(s["next_fire"]) == slot_after(anchor, EVERY_1H_MS, before)

    rota.ok("schedule", "remove", "hourly")
    assert rota.json("schedule", "list") == []
    r = rota.run("schedule", "show", "hourly")
    assert r.returncode == 1 and "hourly" in r.stderr, r
    assert [t["id"] for t in fired(rota, "hourly")] == [fail_id, ok_id]
    # The name is free again.
    rota.ok("schedule", "add", "hourly", "--every", "1h", "--", "true")


# --jitter DUR puts the next firing somewhere in [slot, slot + DUR].
def test_jitter_bounds_next_fire(rota):
    s = add_schedule(rota, "jit", "--every", "1h", "--jitter", "10m", "--", "true")
    slot = ms(s["created_at"]) + EVERY_1H_MS
    assert slot <= ms(s["next_fire"]) <= slot + 600_000, s


# The HTTP API: POST /v1/schedules creates (201; 409 for a name in use; 400 for a bad
# definition), GET lists and shows, POST .../run fires and returns the ids, .../pause and
# .../resume, DELETE removes (404 afterwards).
def test_http_routes(rota):
    body = {"name": "api", "every": "1h", "task": {"argv": ["echo", "from-api"], "cwd": rota.work}}
    r = rota.api("POST", "/v1/schedules", body)
    assert r.status == 201, r
    assert r.json()["name"] == "api" and r.json()["every_ms"] == EVERY_1H_MS
    assert rota.api("POST", "/v1/schedules", body).status == 409
    bad = {"name": "bad", "cron": "61 * * * *", "task": body["task"]}
    r = rota.api("POST", "/v1/schedules", bad)
    assert r.status == 400 and "61" in r.json()["error"]["message"], r
    r = rota.api("GET", "/v1/schedules")
    assert r.status == 200 and [s["name"] for s in r.json()] == ["api"]

    r = rota.api("POST", "/v1/schedules/api/run")
    assert r.status in (200, 201), r
    [tid] = r.json()["ids"]
    assert rota.wait(tid) == 0
    assert rota.log(tid) == "from-api\n"
    assert rota.show(tid)["schedule"] == "api"

    assert rota.api("POST", "/v1/schedules/api/pause").status == 200
    s = rota.api("GET", "/v1/schedules/api").json()
    assert s["paused"] is True and s["next_fire"] is None
    assert [run["task"] for run in s["recent_runs"]] == [tid]
    assert rota.api("POST", "/v1/schedules/api/resume").status == 200
    assert rota.api("GET", "/v1/schedules/api").json()["next_fire"] is not None

    assert rota.api("DELETE", "/v1/schedules/api").status == 200
    assert rota.api("GET", "/v1/schedules/api").status == 404
    assert rota.api("DELETE", "/v1/schedules/api").status == 404
    assert rota.api("POST", "/v1/schedules/api/run").status == 404
    assert rota.api("GET", "/v1/schedules").json() == []


# ---- cron ----------------------------------------------------------------------------------


# `--cron '* * * * *'` next fires at the next whole minute; in a time zone, a cron's minute is
# that zone's (Kolkata is UTC+05:30, so its :30 is :00 UTC); `schedule list` names the zone.
def test_cron_next_fire(rota):
    s = add_schedule(rota, "minutely", "--cron", "* * * * *", "--", "true")
    created, nxt = ms(s["created_at"]), ms(s["next_fire"])
    assert nxt % 60_000 == 0 and created < nxt <= created + 60_000, s

    s = add_schedule(rota, "kolkata", "--cron", "30 * * * *", "--tz", "Asia/Kolkata", "--", "true")
    created, nxt = ms(s["created_at"]), ms(s["next_fire"])
    assert s["tz"] == "Asia/Kolkata"
    assert nxt % 3_600_000 == 0 and created < nxt <= created + 3_600_000, s

    s = add_schedule(rota, "utc", "--cron", "30 * * * *", "--tz", "UTC", "--", "true")
    created, nxt = ms(s["created_at"]), ms(s["next_fire"])
    assert nxt % 3_600_000 == 1_800_000 and created < nxt <= created + 3_600_000, s

    s = add_schedule(rota, "ny", "--cron", "0 9 * * *", "--tz", "America/New_York", "--", "true")
    nxt = datetime.datetime.fromtimestamp(ms(s["next_fire"]) / 1000, datetime.timezone.utc)
    assert (nxt.hour, nxt.minute, nxt.second) in {(13, 0, 0), (14, 0, 0)}, s  # EDT or EST
    assert ms(s["created_at"]) < ms(s["next_fire"]) <= ms(s["created_at"]) + 86_400_000

    table = rota.ok("schedule", "list")
    assert "Asia/Kolkata" in table and "30 * * * *" in table


# ---- errors --------------------------------------------------------------------------------


# Bad schedule definitions exit 2 with one line on stderr naming what is wrong, and create
# nothing.
@pytest.mark.parametrize(
    "args,mention",
    [
        (["--cron", "*/0 * * * *"], "*/0"),
        (["--cron", "61 * * * *"], "61"),
        (["--cron", "0 0 * * L"], "L"),
        (["--cron", "* * * *"], "* * * *"),
        (["--cron", "0 0 30 2 *"], "0 0 30 2 *"),
        (["--cron", "* * * * *", "--tz", "Mars/Olympus"], "Mars/Olympus"),
        (["--every", "1s", "--tz", "Mars/Olympus"], "Mars/Olympus"),
        ([], "--every"),
        (["--every", "1s", "--cron", "* * * * *"], "--cron"),
        (["--every", "50ms"], "100ms"),
        (["--every", "fast"], "fast"),
        (["--every", "1s", "--overlap", "sometimes"], "sometimes"),
        (["--every", "1s", "--catch-up", "most"], "most"),
        (["--every", "1s", "--over", "/nonexistent/rota-it/*"], "/nonexistent/rota-it/*"),
        (["--every", "1s", "--over", "@/nonexistent/rota-it/list"], "/nonexistent/rota-it/list"),
        (["--every", "1s", "--over", "*", "--batch", "0"], "--batch"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_schedule_exit_2(rota, args, mention):
    write_files(rota.work, ["x"])
    r = rota.run("schedule", "add", "bad", *args, "--", "echo", "{}")
    assert r.returncode == 2, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rota: "), r.stderr
    assert mention in lines[0], r.stderr
    assert rota.json("schedule", "list") == []
    assert rota.tasks() == []


# A schedule name that is not a name is refused (exit 2).
def test_bad_schedule_name(rota):
    r = rota.run("schedule", "add", "bad name", "--every", "1s", "--", "true")
    assert r.returncode == 2 and "bad name" in r.stderr, r
    assert rota.json("schedule", "list") == []


# A second schedule with a name in use is a conflict (exit 1) and leaves the first one as it
# was; show, remove, pause, resume and run of an unknown schedule exit 1 with one line.
def test_duplicate_and_unknown_schedule_exit_1(rota):
    first = add_schedule(rota, "dup", "--every", "1h", "--", "echo", "first")
    r = rota.run("schedule", "add", "dup", "--every", "2h", "--", "echo", "second")
    assert r.returncode == 1, r
    assert len(r.stderr.splitlines()) == 1 and "dup" in r.stderr, r.stderr
    [s] = rota.json("schedule", "list")
    assert s["every_ms"] == first["every_ms"] and s["task"]["argv"] == ["echo", "first"]
    for verb in ("show", "remove", "pause", "resume", "run"):
        r = rota.run("schedule", verb, "nope")
        assert r.returncode == 1, (verb, r)
        assert len(r.stderr.splitlines()) == 1 and "nope" in r.stderr, (verb, r.stderr)
    assert rota.tasks() == []


# `rota add --each` with a glob that matches nothing exits 2 and queues nothing; waiting for a
# batch that does not exist exits 1.
def test_each_errors(rota):
    r = rota.run("add", "--each", "/nonexistent/rota-it/*", "--", "echo", "{}")
    assert r.returncode == 2, r
    assert len(r.stderr.splitlines()) == 1 and "/nonexistent/rota-it/*" in r.stderr, r.stderr
    assert rota.tasks() == []
    r = rota.run("wait", "--batch", "4242")
    assert r.returncode == 1 and "4242" in r.stderr, r


# A --unique key in the template: a firing whose key is still held queues nothing, and the
# schedule goes on firing (the holder is not taken for this firing's own, unfinished task).
def test_unique_template_does_not_stall_the_schedule(rota):
    add_schedule(rota, "uniq", "--every", "200ms", "--unique", "one-at-a-time",
                 "--unique-for", "1h", "--", "true")
    wait_for(lambda: [t for t in rota.tasks("--schedule", "uniq") if t["state"] == "succeeded"],
             message="the first firing to finish")
    # Later slots find the key held (finished within --unique-for): they queue nothing, and
    # are not "skipped" as if a firing were still running.
    first_slot = show(rota, "uniq")["next_fire"]
    wait_for(lambda: show(rota, "uniq")["next_fire"] > first_slot, message="a later slot")
    wait_for(lambda: show(rota, "uniq")["unfinished"] == 0, message="nothing unfinished")
    assert not [e for e in schedule_events(rota, "uniq") if "skipped" in e["detail"]]
    assert len(rota.tasks("--schedule", "uniq")) == 1


# A sweep whose items are gone while the daemon was down cannot catch up; the daemon starts
# anyway, says so, and the schedule can be looked at and removed.
def test_a_sweep_that_cannot_catch_up_does_not_stop_the_daemon(rota):
    items = os.path.join(rota.work, "items")
    write_files(items, ["a"])
    add_schedule(rota, "gone", "--every", "300ms", "--over", "items/*", "--", "true")
    wait_for(lambda: show(rota, "gone")["cycle"] >= 1, message="the first cycle")
    rota.stop()
    os.remove(os.path.join(items, "a"))
    time.sleep(0.7)  # the scenario: slots pass while the daemon is down
    rota.start()
    assert [e for e in schedule_events(rota, "gone") if "matches nothing" in e["detail"]]
    rota.ok("schedule", "remove", "gone")
    assert rota.json("schedule", "list") == []
