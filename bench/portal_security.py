#!/usr/bin/env python3
"""What password guessing and address probing cost against the portal of a real `deadbolt serve`.

1. Guess bursts: N concurrent wrong sign-ins (N = 5, 50, 500) against one email, each on a fresh
   server: how many passwords the server evaluated (401s; 429s were refused unevaluated), how long
   the burst took, the server's RSS during it, and when the owner, with the right password, got in
   (from the browser they signed in with before, and from a new one).
2. Reset timing: pairs of /reset requests, one for an address with an account and one without,
   alternating; the median answer time of each.

Usage: bench/portal_security.py [path/to/deadbolt]   (default target/release/deadbolt)
Standard library only. Loopback addresses 127.0.1.x are used as distinct clients.
"""

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/deadbolt"
OWNER = "owner@example.test"
PASSWORD = "the owner's long password"


class Server:
    def __init__(self, tmp, name):
        self.db = f"sqlite://{tmp}/{name}.db"
        self.proc = None

    def cli(self, *args, env=None):
        out = subprocess.run([BIN, "--db", self.db, *args], capture_output=True, text=True,
                             env={**os.environ, **(env or {})}, check=True)
        return json.loads(out.stdout)

    def start(self):
        self.proc = subprocess.Popen([BIN, "--db", self.db, "serve", "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started = json.loads(self.proc.stdout.readline())
        host, port = started["listening"].rsplit(":", 1)
        self.host, self.port = host, int(port)
        return self

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def request(server, method, path, body=None, cookie="", source="127.0.0.1"):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120,
                                      source_address=(source, 0))
    headers = {"Cookie": cookie}
    if body is not None:
        body = urllib.parse.urlencode(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read().decode()
    result = (resp.status, dict(resp.getheaders()), data)
    conn.close()
    return result


def pre_csrf(server, source="127.0.0.1"):
    _, headers, body = request(server, "GET", "/login", source=source)
    token = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
    return token, f"deadbolt_csrf={token}"


def burst(tmp, n):
    server = Server(tmp, f"burst{n}")
    server.cli("person", "create", "--email", OWNER, "--password", PASSWORD)
    server.start()
    try:
        # The owner's own browser signed in before: it holds a device cookie.
        known_csrf, known_cookie = pre_csrf(server, source="127.0.1.2")
        _, headers, _ = request(server, "POST", "/login", cookie=known_cookie, source="127.0.1.2",
                                body={"csrf": known_csrf, "email": OWNER, "password": PASSWORD})
        device = re.search(r"deadbolt_device=([^;]+)", headers.get("set-cookie", headers.get("Set-Cookie", ""))).group(1)
        csrf, cookie = pre_csrf(server)
        rss_before = server.rss_kib()
        peak = [rss_before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], server.rss_kib())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        statuses = []
        lock = threading.Lock()
        gate = threading.Barrier(n)

        def guess(i):
            gate.wait()
            status, _, _ = request(server, "POST", "/login", cookie=cookie,
                                   body={"csrf": csrf, "email": OWNER, "password": f"wrong {i}"})
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        start = time.perf_counter()
        for t in threads:
            t.join()
        took = time.perf_counter() - start
        done.set()
        sampler.join()
        # The owner's known browser, right after.
        t0 = time.perf_counter()
        known_status, _, _ = request(server, "POST", "/login", source="127.0.1.2",
                                     cookie=f"{known_cookie}; deadbolt_device={device}",
                                     body={"csrf": known_csrf, "email": OWNER, "password": PASSWORD})
        known_in = time.perf_counter() - t0
        # The owner, right after, from a new browser.
        owner_csrf, owner_cookie = pre_csrf(server, source="127.0.1.1")
        t0 = time.perf_counter()
        tries = []
        while True:
            status, headers, _ = request(server, "POST", "/login", cookie=owner_cookie, source="127.0.1.1",
                                         body={"csrf": owner_csrf, "email": OWNER, "password": PASSWORD})
            tries.append(status)
            if status != 429:
                break
            time.sleep(int(headers.get("retry-after", headers.get("Retry-After", "1"))))
        owner_in = time.perf_counter() - t0
        return {
            "guesses": n,
            "evaluated (401)": statuses.count(401),
            "refused unevaluated (429)": statuses.count(429),
            "other": len(statuses) - statuses.count(401) - statuses.count(429),
            "burst seconds": round(took, 3),
            "RSS before KiB": rss_before,
            "RSS peak during burst KiB": peak[0],
            "owner's known browser": [known_status, round(known_in, 3)],
            "owner's new browser tries": tries,
            "owner's new browser signed in after seconds": round(owner_in, 3),
        }
    finally:
        server.stop()


def reset_timing(tmp, pairs):
    server = Server(tmp, "reset")
    for i in range(pairs):
        server.cli("person", "create", "--email", f"known{i}@example.test")
    server.start()
    try:
        known, unknown = [], []
        for i in range(pairs):
            source = f"127.0.1.{i + 10}"
            csrf, cookie = pre_csrf(server, source=source)
            for email, into in ((f"known{i}@example.test", known), (f"unknown{i}@example.test", unknown)):
                t0 = time.perf_counter()
                status, _, _ = request(server, "POST", "/reset", cookie=cookie, source=source,
                                       body={"csrf": csrf, "email": email})
                into.append((time.perf_counter() - t0) * 1000)
                assert status == 200, status
        return {
            "pairs": pairs,
            "known median ms": round(statistics.median(known), 3),
            "unknown median ms": round(statistics.median(unknown), 3),
            "known slower in pairs": sum(k > u for k, u in zip(known, unknown)),
            "known ms": [round(x, 2) for x in known],
            "unknown ms": [round(x, 2) for x in unknown],
        }
    finally:
        server.stop()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for n in (5, 50, 500):
            print(json.dumps(burst(tmp, n)))
        print(json.dumps(reset_timing(tmp, 20)))


if __name__ == "__main__":
    main()
