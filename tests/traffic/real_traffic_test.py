#!/usr/bin/env python3
"""Real traffic: 10,000 clicks over 1,000 links with real user agents, sent to a real earnd.

  * earnd starts on loopback (free ports, a fresh data directory, default config: group
    durability, so every 302 leaves after its click is synced).
  * One program and 1,000 referrers, each enrolled with its own code through the admin API
    (POST /v1/programs/{id}/referrers): 1,000 links.
  * 10,000 clicks: every one of the 2,116 example user agents (`instances`) of
    crawler-user-agents.json once, the other 7,884 from the 100 real browser user agents of
    top-user-agents.json, in a seeded random order. Every link gets at least one click; the rest
    follow a skewed (Zipf) popularity, as real links do. One click in five spells its code in
    upper case (codes match in any case).
  * A few keep-alive connections (http.client, one thread each) send them; each 302 must carry a
    Location with ref and earnd_cid and the matching Set-Cookie.
  * SIGTERM (exit 0), then `earnctl export clicks --data-dir`: every click id from the Location
    headers is stored exactly once (10,000 rows, nothing else), with its program, referrer and
    code; every bot user agent's click has reason bot_ua or preview; no browser click has a
    reason; the per-link counts are those sent; each (user agent, link) pair has exactly one
    unique click (the visitor is the client address plus the user agent, and all come from
    127.0.0.1 within the dedupe window); rows come oldest first.

Prints `traffic: 10000 clicks, N bots flagged, 0 browsers flagged` at the end.
"""

import argparse
import collections
import csv
import http.client
import io
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

TOTAL_CLICKS = 10_000
LINK_COUNT = 1_000
CONNECTIONS = 4
PROGRAM_ID = "traffic"
DESTINATION = "https://shop.example.com/welcome?src=ref"
COOKIE_DAYS = 30
CLICK_ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")  # Crockford base32, lowercase, 26 chars
LISTENING_RE = re.compile(r"event=listening public=(\S+) admin=(\S+)")
EXPORT_HEADER = ["click_id", "ts_ms", "program", "referrer_id", "code", "visitor_hash", "unique",
                 "reason"]
BOT_REASONS = {"bot_ua", "preview"}
EARND_START_TIMEOUT_S = 30
EARND_STOP_TIMEOUT_S = 60
SEND_TIMEOUT_S = 180


class TestFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise TestFailure(message)


# --------------------------------------------------------------------------------------------
# earnd under test


