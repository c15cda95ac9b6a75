"""rota add --http: HTTP requests as tasks, against a real server on 127.0.0.1."""

import http.server
import json
import threading

import pytest


class Server:
    """Answers 500 to the first request of /flaky, 404 to /missing, 200 otherwise; records
    every request."""

    def __init__(self):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.do_GET()

            def do_GET(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                server.requests.append((self.command, self.path, body,
                                        self.headers.get("Content-Type")))
                hits = sum(1 for r in server.requests if r[1] == self.path)
                code = 500 if (self.path == "/flaky" and hits == 1) else (
                    404 if self.path == "/missing" else 200)
                out = json.dumps({"path": self.path, "hits": hits, "got": body}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def test_the_status_and_body_are_the_result(rota, server):
    task = rota.add("--http", "post", f"{server.url}/hook", "--header",
                    "Content-Type: application/json", "--data", '{"a": 1}')
    assert rota.wait(task) == 0
    assert json.loads(rota.ok("result", task)) == {
        "status": 200, "body": {"path": "/hook", "hits": 1, "got": '{"a": 1}'}}
    assert server.requests == [("POST", "/hook", '{"a": 1}', "application/json")]
    assert rota.show(task)["command"]["http"]["method"] == "POST"


# --json BODY is a JSON body: checked before anything is queued, and sent as application/json.
def test_a_json_body(rota, server):
    task = rota.add("--http", "POST", f"{server.url}/doc", "--json", '{"b": [1, 2]}')
    assert rota.wait(task) == 0
    assert server.requests == [("POST", "/doc", '{"b": [1, 2]}', "application/json")]  # as written
    bad = rota.run("add", "--http", "PUT", f"{server.url}/doc", "--json", "{nope")
    assert bad.returncode == 2 and "not JSON" in bad.stderr, bad.stderr
    both = rota.run("add", "--http", "PUT", f"{server.url}/doc", "--json", "{}", "--data", "x")
    assert both.returncode == 2 and "one body" in both.stderr, both.stderr
    assert len(server.requests) == 1


def test_a_5xx_is_retried_and_a_4xx_is_not(rota, server):
    flaky = rota.add("--http", "GET", f"{server.url}/flaky", "--retries", "2", "--backoff", "50ms")
    missing = rota.add("--http", "GET", f"{server.url}/missing", "--retries", "3")
    assert rota.wait(flaky) == 0
    assert rota.wait(missing) == 1
    assert [a["outcome"] for a in rota.show(flaky)["attempt_history"]] == ["failed", "succeeded"]
    assert rota.show(flaky)["attempt_history"][0]["error"] == "HTTP 500"
    t = rota.show(missing)
    assert t["attempts"] == 1 and t["state"] == "failed"
    assert t["error"] == "HTTP 404 (a client error: not retried)"
    assert json.loads(rota.ok("result", missing))["status"] == 404


def test_a_connection_error_is_retried(rota, server):
    server.httpd.shutdown()
    server.httpd.server_close()
    task = rota.add("--http", "GET", f"{server.url}/gone", "--retries", "1", "--backoff", "50ms")
    assert rota.wait(task) == 1
    t = rota.show(task)
    assert t["attempts"] == 2
    assert "Couldn't connect" in rota.log(task) or "Connection refused" in rota.log(task)


def test_bad_http_tasks_are_refused(rota):
    for args, message in [
        (["--http", "FETCH", "http://x"], '"FETCH" is not a method'),
        (["--http", "GET", "ftp://x"], "is not an http:// or https:// URL"),
        (["--http", "GET", "http://x", "--header", "nocolon"], "is not NAME: VALUE"),
        (["--data", "x", "--", "true"], "go with --http"),
        (["--http", "GET", "http://x", "--", "true"], "give no other"),
    ]:
        r = rota.run("add", *args)
        assert r.returncode == 2, args
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert rota.tasks() == []
