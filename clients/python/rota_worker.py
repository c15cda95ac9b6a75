"""A rota user-pool worker in a few lines of Python (standard library only, Python 3.11).

    import rota_worker

    def count_words(payload, ctx):
        return {"words": len(payload["text"].split())}

    rota_worker.run(count_words)

`rota pool add words --cmd 'python3 worker.py'` starts copies of such a program, and the daemon
speaks the protocol of docs/protocol.md ("User pools") with each over its stdin and stdout.
`run` speaks it for you:

- It says hello with the concurrency K: `concurrency=` if given, never above $ROTA_CONCURRENCY;
  else $ROTA_CONCURRENCY; else 1. Up to K handlers run at once, each in a thread; with K == 1
  the handler runs on the thread that reads stdin, which is the fastest way for short tasks.
- `handler(payload, ctx)` is called for each task. What it returns is the task's result (any
  JSON value; None for none). An exception fails the attempt, which is retried under the task's
  retry policy; `raise rota_worker.Permanent("why")` fails it without a retry. A handler that
  returns after its task was cancelled fails the attempt with the error "cancelled".
- `ctx.task`, `ctx.attempt` and `ctx.deadline_ms` (Unix ms, 0: none) describe the attempt;
  `ctx.cancelled` is a threading.Event set when the daemon cancels the task (its timeout, or a
  user's cancel): a long handler should check it and stop early; with K == 1 a cancel reaches
  it within about one heartbeat interval. `ctx.progress(0.5, "halfway")` reports progress.
- A heartbeat goes out every $ROTA_HEARTBEAT_MS ms (default 1000) from a thread of its own, so a
  handler may run for as long as its timeout allows. A process that is stopped, or a handler
  that holds the GIL in C code for longer than the daemon's `dead_after`, looks dead.
- On `shutdown` (or SIGTERM, with a grace of 5 s) it takes no new task, waits for the handlers
  in flight up to the grace (even if stdin ends meanwhile), and `run` returns 0. When stdin
  ends without a shutdown (the daemon is gone) `run` returns 0 at once, abandoning handlers in
  flight. If a handler on the reading thread outlives
  the grace, or stdin ends under it, the process ends with os._exit(0).

stdout belongs to the protocol. `run` moves it to a private descriptor, then points descriptor 1
and `sys.stdout` at stderr, which the daemon keeps in the worker's log: a `print()` in a handler,
or a child process it starts, lands in the log instead of corrupting the stream. Descriptor 0
becomes /dev/null for the same reason. Print nothing before calling `run`.
"""

import json
import os
import queue
import select
import signal
import sys
import threading
import time
import traceback

__all__ = ["Context", "Permanent", "run"]

PROTOCOL = 1
_CHUNK = 1 << 16
_SIGTERM_GRACE_MS = 5000
_LONGEST_GRACE_MS = 10**12  # ~30 years; a longer grace is cut to this
# An inline handler that has run this long gets the ticker reading stdin for it, so that a
# cancel reaches it; shorter ones never pay for the hand-over.
_WATCH_AFTER_S = 0.05

_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class Permanent(Exception):
    """Raise in a handler to fail the task at once, without a retry (`retryable: false`)."""


class Context:
    """The attempt a handler runs: `task`, `attempt`, `deadline_ms`, `cancelled`, `progress`."""

    __slots__ = ("task", "attempt", "deadline_ms", "cancelled", "_send", "_finished")

    def __init__(self, task, attempt=1, deadline_ms=0, send=None):
        self.task = task
        self.attempt = attempt
        self.deadline_ms = deadline_ms
        self.cancelled = threading.Event()
        self._send = send
        self._finished = False

    def progress(self, fraction, message=None):
        """Reports progress (0..1, clamped) and an optional message in a heartbeat for this
        task. Does nothing once the handler has returned."""
        if self._finished or self._send is None:
            return
        beat = {"type": "heartbeat", "task": self.task,
                "progress": min(1.0, max(0.0, float(fraction)))}
        if message is not None:
            beat["message"] = str(message)
        self._send(_line(beat))


def run(handler, concurrency=None):
    """Serves tasks with `handler(payload, ctx)` until shutdown or end of stdin; returns 0.

    REQUIRES: called once, from the main thread (for SIGTERM), before anything is printed.
    Raises ValueError if `concurrency` is below 1."""
    k = _concurrency(concurrency)
    in_fd, out_fd = _take_stdio()
    worker = _Worker(handler, k, _Input(in_fd), _Output(out_fd))
    return worker.serve()


