"""The web dashboard's side of the daemon: its files on the TCP listener without the token (the
API still behind it), the page's own routes, and the API additions it uses (newest-first task
lists, reading a log from an offset)."""
import http.client
import json

from conftest import wait_for
from test_observability import free_port


def tcp(port, method, path, token=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn.request(method, path, headers=h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def listening(rota_home):
    port = free_port()
    rota_home.start(workers=1, extra=("--listen", f"127.0.0.1:{port}"))
    token = open(f"{rota_home.home}/token").read().strip()
    return port, token


# The dashboard's page needs no token (it holds no data, and asks for the token itself); every
# API call does, and /v1 errors stay JSON. The page's own paths (/tasks/7) get the same page,
# so a reload or a shared link works.
def test_dashboard_is_served_without_the_token_and_the_api_is_not(rota_home):
    port, token = listening(rota_home)
    status, page_headers, page = tcp(port, "GET", "/")
    assert status == 200
    assert page_headers["content-type"] == "text/html; charset=utf-8"
    assert tcp(port, "GET", "/tasks/7")[2] == page
    assert tcp(port, "GET", "/v1/info")[0] == 401
    assert tcp(port, "GET", "/metrics")[0] == 401
    assert tcp(port, "POST", "/")[0] == 401
    status, _, body = tcp(port, "GET", "/v1/nope", token=token)
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    if b"dashboard was not built" in page:  # a binary built without Node.js
        assert b"nodejs npm" in page
        return
    assert b"/assets/app.js" in page
    assert "script-src 'self'" in page_headers["content-security-policy"]
    status, headers, js = tcp(port, "GET", "/assets/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and js
    # A browser that has the file revalidates it and gets 304, no body.
    status, _, body = tcp(port, "GET", "/assets/app.js", headers={"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    assert tcp(port, "GET", "/assets/nothing.js")[0] == 404


# order=desc lists the newest tasks first; before=ID pages on towards the oldest.
def test_tasks_newest_first(rota):
    ids = [rota.add("--queue", "q", "--", "true") for _ in range(5)]
    newest = rota.api("GET", "/v1/tasks?order=desc&limit=2&queue=q").json()
    assert [t["id"] for t in newest] == [ids[4], ids[3]]
    older = rota.api("GET", f"/v1/tasks?order=desc&before={ids[3]}&queue=q").json()
    assert [t["id"] for t in older] == [ids[2], ids[1], ids[0]]
    bad = rota.api("GET", "/v1/tasks?order=sideways")
    assert bad.status == 400 and bad.json()["error"]["field"] == "order"


# A log is read from an offset (a negative one: its last bytes), and X-Log-End says where the
# next read starts, so a page can follow a growing log without reading it again.
def test_log_from_an_offset(rota):
    task = rota.add("--shell", "printf 'hello world\\n'")
    assert rota.wait(task) == 0
    whole = rota.api("GET", f"/v1/tasks/{task}/log")
    assert whole.body == "hello world\n" and whole.headers["X-Log-End"] == "12"
    tail = rota.api("GET", f"/v1/tasks/{task}/log?offset=-6")
    assert tail.body == "world\n" and tail.headers["X-Log-End"] == "12"
    rest = rota.api("GET", f"/v1/tasks/{task}/log?offset=6")
    assert rest.body == "world\n"
    end = rota.api("GET", f"/v1/tasks/{task}/log?offset=12")
    assert end.body == "" and end.headers["X-Log-End"] == "12"
    assert rota.api("GET", f"/v1/tasks/{task}/log?offset=x").status == 400
