"""rota_worker.py, black-box: each test starts tests/echo_worker.py and plays the daemon over its
stdin and stdout, which are pipes or, as the daemon makes them, socketpairs. Waits are on lines
and exits, with timeouts only as a guard against a hang.

Run: /usr/bin/python3 -m pytest -q clients/python
"""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ECHO_WORKER = Path(__file__).parent / "tests" / "echo_worker.py"
GUARD_S = 20  # a test that waits this long for a line or an exit has failed
A_YEAR_MS = 365 * 86_400_000  # the grace of the shutdown a pool that shrinks sends


class Worker:
    """A running echo_worker.py and the daemon's end of its stdin and stdout."""

    def __init__(self, tmp_path, concurrency=None, env=None, transport="pipe"):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ROTA_")}
        environ.update({"ROTA_HEARTBEAT_MS": "100", **(env or {})})
        args = [sys.executable, str(ECHO_WORKER)]
        if concurrency is not None:
            args.append(str(concurrency))
        self.stderr_path = tmp_path / "stderr.log"
        with open(self.stderr_path, "wb") as stderr:
            if transport == "socket":
                self._start_on_sockets(args, stderr, environ)
            else:
                self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=stderr, env=environ)
                self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        self.raw_lines = []  # every line the worker wrote on stdout
        self._lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _start_on_sockets(self, args, stderr, environ):
        ours_in, theirs_in = socket.socketpair()
        ours_out, theirs_out = socket.socketpair()
        with theirs_in, theirs_out:
            self.proc = subprocess.Popen(args, stdin=theirs_in.fileno(),
                                         stdout=theirs_out.fileno(), stderr=stderr, env=environ)
        self._sockets = (ours_in, ours_out)  # the files below need them open
        self._stdin = ours_in.makefile("wb", buffering=0)
        self._stdout = ours_out.makefile("rb")

    def _read_stdout(self):
        for raw in self._stdout:
            self.raw_lines.append(raw)
            self._lines.put(raw)
        self._lines.put(None)

    def send(self, *messages):
        data = "".join(json.dumps(m) + "\n" for m in messages)
        self.send_raw(data)

    def send_raw(self, text):
        self._stdin.write(text.encode())
        self._stdin.flush()

    def task(self, task, payload, **fields):
        self.send({"type": "task", "task": task, "attempt": 1, "deadline_ms": 0,
                   "payload": payload, **fields})

    def next(self, deadline=None):
        deadline = deadline or time.monotonic() + GUARD_S
        raw = self._lines.get(timeout=max(0, deadline - time.monotonic()))
        if raw is None:
            raise EOFError("the worker closed its stdout")
        return json.loads(raw)

    def expect(self, type_, skip=("heartbeat",), **fields):
        """Returns the next message not of a type in `skip`, after checking its type and
        `fields`."""
        deadline = time.monotonic() + GUARD_S
        while True:
            message = self.next(deadline)
            if message["type"] not in skip:
                break
        assert message["type"] == type_, message
        for name, value in fields.items():
            assert message.get(name) == value, message
        return message

    def rest(self):
        """Every message until the worker closes stdout, heartbeats left out."""
        messages = []
        deadline = time.monotonic() + GUARD_S
        while True:
            try:
                message = self.next(deadline)
            except EOFError:
                return messages
            if message["type"] != "heartbeat":
                messages.append(message)

    def expect_started(self, task):
        self.expect("heartbeat", skip=(), task=task, message="started")

    def close_stdin(self):
        self._stdin.close()
        if hasattr(self, "_sockets"):
            self._sockets[0].close()

    def wait(self):
        return self.proc.wait(timeout=GUARD_S)

    def stderr(self):
        return self.stderr_path.read_text()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(params=["pipe", "socket"])
def start(request, tmp_path):
    workers = []

    def start_worker(concurrency=None, env=None):
        worker = Worker(tmp_path, concurrency, env, transport=request.param)
        workers.append(worker)
        worker.expect("hello")
        return worker

    yield start_worker
    for worker in workers:
        worker.kill()


class Fifo:
    """A FIFO a `block` handler waits on until the test releases it."""

    def __init__(self, tmp_path, name="release"):
        self.path = tmp_path / name
        os.mkfifo(self.path)

    def release(self, text="go"):
        # Opening blocks until the handler has the FIFO open: do it in a thread, with a guard.
        def write():
            with open(self.path, "w") as fifo:
                fifo.write(text)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(GUARD_S)
        assert not writer.is_alive(), "the handler never opened the FIFO"


