"""Observability: Prometheus /metrics, the token-protected TCP listener, server-sent events."""
import http.client
import os
import re
import socket
import stat

from conftest import wait_for

LINE = re.compile(r'^(rota_[a-z_]+)(\{([a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*)\})? '
                  r'(-?[0-9.e+-]+|\+Inf|NaN)$')


def parse_prometheus(text):
    """Parses the whole text format strictly: every sample line must match, every family must
    have HELP and TYPE first, counters end in _total, histogram buckets rise to +Inf = count."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        m = LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m.group(1), dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no # TYPE"
        if types[family] == "counter":
            assert family.endswith("_total"), family
        samples.append((name, labels, float(m.group(4))))
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if name == family + "_bucket":
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                series.setdefault(key, []).append((labels["le"], value))
        for key, buckets in series.items():
            values = [v for _, v in buckets]
            assert values == sorted(values), f"{family}{key} buckets do not rise"
            assert buckets[-1][0] == "+Inf"
            count = [v for n, l, v in samples if n == family + "_count"
                     and tuple(sorted(l.items())) == key]
            assert count == [buckets[-1][1]], f"{family}{key}: +Inf bucket != count"
    return types, samples


def value(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tcp_get(port, path, token=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers=h)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    return r.status, body


# /metrics is the Prometheus text format, whole and well-formed, and its numbers follow the work
# done: finished tasks by queue and state, retries, durations and waits, tasks and workers.
def test_metrics_parse_and_count_the_work(rota):
    ok = rota.add("--queue", "q1", "--", "true")
    bad = rota.add("--retries", "1", "--backoff", "10ms", "--", "false")
    assert rota.wait(ok) == 0
    assert rota.wait(bad) == 1
    res = rota.api("GET", "/metrics")
    assert res.status == 200
    types, samples = parse_prometheus(res.body)
    assert types["rota_task_duration_seconds"] == "histogram"
    assert types["rota_tasks"] == "gauge"
    assert value(samples, "rota_tasks_finished_total", queue="q1", state="succeeded") == 1
    assert value(samples, "rota_tasks_finished_total", queue="default", state="failed") == 1
    assert value(samples, "rota_task_retries_total", queue="default") == 1
    assert value(samples, "rota_task_duration_seconds_count", queue="default") == 2
    assert value(samples, "rota_task_wait_seconds_count", queue="q1") == 1
    assert value(samples, "rota_tasks", queue="default", state="failed") == 1
    assert value(samples, "rota_workers", state="idle") == 2
    assert value(samples, "rota_store_commit_seconds_count") > 0


# Without the token, a request is refused on its header alone: the daemon does not read (nor
# hold in memory) a body it would not accept.
def test_tcp_refuses_before_reading_the_body(rota_home):
    rota = rota_home
    port = free_port()
    rota.start(workers=1, extra=("--listen", f"127.0.0.1:{port}"))
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: rota\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 50000000\r\n\r\n")
    # Not one byte of the announced 50 MB is sent: the answer comes anyway.
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the daemon closed without an answer: {data!r}"
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 401"), data[:200]
    assert rota.tasks() == []


# The TCP listener is off by default; with --listen it needs the home's token (a 0600 file made
# at first start) on every request, and metrics_public opens /metrics alone.
def test_tcp_listener_requires_the_token(rota_home):
    rota = rota_home
    port = free_port()
    rota.start(workers=1, extra=("--listen", f"127.0.0.1:{port}"))
    token_path = os.path.join(rota.home, "token")
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    token = open(token_path).read().strip()
    assert len(token) >= 32
    status, body = tcp_get(port, "/v1/info")
    assert status == 401 and '"unauthorized"' in body
    assert tcp_get(port, "/v1/info", token="wrong" + token[5:])[0] == 401
    assert tcp_get(port, "/metrics")[0] == 401
    status, body = tcp_get(port, "/v1/info", token=token)
    assert status == 200 and rota.home in body
    rota.stop()

    port = free_port()
    rota.start(workers=1, extra=("--listen", f"127.0.0.1:{port}", "--metrics-public", "true"))
    assert tcp_get(port, "/metrics")[0] == 200
    assert tcp_get(port, "/v1/info")[0] == 401
    assert open(token_path).read().strip() == token  # the token outlives restarts


# GET /v1/events with Accept: text/event-stream streams every event as it is committed.
def test_events_stream_as_server_sent_events(rota):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(rota.socket)
    sock.sendall(b"GET /v1/events?after=-1 HTTP/1.1\r\nHost: rota\r\nAccept: text/event-stream\r\n\r\n")
    sock.settimeout(20)
    received = b""
    tid = rota.add("--", "true")
    assert rota.wait(tid) == 0

    def saw_success():
        nonlocal received
        received += sock.recv(65536)
        return b'"to":"succeeded"' in received
    wait_for(saw_success, message="the task's success on the event stream")
    head = received.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head
    assert f'"task":{tid}'.encode() in received
    assert b"\nevent: task\ndata: {" in received
    sock.close()


# rota stats counts what happened in the window, per queue (or label): completions, failures,
# retries, success rate; --reset starts the count afresh without touching the task history.
def test_stats_by_queue_and_label_and_reset(rota):
    ids = [rota.add("--queue", "fast", "--label", "team=red", "--", "true") for _ in range(3)]
    bad = rota.add("--queue", "slow", "--retries", "1", "--backoff", "10ms", "--", "false")
    for i in ids:
        assert rota.wait(i) == 0
    assert rota.wait(bad) == 1
    stats = rota.json("stats")
    groups = {g["key"]: g for g in stats["groups"]}
    assert groups["fast"]["completed"] == 3 and groups["fast"]["failed"] == 0
    assert groups["fast"]["success_rate"] == 1.0
    assert groups["slow"]["failed"] == 1 and groups["slow"]["retries"] == 1
    assert groups["slow"]["attempts"] == 2
    assert sum(w["tasks_done"] + w["tasks_failed"] for w in stats["workers"]) == 5
    by_label = {g["key"]: g for g in rota.json("stats", "--by", "label")["groups"]}
    assert by_label["team=red"]["completed"] == 3
    assert rota.run("stats", "--by", "colour").returncode == 2

    rota.ok("stats", "--reset")
    assert rota.json("stats")["groups"] == []
    assert len(rota.tasks()) == 4  # the history stays


# rota export writes RFC 4180 CSV with a header row (quotes doubled, fields with commas quoted)
# and JSON lines, for tasks, workers and events, to stdout or a file.
def test_export_csv_and_jsonl(rota):
    import csv
    import io
    import json
    tid = rota.add("--label", "note=a,b", "--shell", 'echo "say ""hi"", then go"')
    assert rota.wait(tid) == 0
    path = os.path.join(rota.work, "tasks.csv")
    rota.ok("export", "--format", "csv", "-o", path)
    raw = open(path, "rb").read()
    assert raw.count(b"\r\n") == 2  # the header and one record, each ended by CRLF
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    assert len(rows) == 1
    assert rows[0]["id"] == str(tid) and rows[0]["state"] == "succeeded"
    assert rows[0]["command"] == 'echo "say ""hi"", then go"'  # as given
    assert json.loads(rows[0]["labels"]) == {"note": "a,b"}

    out = os.path.join(rota.work, "events.jsonl")
    rota.ok("export", "--format", "jsonl", "--what", "events", "-o", out)
    events = [json.loads(line) for line in open(out)]
    assert any(e["task"] == tid and e["to"] == "succeeded" for e in events)
    workers = list(csv.DictReader(io.StringIO(rota.ok("export", "--what", "workers"))))
    assert len(workers) == 2 and {w["state"] for w in workers} <= {"idle", "working"}
    assert rota.run("export", "--format", "xml").returncode == 2


# rota analyze turns the numbers into findings with actions: a command that mostly times out,
# and a paused queue holding ready work.
def test_analyze_names_timeouts_and_paused_queues(rota):
    marker = "sleep 30.5"
    ids = [rota.add("--timeout", "100ms", "--", "sleep", "30.5") for _ in range(3)]
    rota.ok("queue", "pause", "held")
    rota.add("--queue", "held", "--", "true")
    for i in ids:
        assert rota.wait(i) == 1
    report = rota.json("analyze")
    kinds = {f["kind"]: f for f in report["findings"]}
    assert "timeouts" in kinds, report
    assert marker in kinds["timeouts"]["message"] and "3 of its 3" in kinds["timeouts"]["message"]
    assert "--timeout" in kinds["timeouts"]["action"]
    assert kinds["paused_queue"]["action"] == "rota queue resume held"