class Earnd:
    """One earnd on loopback with free ports and its own data directory; always stopped."""

    def __init__(self, bin_dir, data_dir):
        self.binary = Path(bin_dir) / "earnd"
        self.data_dir = data_dir
        self.admin_key = "e2e-" + secrets.token_hex(16)
        self.proc = None
        self.lines = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self.public = None
        self.admin = None
        self._admin_conn = None

    def start(self):
        check(self.binary.is_file() and os.access(self.binary, os.X_OK),
              f"earnd not found at {self.binary}: build the earnd target first")
        env = dict(os.environ, EARND_ADMIN_KEY=self.admin_key)
        self.proc = subprocess.Popen(
            [str(self.binary), "--data-dir", str(self.data_dir),
             "--public-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            text=True, errors="replace")
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + EARND_START_TIMEOUT_S
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                raise TestFailure(f"earnd exited with {self.proc.returncode} before listening:\n"
                                  + self.log_tail())
            if time.monotonic() > deadline:
                raise TestFailure("earnd did not log event=listening in time:\n" + self.log_tail())

    def _read_log(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
            m = LISTENING_RE.search(line)
            if m and not self._listening.is_set():
                self.public, self.admin = m.group(1), m.group(2)
                self._listening.set()

    def log_tail(self, n=30):
        with self._lock:
            return "\n".join(self.lines[-n:])

    def log_text(self):
        with self._lock:
            return "\n".join(self.lines)

    def admin_call(self, method, path, body=None):
        """One admin request on a kept-alive connection."""
        if self._admin_conn is None:
            host, port = self.admin.rsplit(":", 1)
            self._admin_conn = http.client.HTTPConnection(host, int(port), timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        self._admin_conn.request(method, path, body=data, headers=headers)
        resp = self._admin_conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed

    def close_admin(self):
        if self._admin_conn is not None:
            self._admin_conn.close()
            self._admin_conn = None

    def stop(self):
        """SIGTERM; returns the exit code. earnd must store every accepted click and exit 0."""
        self.close_admin()
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EARND_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"earnd did not stop within {EARND_STOP_TIMEOUT_S} s of SIGTERM")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def stop_counts(log):
    """(clicks_stored, clicks_dropped) from earnd's event=stopped line; None where not logged.

    The log line is not part of the contract, so its absence is not a failure; the export is."""
    lines = [l for l in log.splitlines() if "event=stopped" in l]
    if not lines:
        return None, None
    stored = re.search(r"clicks_stored=(\d+)", lines[-1])
    dropped = re.search(r"clicks_dropped=(\d+)", lines[-1])
    return (int(stored.group(1)) if stored else None, int(dropped.group(1)) if dropped else None)


def export_clicks(bin_dir, data_dir):
    earnctl = Path(bin_dir) / "earnctl"
    check(earnctl.is_file(), f"earnctl not found at {earnctl}: build the earnctl target first")
    r = subprocess.run([str(earnctl), "export", "clicks", "--data-dir", str(data_dir)],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, f"earnctl export clicks failed ({r.returncode}): {r.stderr}")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    check(rows and rows[0] == EXPORT_HEADER, f"unexpected export header: {rows[:1]}")
    bad = [row for row in rows[1:] if len(row) != len(EXPORT_HEADER)]
    check(not bad, f"export rows with {len(EXPORT_HEADER)} fields expected: {bad[:5]}")
    return [dict(zip(EXPORT_HEADER, row)) for row in rows[1:]]


# --------------------------------------------------------------------------------------------
# The workload


def load_user_agents(shared):
    browsers = json.loads((shared / "top-user-agents.json").read_text())
    crawlers = json.loads((shared / "crawler-user-agents.json").read_text())
    bots = [ua for entry in crawlers for ua in entry.get("instances", [])]
    check(len(browsers) == 100, f"top-user-agents.json: {len(browsers)} user agents, expected 100")
    check(len(bots) == 2116, f"crawler-user-agents.json: {len(bots)} instances, expected 2116")
    check(not set(bots) & set(browsers), "a user agent is in both the bot and the browser list")
    return browsers, bots, crawlers


def plan_clicks(rng, browsers, bots, codes):
    """[(user agent, is_bot, link index, code as sent)], TOTAL_CLICKS long, shuffled."""
    agents = [(ua, True) for ua in bots]
    agents += [(browsers[i % len(browsers)], False) for i in range(TOTAL_CLICKS - len(bots))]
    rng.shuffle(agents)
    # Every link at least once, the rest with Zipf popularity (rank r drawn with weight 1/r).
    links = list(range(LINK_COUNT))
    weights = [1.0 / (r + 1) for r in range(LINK_COUNT)]
    links += rng.choices(range(LINK_COUNT), weights=weights, k=TOTAL_CLICKS - LINK_COUNT)
    rng.shuffle(links)
    plan = []
    for i, ((ua, is_bot), link) in enumerate(zip(agents, links)):
        sent_code = codes[link].upper() if i % 5 == 0 else codes[link]
        plan.append((ua, is_bot, link, sent_code))
    return plan


def send_all(public, plan):
    """Sends plan over CONNECTIONS kept-alive connections; returns one result per click."""
    host, port = public.rsplit(":", 1)
    results = [None] * len(plan)
    errors = []
    opened = collections.Counter()

    def worker(w):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        opened[w] += 1
        try:
            for i in range(w, len(plan), CONNECTIONS):
                ua, _, _, sent_code = plan[i]
                path = f"/r/{sent_code}?utm_source=traffic&utm_content=c{i}"
                # No retry on error: a retried request could store a click twice.
                conn.request("GET", path, headers={"User-Agent": ua})
                resp = conn.getresponse()
                resp.read()
                results[i] = (resp.status, resp.getheader("Location"),
                              resp.getheader("Set-Cookie"), resp.getheader("Cache-Control"))
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                    opened[w] += 1
        except Exception as e:  # reported below with the click it happened on
            errors.append(f"connection {w}: {type(e).__name__}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(CONNECTIONS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + SEND_TIMEOUT_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in threads), f"sending did not finish in {SEND_TIMEOUT_S} s")
    check(not errors, f"requests failed: {errors}")
    return results, sum(opened.values())


def check_replies(plan, results, codes):
    """Each 302's Location and Set-Cookie; returns the click id of each click."""
    cids = []
    for i, ((ua, _, link, _), res) in enumerate(zip(plan, results)):
        check(res is not None, f"click {i} got no reply")
        status, location, cookie, cache = res
        check(status == 302, f"click {i} (UA {ua!r}): status {status}")
        check(location is not None, f"click {i}: no Location")
        loc = urllib.parse.urlsplit(location)
        pairs = urllib.parse.parse_qsl(loc.query, keep_blank_values=True)
        check(f"{loc.scheme}://{loc.netloc}{loc.path}" == "https://shop.example.com/welcome"
              and [k for k, _ in pairs] == ["src", "utm_source", "utm_content", "ref", "earnd_cid"],
              f"click {i}: Location {location!r}")
        params = dict(pairs)
        check(params["src"] == "ref" and params["utm_source"] == "traffic"
              and params["utm_content"] == f"c{i}" and params["ref"] == codes[link],
              f"click {i}: Location {location!r} (link code {codes[link]!r})")
        cid = params["earnd_cid"]
        check(CLICK_ID_RE.match(cid), f"click {i}: earnd_cid {cid!r} is not a 26-character id")
        expected_cookie = (f"earnd_cid={cid}; Max-Age={COOKIE_DAYS * 86400}; Path=/; HttpOnly; "
                           "SameSite=Lax")
        check(cookie == expected_cookie, f"click {i}: Set-Cookie {cookie!r}")
        check(cache == "no-store", f"click {i}: Cache-Control {cache!r}")
        cids.append(cid)
    check(len(set(cids)) == len(cids),
          f"{len(cids) - len(set(cids))} click ids were handed out twice")
    return cids


# --------------------------------------------------------------------------------------------
# The test


def python_matches(crawlers, ua):
    out = []
    for e in crawlers:
        try:
            if re.search(e["pattern"], ua):
                out.append(e["pattern"])
        except re.error:
            pass
    return out


def run(args, earnd):
    shared = Path(args.data_dir_shared)
    browsers, bots, crawlers = load_user_agents(shared)
    rng = random.Random(args.seed)
    started = time.monotonic()

    earnd.start()
    status, body = earnd.admin_call("POST", "/v1/programs", {
        "id": PROGRAM_ID, "name": "Real traffic", "currency": "USD",
        "destination": DESTINATION, "allowed_hosts": ["shop.example.com"],
        "attribution": {"model": "last_click", "window_days": 30, "cookie_days": COOKIE_DAYS,
                        "dedupe_minutes": 60}})
    check(status == 201, f"POST /v1/programs: {status} {body}")
    codes, referrer_ids = [], []
    for n in range(LINK_COUNT):
        code = f"tr-{n:04d}-lnk"
        status, body = earnd.admin_call("POST", f"/v1/programs/{PROGRAM_ID}/referrers",
                                        {"external_id": f"u_{n}", "name": f"Referrer {n}",
                                         "code": code})
        check(status == 201 and body.get("code") == code,
              f"POST /v1/programs/{PROGRAM_ID}/referrers ({code}): {status} {body}")
        codes.append(code)
        referrer_ids.append(body["id"])
    check(len(set(referrer_ids)) == LINK_COUNT, "referrer ids are not distinct")
    earnd.close_admin()
    enrolled = time.monotonic()

    plan = plan_clicks(rng, browsers, bots, codes)
    t0_ms = int(time.time() * 1000)
    results, connections_opened = send_all(earnd.public, plan)
    t1_ms = int(time.time() * 1000)
    sent = time.monotonic()
    cids = check_replies(plan, results, codes)

    rc = earnd.stop()
    check(rc == 0, f"earnd exited with {rc} after SIGTERM:\n{earnd.log_tail()}")
    stored, dropped = stop_counts(earnd.log_text())
    check(stored in (None, TOTAL_CLICKS) and dropped in (None, 0),
          f"earnd's stop line reports {stored} clicks stored, {dropped} dropped (a dropped click "
          f"is redirected without a click id):\n{earnd.log_tail()}")

    rows = export_clicks(args.bin_dir, earnd.data_dir)
    exported = time.monotonic()

    # Every click id handed out is stored exactly once, and nothing else is.
    check(len(rows) == TOTAL_CLICKS, f"export has {len(rows)} rows, expected {TOTAL_CLICKS}")
    by_id = {}
    for r in rows:
        check(r["click_id"] not in by_id, f"click {r['click_id']} exported twice")
        by_id[r["click_id"]] = r
    missing = [c for c in cids if c not in by_id]
    check(not missing, f"{len(missing)} clicks not stored, e.g. {missing[:5]}")

    ts = [int(r["ts_ms"]) for r in rows]
    check(ts == sorted(ts), "export rows are not oldest first")
    check(t0_ms - 1000 <= ts[0] and ts[-1] <= t1_ms + 1000,
          f"click times {ts[0]}..{ts[-1]} outside the sending window {t0_ms}..{t1_ms}")

    bots_flagged = collections.Counter()
    bots_missed, browsers_flagged = [], []
    per_link_sent, per_link_stored = collections.Counter(), collections.Counter()
    uniques = collections.Counter()
    pairs = set()
    for (ua, is_bot, link, _), cid in zip(plan, cids):
        row = by_id[cid]
        check(row["program"] == PROGRAM_ID and row["code"] == codes[link]
              and row["referrer_id"] == referrer_ids[link],
              f"click {cid} stored for the wrong link: {row} (sent to {codes[link]})")
        check(row["unique"] in ("0", "1"), f"click {cid}: unique is {row['unique']!r}")
        per_link_sent[codes[link]] += 1
        pairs.add((ua, link))
        uniques[(ua, link)] += row["unique"] == "1"
        if is_bot:
            if row["reason"] in BOT_REASONS:
                bots_flagged[row["reason"]] += 1
            else:
                bots_missed.append((ua, row["reason"]))
        elif row["reason"] != "":
            browsers_flagged.append((ua, row["reason"]))
    for r in rows:
        per_link_stored[r["code"]] += 1

    check(not bots_missed,
          f"{len(bots_missed)} bot user agents not flagged bot_ua/preview: " + "; ".join(
              f"{ua!r} -> reason {reason!r} (patterns matching in Python: "
              f"{python_matches(crawlers, ua)})" for ua, reason in bots_missed[:10]))
    check(not browsers_flagged,
          f"{len(browsers_flagged)} browser clicks flagged: {sorted(set(browsers_flagged))[:10]}")
    check(per_link_stored == per_link_sent,
          "per-link counts differ: " + str({c: (per_link_sent[c], per_link_stored[c])
                                            for c in set(per_link_sent) | set(per_link_stored)
                                            if per_link_sent[c] != per_link_stored[c]}))
    check(len(per_link_stored) == LINK_COUNT, f"{len(per_link_stored)} links clicked, not 1000")
    bad_unique = {k: v for k, v in uniques.items() if v != 1}
    check(not bad_unique, f"{len(bad_unique)} (user agent, link) pairs without exactly one "
                          f"unique click, e.g. {list(bad_unique.items())[:3]}")

    flagged = sum(bots_flagged.values())
    top = per_link_sent.most_common(1)[0]
    print(f"enrol 1000 referrers: {enrolled - started:.1f} s; send {TOTAL_CLICKS} clicks over "
          f"{CONNECTIONS} keep-alive connections ({connections_opened} opened): "
          f"{sent - enrolled:.1f} s ({TOTAL_CLICKS / (sent - enrolled):.0f} clicks/s); "
          f"stop + export: {exported - sent:.1f} s")
    print(f"bots: {len(bots)} sent, bot_ua {bots_flagged['bot_ua']}, preview "
          f"{bots_flagged['preview']}; unique clicks {sum(uniques.values())} over {len(pairs)} "
          f"(user agent, link) pairs; busiest link {top[0]} with {top[1]} clicks")
    print(f"traffic: {TOTAL_CLICKS} clicks, {flagged} bots flagged, {len(browsers_flagged)} "
          f"browsers flagged")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="directory holding earnd and earnctl")
    ap.add_argument("--data-dir-shared", required=True,
                    help="the shared test data (top-user-agents.json, crawler-user-agents.json)")
    ap.add_argument("--seed", type=int, default=20261201, help="seed of the click plan")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="earnd-traffic-")
    earnd = Earnd(args.bin_dir, Path(tmp.name) / "data")
    try:
        run(args, earnd)
        return 0
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        print("--- earnd log tail ---\n" + earnd.log_tail(), file=sys.stderr)
        return 1
    finally:
        try:
            earnd.close_admin()
            if earnd.proc is not None and earnd.proc.poll() is None:
                earnd.proc.send_signal(signal.SIGTERM)
                try:
                    earnd.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            earnd.kill()
        finally:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
