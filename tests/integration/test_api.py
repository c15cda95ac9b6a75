"""The HTTP API on the home's unix socket: the happy path, and JSON errors for bad input —
which must never take the daemon down."""

import json
import socket

import pytest

from conftest import wait_for

BODY_LIMIT = 64 * 1024 * 1024


def assert_error_shape(res, status):
    assert res.status == status, res
    body = res.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], body
    assert isinstance(err.get("message"), str) and err["message"], body
    return err


def assert_alive(rota):
    """The daemon still answers, and still runs work."""
    res = rota.api("GET", "/v1/info")
    assert res.status == 200, res
    tid = rota.add("--", "echo", "alive")
    assert rota.wait(tid) == 0


# POST /v1/tasks creates a task (201 with the task), GET /v1/tasks/ID shows it with its
# attempts, and GET /v1/tasks/ID/log returns its output as text.
def test_api_create_show_log(rota):
    res = rota.api("POST", "/v1/tasks", {"argv": ["echo", "via api"], "cwd": rota.work})
    assert res.status == 201, res
    task = res.json()
    tid = task["id"]
    assert task["command"] == {"argv": ["echo", "via api"], "cwd": rota.work}
    res = rota.api("POST", "/v1/wait", {"ids": [tid], "timeout_ms": 20000})
    assert res.status == 200, res
    assert res.json()["complete"] is True
    shown = rota.api("GET", f"/v1/tasks/{tid}").json()
    assert shown["state"] == "succeeded"
    assert [a["outcome"] for a in shown["attempt_history"]] == ["succeeded"]
    log = rota.api("GET", f"/v1/tasks/{tid}/log")
    assert log.status == 200
    assert log.headers["Content-Type"].startswith("text/plain")
    assert log.body == "via api\n"


# A batch POST {"defaults", "tasks"} creates every task and answers with their ids.
def test_api_batch(rota):
    body = {"defaults": {"cwd": rota.work, "queue": "batch"},
            "tasks": [{"shell": "echo one"}, {"argv": ["echo", "two"], "priority": 2}]}
    res = rota.api("POST", "/v1/tasks", body)
    assert res.status == 201, res
    ids = res.json()["ids"]
    assert len(ids) == 2
    assert rota.wait(*ids) == 0
    assert [t["queue"] for t in rota.tasks()] == ["batch", "batch"]


# Malformed JSON in POST /v1/tasks is a 400 with {"error": {"code", "message"}}; nothing is
# queued.
def test_api_malformed_json(rota):
    for raw in (b"{", b"not json", b'{"argv": ["true"],}'):
        res = rota.api("POST", "/v1/tasks", raw=raw)
        assert_error_shape(res, 400)
    assert rota.tasks() == []


# An unknown field is a 400 whose error.field names it, at the top level, inside a batch's
# tasks, and in its defaults.
def test_api_unknown_field(rota):
    cases = [
        ({"argv": ["true"], "cwd": "/", "bogus": 1}, "bogus"),
        ({"tasks": [{"shell": "true", "cwd": "/", "frob": 1}]}, "frob"),
        ({"defaults": {"cwd": "/", "nope": True}, "tasks": [{"shell": "true"}]}, "nope"),
        ({"tasks": [{"shell": "true", "cwd": "/"}], "extra": 1}, "extra"),
    ]
    for body, field in cases:
        res = rota.api("POST", "/v1/tasks", body)
        err = assert_error_shape(res, 400)
        assert err.get("field") == field, (body, err)
        assert field in err["message"]
    assert rota.tasks() == []


# A request body over 64 MiB is refused with 413 and a JSON error; the daemon carries on.
def test_api_body_too_large(rota):
    size = BODY_LIMIT + 1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(rota.socket)
    head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: rota\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    sock.sendall(head)
    # Send the body as a client would; the server may answer and close before it is all sent.
    chunk = b" " * (1 << 20)
    sent = 0
    try:
        while sent < size:
            n = min(len(chunk), size - sent)
            sock.sendall(chunk[:n])
            sent += n
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                head_part, _, rest = data.partition(b"\r\n\r\n")
                length = [l for l in head_part.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(rest) >= int(length[0].split(b":")[1]):
                    break
    except ConnectionResetError:
        pass
    sock.close()
    status_line, _, _ = data.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), data[:500]
    body = json.loads(data.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] and body["error"]["message"]
    assert rota.tasks() == []
    assert_alive(rota)


# Unknown endpoints are 404 and wrong methods 405, both with a JSON error.
def test_api_unknown_endpoint_and_method(rota):
    assert_error_shape(rota.api("GET", "/v1/nope"), 404)
    assert_error_shape(rota.api("DELETE", "/v1/tasks"), 405)
    assert_error_shape(rota.api("GET", "/v1/tasks/12345"), 404)
    assert_error_shape(rota.api("GET", "/v1/tasks/abc"), 400)


# A query string with a bad percent-escape is a 400, not a crash of the daemon.
def test_api_bad_percent_escape_does_not_crash(rota):
    pid = rota.daemon_pid()
    try:
        res = rota.api("GET", "/v1/tasks?queue=%zz")
    except (http_errors()) as e:
        pytest.fail(f"the daemon dropped the connection ({e!r}); daemon alive: {rota.running()}")
    assert_error_shape(res, 400)
    assert rota.daemon_pid() == pid
    assert_alive(rota)


# A field of the wrong JSON type in a request body is a 400 naming the field, not a crash of
# the daemon.
@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/v1/wait", {"all": True, "timeout_ms": "abc"}, "timeout_ms"),
        ("/v1/tasks/retry", {"failed": "yes"}, "failed"),
        ("/v1/tasks", {"argv": "echo", "cwd": "/"}, "argv"),
        ("/v1/scale", {"workers": "many"}, "workers"),
    ],
    ids=["wait-timeout_ms", "retry-failed", "tasks-argv", "scale-workers"],
)
def test_api_wrong_type_does_not_crash(rota, path, body, field):
    pid = rota.daemon_pid()
    try:
        res = rota.api("POST", path, body)
    except (http_errors()) as e:
        pytest.fail(f"the daemon dropped the connection ({e!r}); daemon alive: {rota.running()}")
    err = assert_error_shape(res, 400)
    assert err.get("field") == field, err
    assert rota.daemon_pid() == pid
    assert_alive(rota)


def http_errors():
    import http.client

    return (http.client.HTTPException, ConnectionError, OSError)
