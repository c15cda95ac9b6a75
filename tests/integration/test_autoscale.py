"""Autoscaling by backlog: rota scale --min N --max M."""
import json
import os

from conftest import wait_for


def live_workers(rota):
    return [w for w in rota.workers() if w["pid"] is not None]


# With a backlog that lasts scale_up_wait the pool grows up to --max; once the work is done and
# the workers have idled for scale_down_idle it shrinks back to --min; each change is an event;
# and a fixed `rota scale N` ends autoscaling.
def test_autoscale_grows_with_backlog_and_shrinks_when_idle(rota_home):
    rota = rota_home
    rota.start(workers=1, extra=("--scale-up-wait", "200ms", "--scale-down-idle", "500ms"))
    rota.ok("scale", "--min", "1", "--max", "3")
    gate = os.path.join(rota.work, "gate")
    lines = "".join(f"while [ ! -e {gate} ]; do sleep 0.02; done; echo {i}\n" for i in range(9))
    rota.ok("add", "--stdin", input=lines)
    wait_for(lambda: len(live_workers(rota)) == 3, message="the pool to grow to --max 3")
    assert rota.json("info")["autoscale"] == {"min": 1, "max": 3}

    open(gate, "w").close()
    assert rota.wait("--all") == 0
    wait_for(lambda: len(live_workers(rota)) == 1, message="the pool to shrink to --min 1")
    events = [json.loads(line) for line in rota.ok("events", "--json", "--last", "100").splitlines()]
    details = [e["detail"] for e in events if e["kind"] == "autoscale"]
    assert any("from 1 to 3" in d for d in details), details
    assert any("from 3 to 1" in d for d in details), details

    rota.ok("scale", "2")
    wait_for(lambda: len(live_workers(rota)) == 2, message="the fixed size of 2")
    assert rota.json("info")["autoscale"] is None


# Nonsense ranges are refused with exit 2.
def test_autoscale_refuses_bad_ranges(rota):
    assert rota.run("scale", "--min", "3", "--max", "2").returncode == 2
    assert rota.run("scale", "--min", "1").returncode == 2
    assert rota.run("scale", "4", "--min", "1", "--max", "5").returncode == 2
