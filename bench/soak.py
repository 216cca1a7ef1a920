#!/usr/bin/env python3
"""Load for bench/soak.sh: checks, SDK changes and imports against a running `deadbolt serve`
for a given time; every answer is verified. Prints the server's RSS and the counts every
`--every` seconds, then a summary; exits non-zero when any request failed."""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import random
import sys
import threading
import time


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(key, issuer, audience, sub):
    now = int(time.time())
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"iss": issuer, "aud": audience, "sub": sub,
                              "exp": now + 300, "iat": now - 60}).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {"check": 0, "change": 0, "import": 0, "import_rows": 0}
        self.errors = {}

    def good(self, kind, n=1):
        with self.lock:
            self.ok[kind] += n

    def bad(self, what):
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return -1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--key", required=True, help="signing key, base64")
    p.add_argument("--sdk", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--accounts", type=int, required=True, help="seeded accounts acct0..acctN-1")
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--every", type=int, default=15)
    p.add_argument("--checkers", type=int, default=4)
    p.add_argument("--import-rows", type=int, default=20000)
    p.add_argument("--import-pause", type=float, default=10.0)
    a = p.parse_args()
    key = base64.b64decode(a.key)
    audience = f"{a.host}:{a.port}"
    counts = Counts()
    stop = time.monotonic() + a.seconds
    # What each seeded account must answer, and how many changes it had: a check is compared
    # only when no change of its account began or ended while it was asked.
    state_lock = threading.Lock()
    locked = {}
    version = {}

    def known(sub):
        with state_lock:
            return locked.get(sub), version.get(sub, 0)

    def conn():
        return http.client.HTTPConnection(a.host, a.port, timeout=30)

    def request(c, method, path, body, headers):
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()

    def checker(seed):
        rng = random.Random(seed)
        c = conn()
        while time.monotonic() < stop:
            sub = f"acct{rng.randrange(a.accounts)}"
            want, seen = known(sub)
            try:
                st, body = request(c, "POST", "/nl3/api/v1/accountProtectionCheck", b"{}",
                                   {"x-nl3-authorization-token": token(key, a.issuer, audience, sub)})
                got = json.loads(body) if st == 200 else None
                if st != 200 or not isinstance(got.get("locked"), bool):
                    counts.bad(f"check {st} {body[:80]!r}")
                elif want is not None and got["locked"] != want and known(sub) == (want, seen):
                    counts.bad("check answered a stale state")
                else:
                    counts.good("check")
            except Exception as e:  # noqa: BLE001 - every failure is counted
                counts.bad(f"check {type(e).__name__}: {e}")
                c = conn()

    def changer():
        rng = random.Random(7)
        c = conn()
        while time.monotonic() < stop:
            sub = f"acct{rng.randrange(a.accounts)}"
            lock = rng.random() < 0.5
            body = json.dumps({"domain": a.issuer, "userAccountId": sub}).encode()
            with state_lock:
                locked.pop(sub, None)
                version[sub] = version.get(sub, 0) + 1
            try:
                st, out = request(c, "POST", f"/nl3/api/v1/sdk/{'lock' if lock else 'unlock'}", body,
                                  {"x-nl3-server-api-token": a.sdk})
                if st == 200 and json.loads(out).get("locked") == lock:
                    counts.good("change")
                    with state_lock:
                        locked[sub] = lock
                        version[sub] += 1
                else:
                    counts.bad(f"change {st} {out[:80]!r}")
            except Exception as e:  # noqa: BLE001
                counts.bad(f"change {type(e).__name__}: {e}")
                c = conn()
            time.sleep(0.01)

    def importer():
        n = 0
        while time.monotonic() < stop:
            rows = [{"first_name": "Soak", "last_name": str(n + j), "email": f"soak{n + j}@example.com",
                     "domain": a.issuer, "phone": "", "userAccountId": f"soak{n + j}"}
                    for j in range(a.import_rows)]
            n += a.import_rows
            try:
                c = conn()
                c.timeout = 300
                st, out = request(c, "POST", "/nl3/api/v1/sdk/importUsers", json.dumps(rows).encode(),
                                  {"x-nl3-server-api-token": a.sdk})
                c.close()
                if st == 200 and json.loads(out).get("created") == a.import_rows:
                    counts.good("import")
                    counts.good("import_rows", a.import_rows)
                else:
                    counts.bad(f"import {st} {out[:80]!r}")
            except Exception as e:  # noqa: BLE001
                counts.bad(f"import {type(e).__name__}: {e}")
            time.sleep(max(0.0, min(a.import_pause, stop - time.monotonic())))

    threads = [threading.Thread(target=checker, args=(i,)) for i in range(a.checkers)]
    threads += [threading.Thread(target=changer), threading.Thread(target=importer)]
    for t in threads:
        t.start()
    start = time.monotonic()
    rss = [rss_mb(a.pid)]
    print(f"| s | RSS MB | checks | changes | imports (rows) | errors |")
    print(f"|---|---|---|---|---|---|")
    print(f"| 0 | {rss[0]} | 0 | 0 | 0 (0) | 0 |", flush=True)
    while any(t.is_alive() for t in threads):
        left = stop - time.monotonic()
        if left > 0:
            time.sleep(min(a.every, left))
        else:
            for t in threads:
                t.join()
        r = rss_mb(a.pid)
        rss.append(r)
        with counts.lock:
            ok, errs = dict(counts.ok), sum(counts.errors.values())
        print(f"| {time.monotonic() - start:.0f} | {r} | {ok['check']} | {ok['change']} | "
              f"{ok['import']} ({ok['import_rows']}) | {errs} |", flush=True)
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    errs = sum(counts.errors.values())
    print()
    print(f"{secs:.0f} s: {counts.ok['check']} checks ({counts.ok['check'] / secs:.0f}/s), "
          f"{counts.ok['change']} changes, {counts.ok['import']} imports of {a.import_rows} rows; "
          f"errors: {errs}; RSS min {min(rss)} MB, max {max(rss)} MB, last {rss[-1]} MB")
    for what, n in sorted(counts.errors.items()):
        print(f"  {n} x {what}")
    sys.exit(1 if errs else 0)


if __name__ == "__main__":
    main()
