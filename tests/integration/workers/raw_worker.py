"""A pool worker that speaks rota's protocol by hand (no helper), for the integration tests.

What it does with a task is up to the payload:
  {"echo": X}                 done with {"echo": X, "attempt": N, "pid": PID}
  {"fail": "msg", "retryable": bool}
  {"fail_until": N}           fail while the attempt is <= N, then done
  {"sleep": S}                done after S seconds (heartbeats go on from a thread)
  {"stop": true}              SIGSTOP itself: a hang, heartbeats stop (only on attempt 1)
  {"crash": true}             exit at once with status 3
  {"print": "text"}           write a line that is not a message, then done
  {"garbage": "text"}         write a broken JSON line, then done
  {"close_stdout": true}      close stdout and keep running (only on attempt 1)
  {"hold": N}                 answer only once N tasks are held at the same time
  {"wait_cancel": true}       answer only a cancel (with fail), or its "ignore" variant:
  {"ignore_cancel": true}     never answer
Every line received is appended to $WORKER_LOG when set.
"""

import json
import os
import signal
import sys
import threading
import time

out_lock = threading.Lock()
log_path = os.environ.get("WORKER_LOG")
held = []  # tasks waiting for "hold"
waiting_cancel = set()


def send(message):
    with out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def note(line):
    if log_path:
        with open(log_path, "a") as f:
            f.write(line)


def heartbeats():
    interval = int(os.environ.get("ROTA_HEARTBEAT_MS", "1000")) / 1000
    while True:
        time.sleep(interval)
        send({"type": "heartbeat"})


def handle(m):
    task, attempt, p = m["task"], m["attempt"], m["payload"]
    if "fail" in p:
        send({"type": "fail", "task": task, "error": p["fail"], "retryable": p.get("retryable", True)})
    elif "fail_until" in p and attempt <= p["fail_until"]:
        send({"type": "fail", "task": task, "error": f"attempt {attempt} failed"})
    elif p.get("stop") and attempt == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    elif p.get("crash"):
        os._exit(3)
    elif p.get("close_stdout") and attempt == 1:
        os.close(1)
        time.sleep(3600)
    elif "hold" in p:
        held.append(task)
        if len(held) >= p["hold"]:
            for t in held:
                send({"type": "done", "task": t, "result": {"held_together": len(held)}})
            held.clear()
    elif p.get("wait_cancel") or p.get("ignore_cancel"):
        waiting_cancel.add(task)
    else:
        if "sleep" in p:
            time.sleep(p["sleep"])
        if "print" in p:
            with out_lock:
                sys.stdout.write(p["print"] + "\n")
                sys.stdout.flush()
        if "garbage" in p:
            with out_lock:
                sys.stdout.write(p["garbage"] + "\n")
                sys.stdout.flush()
        send({"type": "done", "task": task,
              "result": {"echo": p.get("echo"), "attempt": attempt, "pid": os.getpid()}})


def main():
    send({"type": "hello", "protocol": 1})
    threading.Thread(target=heartbeats, daemon=True).start()
    ignoring = set()
    running = []
    for line in sys.stdin:
        note(line)
        m = json.loads(line)
        if m["type"] == "task":
            if m["payload"].get("ignore_cancel"):
                ignoring.add(m["task"])
            t = threading.Thread(target=handle, args=(m,), daemon=True)
            t.start()
            running.append(t)
        elif m["type"] == "cancel":
            if m["task"] in waiting_cancel and m["task"] not in ignoring:
                send({"type": "fail", "task": m["task"], "error": "cancelled as asked"})
        elif m["type"] == "shutdown":
            # Finish what it holds (within the grace), then leave.
            deadline = time.monotonic() + m["grace_ms"] / 1000
            for t in running:
                t.join(max(0, deadline - time.monotonic()))
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
