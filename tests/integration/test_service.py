"""The daemon under systemd: readiness and watchdog notifications, and the unit it installs."""
import os
import socket
import subprocess

from conftest import ROTA_BIN, wait_for


# Under systemd (Type=notify, WatchdogSec=) the daemon says READY once it serves, keeps pinging
# the watchdog from its event loop, and says STOPPING when it stops. The test plays systemd's
# part with a notification socket of its own.
def test_sd_notify_ready_watchdog_stopping(rota_home):
    rota = rota_home
    path = os.path.join(rota.work, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    env = dict(rota.env(), NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    daemon = subprocess.Popen([ROTA_BIN, "--home", rota.home, "daemon", "run", "--workers", "1"],
                              env=env, stderr=subprocess.DEVNULL)
    try:
        messages = []
        while sum("WATCHDOG=1" in m for m in messages) < 2:
            messages.append(sock.recv(4096).decode())
        assert messages[0].startswith("READY=1"), messages
        # It serves once it said it was ready.
        assert rota.ok("info", "--json")
        daemon.terminate()
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
    finally:
        daemon.kill()
        daemon.wait()


# `rota daemon install-service` writes a user unit that runs this binary for this home, with
# Type=notify, a watchdog and KillMode=process (so that a restart keeps running tasks).
def test_install_service_writes_a_user_unit(rota):
    config = os.path.join(rota.work, "config")
    env = dict(rota.env(), XDG_CONFIG_HOME=config)
    out = subprocess.run([ROTA_BIN, "--home", rota.home, "daemon", "install-service"], env=env,
                         capture_output=True, text=True, check=True).stdout
    unit_path = os.path.join(config, "systemd", "user", "rota.service")
    assert unit_path in out
    unit = open(unit_path).read()
    assert f"ExecStart={ROTA_BIN} --home {rota.home} daemon run" in unit
    for line in ("Type=notify", "Restart=on-failure", "KillMode=process"):
        assert line in unit
    assert "WatchdogSec=" in unit