def _line(message):
    return _encode_json(message) + "\n"


def _fail_line(task, error, retryable):
    return _line({"type": "fail", "task": task, "error": error, "retryable": retryable})


def _log(text):
    sys.stderr.write(f"rota_worker: {text}\n")
    sys.stderr.flush()


def _env_int(name, default):
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        _log(f"ignoring {name}={text!r}: not a positive integer")
        return default
    return value


def _concurrency(requested):
    limit = _env_int("ROTA_CONCURRENCY", None)
    if requested is None:
        return limit or 1
    if requested < 1:
        raise ValueError(f"concurrency must be at least 1, not {requested}")
    return min(requested, limit) if limit else requested


def _take_stdio():
    """Returns private copies of stdin and stdout. Descriptor 0 becomes /dev/null and 1 a copy
    of stderr, so that handlers and their children can neither read the daemon's messages nor
    write into the protocol."""
    sys.stdout.flush()
    in_fd, out_fd = os.dup(0), os.dup(1)  # os.dup's copies are not inherited by children
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return in_fd, out_fd


def _nonblocking_pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def _poke(fd):
    try:
        os.write(fd, b"x")
    except BlockingIOError:
        pass  # a wake-up is already pending


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


class _Output:
    """Protocol lines to one descriptor. Lines never interleave: a thread that finds no write in
    progress writes everything queued in one write(), so results that are ready together go out
    together. When the daemon has closed the pipe the process exits."""

    def __init__(self, fd):
        self._fd = fd
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._queued = []
        self._writing = False
        self._deferred = []  # the reading thread's lines, sent once per chunk read

    def send(self, line):
        with self._lock:
            self._queued.append(line)
            if self._writing:
                return
            self._writing = True
        self._write_queued()

    def defer(self, line):
        """REQUIRES: called by the reading thread only (and flush_deferred too)."""
        self._deferred.append(line)

    def flush_deferred(self):
        if self._deferred:
            lines, self._deferred = self._deferred, []
            self.send("".join(lines))

    def flush(self):
        """Returns once every line sent so far is written."""
        self.flush_deferred()
        with self._lock:
            while self._writing:
                self._written.wait()

    def _write_queued(self):
        while True:
            with self._lock:
                if not self._queued:
                    self._writing = False
                    self._written.notify_all()
                    return
                data = "".join(self._queued).encode()
                self._queued.clear()
            self._write_all(data)

    def _write_all(self, data):
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            _log(f"stdout is closed ({e.strerror}): the daemon is gone")
            os._exit(0)


