"""rota top, driven in a real terminal (tmux, 80x24) as a person would use it."""
import subprocess

from conftest import ROTA_BIN, wait_for


def tmux(sock, *args):
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True)


# rota top shows the workers with their health, the queues with their depths, and failures as
# they happen, refreshing by itself; it fits 80x24 and quits on q.
def test_top_shows_workers_queues_and_failures_live(rota):
    sock = f"rota-top-{rota.tag}"
    env = " ".join(f"{k}={v}" for k, v in rota.env({"NO_COLOR": "1", "LANG": "C.UTF-8"}).items()
                   if k in ("NO_COLOR", "LANG", "PATH") or k.startswith("ROTA_IT"))
    command = f"env {env} {ROTA_BIN} --home {rota.home} top"
    assert tmux(sock, "new-session", "-d", "-s", "top", "-x", "80", "-y", "24", command).returncode == 0
    try:
        def screen():
            return tmux(sock, "capture-pane", "-t", "top", "-p").stdout

        wait_for(lambda: "WORKER" in screen() and "idle" in screen(), message="the workers on screen")
        lines = screen().splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        tid = rota.add("--queue", "visible", "--", "sh", "-c", "exit 3")
        wait_for(lambda: f"task {tid} failed" in screen(), message="the failure on screen")
        assert "visible" in screen()
        tmux(sock, "send-keys", "-t", "top", "q")
        wait_for(lambda: tmux(sock, "has-session", "-t", "top").returncode != 0,
                 message="rota top to quit on q")
    finally:
        tmux(sock, "kill-server")