def block(fifo):
    return {"op": "block", "fifo": str(fifo.path)}


# hello

@pytest.mark.parametrize("env, arg, expected", [
    ({}, None, 1),
    ({"ROTA_CONCURRENCY": "3"}, None, 3),
    ({}, 4, 4),
    ({"ROTA_CONCURRENCY": "5"}, 2, 2),
    ({"ROTA_CONCURRENCY": "1"}, 4, 1),
])
def test_hello_says_protocol_1_and_a_concurrency_never_above_rota_concurrency(
        tmp_path, env, arg, expected):
    worker = Worker(tmp_path, arg, env)
    try:
        worker.expect("hello", protocol=1, concurrency=expected)
    finally:
        worker.kill()


# Results

@pytest.mark.parametrize("k", [1, 2])
def test_a_returned_value_is_the_result_of_done(start, k):
    worker = start(k)
    worker.task(7, {"op": "echo", "value": {"words": 3}})
    worker.expect("done", task=7, result={"words": 3})


def test_none_is_done_without_a_result(start):
    worker = start()
    worker.task(7, {"op": "echo", "value": None})
    assert "result" not in worker.expect("done", task=7)


@pytest.mark.parametrize("k", [1, 2])
def test_an_exception_is_a_retryable_fail_with_its_message(start, k):
    worker = start(k)
    worker.task(8, {"op": "raise", "message": "boom"})
    message = worker.expect("fail", task=8, retryable=True)
    assert message["error"] == "ValueError: boom"
    worker.close_stdin()
    worker.wait()
    assert "Traceback" in worker.stderr()  # in the worker's log


@pytest.mark.parametrize("k", [1, 2])
def test_permanent_is_a_fail_without_retry(start, k):
    worker = start(k)
    worker.task(9, {"op": "permanent", "message": "bad input"})
    worker.expect("fail", task=9, error="bad input", retryable=False)


def test_a_result_that_is_not_json_is_a_permanent_fail(start):
    worker = start()
    worker.task(10, {"op": "unserializable"})
    message = worker.expect("fail", task=10, retryable=False)
    assert "not JSON" in message["error"]


def test_the_context_has_the_attempt_and_reports_progress(start):
    worker = start()
    worker.task(11, {"op": "context"}, attempt=3, deadline_ms=1234)
    worker.expect("heartbeat", skip=(), task=11, progress=0.5, message="halfway")
    worker.expect("done", task=11, result={"task": 11, "attempt": 3, "deadline_ms": 1234})


@pytest.mark.parametrize("k", [1, 4])
def test_every_task_of_a_large_burst_is_answered(start, k):
    # Many lines per read: each is handled, none is lost or answered twice.
    worker = start(k)
    n = 3000
    worker.send(*({"type": "task", "task": i, "attempt": 1, "deadline_ms": 0,
                   "payload": {"op": "echo", "value": i}} for i in range(n)))
    answered = [worker.expect("done") for _ in range(n)]
    assert sorted(m["task"] for m in answered) == list(range(n))
    assert all(m["result"] == m["task"] for m in answered)
    if k == 1:
        assert [m["task"] for m in answered] == list(range(n))


# Concurrency and heartbeats

def test_k_handlers_run_at_once(start):
    # Each handler waits at a barrier of three: they can only pass it together.
    worker = start(3)
    for task in (1, 2, 3):
        worker.task(task, {"op": "barrier", "parties": 3})
    done = [worker.expect("done", result="met")["task"] for _ in range(3)]
    assert sorted(done) == [1, 2, 3]


@pytest.mark.parametrize("k", [1, 2])
def test_heartbeats_go_on_while_a_handler_runs(start, tmp_path, k):
    worker = start(k, env={"ROTA_HEARTBEAT_MS": "50"})
    fifo = Fifo(tmp_path)
    worker.task(1, block(fifo))
    worker.expect_started(1)
    worker.expect("heartbeat", skip=())
    worker.expect("heartbeat", skip=())
    fifo.release()
    worker.expect("done", task=1, result={"released": "go"})


# Cancel

@pytest.mark.parametrize("k", [1, 2])
def test_cancel_sets_the_flag_of_its_task(start, k):
    worker = start(k)
    worker.task(1, {"op": "wait_cancel"})
    worker.expect_started(1)
    worker.send({"type": "cancel", "task": 1})
    message = worker.expect("fail", task=1, retryable=True)
    assert "saw the cancel" in message["error"]


