"""Command throughput while being watched: N x `true` on 2 workers, once alone, once with
/metrics scraped every second and a server-sent event stream open (what a Prometheus server and
the dashboard do), in the same run. Target: at least 0.95x."""
import socket
import sys
import threading
import time

from rotabench import Daemon, UnixHTTPConnection, timed

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000


def run(d):
    lines = "true\n" * N
    return timed(lambda: (d.rota("add", "--stdin", input=lines), d.rota("wait", "--all")))


def watch(home, stop):
    """Scrapes /metrics every second and reads an event stream until `stop` is set."""
    events = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    events.connect(f"{home}/rota.sock")
    events.sendall(b"GET /v1/events HTTP/1.1\r\nHost: rota\r\nAccept: text/event-stream\r\n\r\n")
    events.settimeout(0.05)
    scraper = UnixHTTPConnection(f"{home}/rota.sock")
    next_scrape = 0.0
    received = 0
    while not stop.is_set():
        if time.monotonic() >= next_scrape:
            scraper.request("GET", "/metrics")
            scraper.getresponse().read()
            next_scrape = time.monotonic() + 1
        try:
            received += len(events.recv(1 << 16))
        except socket.timeout:
            pass
    events.close()
    return received


def main():
    with Daemon(workers=2) as d:
        run(d)  # warm up
        alone = run(d)
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(d.home, stop))
        watcher.start()
        watched = run(d)
        stop.set()
        watcher.join()
    print(f"\n### Throughput while watched: {N} x `true`, 2 workers\n")
    print("| run | seconds | tasks/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| alone | {alone:.2f} | {N / alone:,.0f} | 1.00x |")
    print(f"| /metrics every 1 s + event stream open | {watched:.2f} | {N / watched:,.0f} | "
          f"{alone / watched:.2f}x |")


if __name__ == "__main__":
    main()