class _Input:
    """stdin, read in large chunks into `buf`. Its owner is the reading thread or, while an
    inline handler runs long, the ticker."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        self.eof = False

    def read(self):
        """Appends what is there to `buf`; returns False at end of file."""
        chunk = os.read(self.fd, _CHUNK)
        self.buf += chunk
        self.eof = not chunk
        return bool(chunk)

    def fds(self):
        """What to wait on for more input: nothing once at end of file."""
        return [] if self.eof else [self.fd]

    def take_lines(self):
        """Removes and returns the complete lines in `buf`."""
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        return lines


def _decode(line):
    """Returns the message on a line, or None for a blank or unreadable one."""
    if not line.strip():
        return None
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        _log(f"ignoring a line that is not a JSON object: {line[:200]!r}")
        return None
    return message


def _int_field(message, name, default):
    value = message.get(name, default)
    return value if isinstance(value, (int, float)) else default


class _Worker:
    def __init__(self, handler, k, stdin, out):
        self._handler = handler
        self._k = k
        self._in = stdin
        self._out = out
        self._lock = threading.Lock()
        self._running = {}  # task id -> Context
        self._shutdown_at = None  # time.monotonic() deadline, once shutting down
        self._wake_r, self._wake_w = _nonblocking_pipe()
        self._tasks = None if k == 1 else self._start_threads(k)
        self._ticker = _Ticker(self, _env_int("ROTA_HEARTBEAT_MS", 1000) / 1000)
        self._dispatch = {"task": self._on_task, "cancel": self._on_cancel,
                          "shutdown": self._on_shutdown, "error": self._on_error}
        self.urgent = {"cancel": self._on_cancel, "shutdown": self._on_shutdown}

    def serve(self):
        self._install_sigterm()
        self._out.send(_line({"type": "hello", "protocol": PROTOCOL, "concurrency": self._k}))
        self._ticker.start()
        self._read_until_done()
        self._ticker.stop()
        self._out.flush()
        return 0

    # The reading thread.

    def _read_until_done(self):
        while not self._done():
            if not self._wait_for_input():
                continue
            if not self._in.read() and self._shutdown_at is None:
                return  # the daemon is gone; after a shutdown, its grace still holds
            self._handle_buffered()
            self._out.flush_deferred()

    def _done(self):
        return self._shutdown_at is not None and (not self._running or self.shutdown_overdue())

    def _wait_for_input(self):
        """Returns whether stdin is readable; False when woken to look at the state again."""
        timeout = None
        if self._shutdown_at is not None:
            timeout = max(0.0, self._shutdown_at - time.monotonic())
        readable, _, _ = select.select(self._in.fds() + [self._wake_r], [], [], timeout)
        if self._wake_r in readable:
            _drain(self._wake_r)
        return self._in.fd in readable

    def _handle_buffered(self):
        # An inline handler may leave more input behind (read by the ticker): go round again.
        while lines := self._in.take_lines():
            for line in lines:
                message = _decode(line)
                if message is not None:
                    self._dispatch.get(message.get("type"), _ignore)(message)

    def _on_task(self, message):
        ctx = Context(message.get("task"), _int_field(message, "attempt", 1),
                      _int_field(message, "deadline_ms", 0), self._out.send)
        if self._shutdown_at is not None:
            self._out.defer(_fail_line(ctx.task, "the worker is shutting down", True))
            return
        with self._lock:
            self._running[ctx.task] = ctx
        if self._tasks is None:
            self._run_inline(ctx, message.get("payload"))
        else:
            self._tasks.put((ctx, message.get("payload")))

    def _on_cancel(self, message):
        with self._lock:
            ctx = self._running.get(message.get("task"))
        if ctx is not None:
            ctx.cancelled.set()

    def _on_shutdown(self, message):
        self.begin_shutdown(_int_field(message, "grace_ms", 0))

    def _on_error(self, message):
        text = f"the daemon could not read a line of ours: {message.get('error')}"
        if "line" in message:
            text += f" (line: {message['line']!r})"
        _log(text)

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            _log("run() is not on the main thread: SIGTERM keeps its default action")
            return
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda *_: self.begin_shutdown(_SIGTERM_GRACE_MS))

    # Any thread.

    def begin_shutdown(self, grace_ms):
        """Takes no new task from now on, and gives those in flight `grace_ms` to finish.
        Lock-free: it runs in a signal handler too. A second call keeps the first deadline."""
        if self._shutdown_at is None:
            self._shutdown_at = time.monotonic() + min(max(0, grace_ms), _LONGEST_GRACE_MS) / 1000
        _poke(self._wake_w)
        self._ticker.poke()  # to mind the deadline while a handler runs inline

    def shutdown_overdue(self):
        return self._shutdown_at is not None and time.monotonic() >= self._shutdown_at

    def force_exit(self):
        self._out.flush()
        os._exit(0)

    # Running handlers.

    def _run_inline(self, ctx, payload):
        self._ticker.begin_inline(ctx)
        try:
            line = self._answer(ctx, payload)
        finally:
            self._ticker.end_inline()
        self._finish(ctx, line, self._out.defer)

    def _start_threads(self, k):
        tasks = queue.SimpleQueue()
        for i in range(k):
            threading.Thread(target=self._serve_tasks, args=(tasks,), daemon=True,
                             name=f"rota-handler-{i}").start()
        return tasks

    def _serve_tasks(self, tasks):
        while True:
            ctx, payload = tasks.get()
            self._finish(ctx, self._answer(ctx, payload), self._out.send)

    def _answer(self, ctx, payload):
        """Runs the handler; returns the line that answers the task."""
        try:
            result = self._handler(payload, ctx)
        except Permanent as e:
            return _fail_line(ctx.task, str(e) or "Permanent", False)
        except Exception as e:
            traceback.print_exc()
            return _fail_line(ctx.task, _describe(e), True)
        finally:
            ctx._finished = True
        if ctx.cancelled.is_set():
            return _fail_line(ctx.task, "cancelled", True)
        return _done_line(ctx.task, result)

    def _finish(self, ctx, line, send):
        send(line)  # before the task leaves _running, so that shutdown cannot lose it
        with self._lock:
            if self._running.get(ctx.task) is ctx:
                del self._running[ctx.task]
            idle = not self._running
        if idle and self._shutdown_at is not None:
            _poke(self._wake_w)


def _ignore(message):
    pass  # an unknown type: a newer daemon may send more


def _describe(error):
    return "".join(traceback.format_exception_only(error)).strip()


def _done_line(task, result):
    message = {"type": "done", "task": task}
    if result is not None:
        message["result"] = result
    try:
        return _line(message)
    except (TypeError, ValueError) as e:
        return _fail_line(task, f"the result is not JSON: {e}", False)


class _Ticker(threading.Thread):
    """Sends a heartbeat every `interval` seconds. While a handler runs inline on the reading
    thread for longer than _WATCH_AFTER_S, it also reads stdin in that thread's place, acting at
    once on cancel and shutdown (and on end of file) and leaving all it read in the buffer."""

    def __init__(self, worker, interval):
        super().__init__(daemon=True, name="rota-ticker")
        self._worker = worker
        self._interval = interval
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._inline = None  # the Context of the handler running inline
        self._inline_since = 0.0
        self._watching = False  # the ticker owns stdin
        self._scanned = 0  # how much of the input buffer the ticker has looked at
        self._stopped = False
        self._wake_r, self._wake_w = _nonblocking_pipe()

    def stop(self):
        self._stopped = True
        _poke(self._wake_w)
        self.join()

    def begin_inline(self, ctx):
        with self._lock:
            self._inline = ctx
            self._inline_since = time.monotonic()

    def end_inline(self):
        """Takes stdin back from the ticker, if it has it."""
        with self._lock:
            self._inline = None
            if not self._watching:
                return
        _poke(self._wake_w)
        with self._lock:
            while self._watching:
                self._released.wait()

    def poke(self):
        _poke(self._wake_w)

    def run(self):
        next_beat = time.monotonic() + self._interval
        while not self._stopped:
            if self._should_watch():
                self._watch(self._timeout(next_beat))
            else:
                self._sleep(self._timeout(next_beat))
            now = time.monotonic()
            if now >= next_beat:
                self._worker._out.send(_line({"type": "heartbeat"}))
                next_beat = max(next_beat + self._interval, now)

    def _timeout(self, next_beat):
        until = next_beat
        if self._worker._shutdown_at is not None:
            until = min(until, self._worker._shutdown_at)
        return max(0.0, until - time.monotonic())

    def _should_watch(self):
        with self._lock:
            if self._inline is None:
                self._release_stdin()  # the handler ended between two rounds of watching
                return False
            if self._worker.shutdown_overdue():
                self._worker.force_exit()  # the grace is over and the handler still runs
            if not self._watching and time.monotonic() - self._inline_since >= _WATCH_AFTER_S:
                self._watching = True
                self._scanned = 0  # the buffer holds only the partial line the reader left
            return self._watching

    def _sleep(self, timeout):
        with self._lock:
            if self._inline is not None:
                timeout = min(timeout, _WATCH_AFTER_S)
        select.select([self._wake_r], [], [], timeout)
        _drain(self._wake_r)

    def _watch(self, timeout):
        stdin = self._worker._in
        readable, _, _ = select.select(stdin.fds() + [self._wake_r], [], [], timeout)
        if stdin.fd in readable:
            if not stdin.read() and self._worker._shutdown_at is None:
                self._worker.force_exit()  # the daemon is gone
            self._act_on_urgent(stdin.buf)
        _drain(self._wake_r)
        with self._lock:
            if self._inline is None:
                self._release_stdin()

    def _release_stdin(self):
        """REQUIRES: self._lock is held."""
        if self._watching:
            self._watching = False
            self._released.notify_all()

    def _act_on_urgent(self, buf):
        end = buf.rfind(b"\n")
        if end < self._scanned:
            return
        for line in buf[self._scanned:end].split(b"\n"):
            # The reading thread sees every line again later; only these cannot wait for it.
            if b"cancel" in line or b"shutdown" in line:
                message = _decode(line)
                if message is not None:
                    self._worker.urgent.get(message.get("type"), _ignore)(message)
        self._scanned = end + 1