def test_a_handler_that_returns_after_a_cancel_fails_as_cancelled(start):
    worker = start(1)
    worker.task(1, {"op": "wait_cancel", "then": "return"})
    worker.expect_started(1)
    worker.send({"type": "cancel", "task": 1})
    worker.expect("fail", task=1, error="cancelled", retryable=True)


def test_a_cancel_for_another_task_is_ignored(start, tmp_path):
    worker = start(1)
    fifo = Fifo(tmp_path)
    worker.task(1, block(fifo))
    worker.expect_started(1)
    worker.send({"type": "cancel", "task": 99})
    fifo.release()
    worker.expect("done", task=1)


# Shutdown, end of file, SIGTERM

@pytest.mark.parametrize("k", [1, 2])
def test_shutdown_waits_for_the_tasks_in_flight_then_exits_0(start, tmp_path, k):
    worker = start(k)
    fifo = Fifo(tmp_path)
    worker.task(1, block(fifo))
    worker.expect_started(1)
    worker.send({"type": "shutdown", "grace_ms": A_YEAR_MS})
    worker.task(2, {"op": "echo", "value": 2})  # refused: no new task after shutdown
    fifo.release()
    answers = {m["task"]: m for m in worker.rest()}
    assert answers[1]["type"] == "done"
    assert answers[2]["type"] == "fail" and answers[2]["retryable"] is True
    assert worker.wait() == 0


@pytest.mark.parametrize("k", [1, 2])
def test_shutdown_exits_0_when_the_grace_ends(start, tmp_path, k):
    worker = start(k)
    fifo = Fifo(tmp_path)
    worker.task(1, block(fifo))
    worker.expect_started(1)
    worker.send({"type": "shutdown", "grace_ms": 50})
    assert worker.wait() == 0
    assert all(json.loads(raw)["type"] != "done" for raw in worker.raw_lines)


@pytest.mark.parametrize("k", [1, 2])
def test_the_end_of_stdin_after_a_shutdown_keeps_its_grace(start, tmp_path, k):
    worker = start(k)
    fifo = Fifo(tmp_path)
    worker.task(1, block(fifo))
    worker.expect_started(1)
    worker.send({"type": "shutdown", "grace_ms": 60000})
    worker.close_stdin()
    fifo.release()
    worker.expect("done", task=1)
    assert worker.wait() == 0


def test_shutdown_when_idle_exits_0_at_once(start):
    worker = start()
    worker.send({"type": "shutdown", "grace_ms": 60000})
    assert worker.wait() == 0


@pytest.mark.parametrize("k", [1, 2])
def test_end_of_stdin_exits_0_even_with_a_handler_running(start, tmp_path, k):
    worker = start(k)
    worker.task(1, block(Fifo(tmp_path)))
    worker.expect_started(1)
    worker.close_stdin()
    assert worker.wait() == 0


def test_end_of_stdin_when_idle_exits_0(start):
    worker = start()
    worker.close_stdin()
    assert worker.wait() == 0


@pytest.mark.parametrize("k", [1, 2])
def test_sigterm_is_a_shutdown(start, tmp_path, k):
    worker = start(k)
    fifo = Fifo(tmp_path)
    worker.task(1, block(fifo))
    worker.expect_started(1)
    worker.proc.send_signal(signal.SIGTERM)
    fifo.release()
    worker.expect("done", task=1)
    assert worker.wait() == 0


def test_sigterm_when_idle_exits_0(start):
    worker = start()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0


# What the daemon may send, and what stdout may carry

def test_an_error_from_the_daemon_goes_to_stderr_and_the_worker_goes_on(start):
    worker = start()
    worker.send({"type": "error", "error": "malformed JSON", "line": "{oops"})
    worker.task(1, {"op": "echo", "value": 1})
    worker.expect("done", task=1)
    worker.close_stdin()
    worker.wait()
    assert "malformed JSON" in worker.stderr()


def test_unknown_types_fields_and_lines_are_ignored(start):
    worker = start()
    worker.send_raw("not json\n[1,2]\n\n")
    worker.send({"type": "from_the_future", "x": 1})
    worker.task(1, {"op": "echo", "value": 1}, token="t", log="/tmp/x", extra={"a": 1})
    worker.expect("done", task=1, result=1)


def test_print_in_a_handler_goes_to_stderr_not_stdout(start):
    worker = start()
    worker.task(1, {"op": "print"})
    worker.expect("done", task=1, result="printed")
    worker.close_stdin()
    assert worker.wait() == 0
    assert all(raw.startswith(b"{") for raw in worker.raw_lines)
    stderr = worker.stderr()
    assert "printed by the handler" in stderr
    assert "echoed by a child" in stderr
