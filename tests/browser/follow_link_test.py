#!/usr/bin/env python3
"""A real browser follows a referral link: headless Chromium, earnd and a landing page, all on loopback.

What it checks, end to end:
  1. A landing page (Python http.server on 127.0.0.1:<free port>) stands for the merchant's site.
     earnd gets a program whose destination is http://127.0.0.1:<landing port>/landing?src=ref
     (allowed_hosts ["127.0.0.1"]) and one referrer with a code.
  2. Chromium opens http://127.0.0.1:<public port>/r/<code>?utm_source=test and follows the 302.
     The landing server records the request it receives: its query must carry src=ref,
     utm_source=test, ref=<code> and earnd_cid=<26-character click id>, and its Cookie header
     must carry earnd_cid=<the same id>. Cookies belong to a host, not a port, so the cookie earnd
     set on 127.0.0.1 reaches the landing server on 127.0.0.1. The page also runs a script that
     copies document.cookie into the DOM, which Chromium dumps: the click cookie is HttpOnly, so
     the script must not see it.
  3. earnd is stopped with SIGTERM (exit 0) and `earnctl export clicks --data-dir` must hold
     exactly the clicks made, each once, with the expected reason.

How HeadlessChrome is classified (decided with evidence, not assumed):
  Chromium's headless user agent says "HeadlessChrome/<version>". The crawler list that earnd
  embeds (assets/crawler-user-agents.json, monperrus/crawler-user-agents) has the pattern
  "HeadlessChrome" ("Headless Chrome web crawler for testing"), and a headless browser driven by
  a script is automation, not a person. So a click from the headless user agent is expected to be
  stored with reason "bot_ua": it is still redirected (the browser arrives with ref, click id and
  cookie), but never attributed. The expectation is computed from that list rather than written
  down, so the test follows the list (and a future Chromium user agent) instead of a guess.
  To check the human path with the same real browser engine, a second run overrides the user
  agent with the one a headed Chromium of the same version sends ("Chrome/<version>" instead of
  "HeadlessChrome/<version>"): that click must be stored with an empty reason.

Chromium missing: the test fails with a clear message, unless EARND_SKIP_BROWSER=1, in which case
it exits 77 (reported by ctest as skipped, never as passed).
"""

import argparse
import csv
import html
import http.client
import http.server
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

SKIP_EXIT_CODE = 77
CLICK_ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")  # Crockford base32, lowercase, 26 chars
LISTENING_RE = re.compile(r"event=listening public=(\S+) admin=(\S+)")
EXPORT_HEADER = ["click_id", "ts_ms", "program", "referrer_id", "code", "visitor_hash", "unique",
                 "reason"]
REPO_ROOT = Path(__file__).resolve().parents[2]
CRAWLER_LIST = REPO_ROOT / "assets" / "crawler-user-agents.json"

PROGRAM_ID = "browser-e2e"
REFERRER_CODE = "Ana-E2E"  # Mixed case on purpose: the link is followed in lower case.
CHROMIUM_TIMEOUT_S = 45
EARND_START_TIMEOUT_S = 30
EARND_STOP_TIMEOUT_S = 30


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
        host, port = self.admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self.admin_key}"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return resp.status, parsed
        finally:
            conn.close()

    def stop(self):
        """SIGTERM; returns the exit code. earnd must store every accepted click and exit 0."""
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
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"earnctl export clicks failed ({r.returncode}): {r.stderr}")
    reader = csv.reader(io.StringIO(r.stdout))
    rows = list(reader)
    check(rows and rows[0] == EXPORT_HEADER, f"unexpected export header: {rows[:1]}")
    return [dict(zip(EXPORT_HEADER, row)) for row in rows[1:]]


# --------------------------------------------------------------------------------------------
# The merchant's landing page


class LandingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), LandingHandler)
        self.requests = []
        self.lock = threading.Lock()

    def take_requests(self):
        with self.lock:
            taken, self.requests = self.requests, []
        return taken


class LandingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen = {"path": self.path, "cookie": self.headers.get_all("Cookie") or [],
                "user_agent": self.headers.get("User-Agent", "")}
        with self.server.lock:
            self.server.requests.append(seen)
        if urllib.parse.urlsplit(self.path).path != "/landing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        # What the server saw is written into the page, so the DOM Chromium dumps proves that the
        # browser rendered this very response. The script shows what page scripts can read.
        query = urllib.parse.urlsplit(self.path).query
        body = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>landing</title></head>"
                "<body><p id=\"arrived\" data-query=\"" + html.escape(query) + "\">arrived</p>"
                "<pre id=\"script-cookie\"></pre>"
                "<script>document.getElementById('script-cookie').textContent = "
                "'[' + document.cookie + ']';</script></body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


# --------------------------------------------------------------------------------------------
# Chromium


def find_chromium():
    explicit = os.environ.get("EARND_CHROMIUM")
    candidates = [explicit] if explicit else ["/usr/bin/chromium", shutil.which("chromium")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_chromium(chromium, url, user_agent=None):
    """Loads url in a fresh headless profile; returns (dumped DOM, stderr). Never leaves a process."""
    with tempfile.TemporaryDirectory(prefix="earnd-chromium-") as profile:
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
        if user_agent:
            args.append(f"--user-agent={user_agent}")
        args += ["--dump-dom", url]
        # HOME and XDG dirs point into the profile so that nothing is written to the real home.
        env = dict(os.environ, HOME=profile, XDG_CONFIG_HOME=profile, XDG_CACHE_HOME=profile)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True, errors="replace",
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            out, err = proc.communicate()
            raise TestFailure(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s; stderr:\n"
                              + err[-3000:])
        finally:
            kill_group(proc.pid)  # helpers (zygote, renderer) share the session's group
        check(proc.returncode == 0,
              f"chromium exited with {proc.returncode}; stderr:\n{err[-3000:]}")
        return out, err


# --------------------------------------------------------------------------------------------
# The test


def crawler_patterns_matching(user_agent):
    """Crawler-list patterns (the list earnd embeds) that match user_agent."""
    entries = json.loads(CRAWLER_LIST.read_text())
    found = []
    for e in entries:
        try:
            if re.search(e["pattern"], user_agent):
                found.append(e["pattern"])
        except re.error:
            pass  # a pattern Python's re cannot compile: earnd uses another engine
    return found


def follow_link(chromium, earnd, landing, url, code, user_agent=None):
    """One browser visit; returns (click id, user agent the landing page saw)."""
    landing.take_requests()
    dom, chromium_err = run_chromium(chromium, url, user_agent)
    requests = landing.take_requests()
    landed = [r for r in requests if urllib.parse.urlsplit(r["path"]).path == "/landing"]
    check(len(landed) == 1,
          f"expected exactly one landing request, got {requests}\nchromium DOM:\n{dom[:2000]}\n"
          f"chromium stderr tail:\n{chromium_err[-2000:]}")
    req = landed[0]
    pairs = urllib.parse.parse_qsl(urllib.parse.urlsplit(req["path"]).query,
                                   keep_blank_values=True)
    params = dict(pairs)
    check(len(params) == len(pairs), f"a query parameter is repeated: {pairs}")
    # Destination parameters, then the incoming ones, then earnd's own (API.md).
    check([k for k, _ in pairs] == ["src", "utm_source", "ref", "earnd_cid"],
          f"landing query parameters are not src, utm_source, ref, earnd_cid in order: {pairs}")
    check(params["src"] == "ref", f"src: {params}")
    check(params["utm_source"] == "test", f"utm_source: {params}")
    check(params["ref"] == code, f"ref is {params['ref']!r}, expected the link code {code!r}")
    cid = params["earnd_cid"]
    check(CLICK_ID_RE.match(cid), f"earnd_cid {cid!r} is not a 26-character click id")

    # The Cookie header: earnd's cookie set on 127.0.0.1 (another port) must come along.
    check(len(req["cookie"]) == 1, f"expected one Cookie header, got {req['cookie']}")
    jar = [c.strip().split("=", 1) for c in req["cookie"][0].split(";") if c.strip()]
    cids = [v for k, v in jar if k == "earnd_cid"]
    check(cids == [cid], f"Cookie header {req['cookie'][0]!r} does not carry earnd_cid={cid}")

    # The DOM Chromium dumped: this response was rendered, and scripts cannot read the cookie.
    check(f'data-query="{html.escape(urllib.parse.urlsplit(req["path"]).query)}"' in dom,
          f"the dumped DOM is not the landing page that was served:\n{dom[:2000]}")
    m = re.search(r'<pre id="script-cookie">\[(.*?)\]</pre>', dom, re.S)
    check(m is not None, f"the landing page script did not run:\n{dom[:2000]}")
    check("earnd_cid" not in m.group(1),
          f"document.cookie shows the click cookie, so it is not HttpOnly: {m.group(1)!r}")
    return cid, req["user_agent"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="directory holding earnd and earnctl")
    args = ap.parse_args()

    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("EARND_SKIP_BROWSER") == "1":
            print("SKIPPED: chromium not found and EARND_SKIP_BROWSER=1")
            return SKIP_EXIT_CODE
        where = os.environ.get("EARND_CHROMIUM") or "/usr/bin/chromium or on PATH"
        print(f"FAIL: chromium not found ({where}). Install it "
              "(apt-get install chromium; tools/test does this), or set EARND_SKIP_BROWSER=1 to "
              "skip this test deliberately.", file=sys.stderr)
        return 1

    started = time.monotonic()
    landing = LandingServer()
    landing_thread = threading.Thread(target=landing.serve_forever, daemon=True)
    landing_thread.start()
    tmp = tempfile.TemporaryDirectory(prefix="earnd-browser-")
    earnd = Earnd(args.bin_dir, Path(tmp.name) / "data")
    try:
        earnd.start()
        landing_port = landing.server_address[1]
        status, body = earnd.admin_call("POST", "/v1/programs", {
            "id": PROGRAM_ID, "name": "Browser E2E", "currency": "USD",
            "destination": f"http://127.0.0.1:{landing_port}/landing?src=ref",
            "allowed_hosts": ["127.0.0.1"],
            "attribution": {"model": "last_click", "window_days": 30, "cookie_days": 30,
                            "dedupe_minutes": 60}})
        check(status == 201, f"POST /v1/programs: {status} {body}")
        status, body = earnd.admin_call("POST", f"/v1/programs/{PROGRAM_ID}/referrers",
                                        {"external_id": "u_browser", "name": "Ana",
                                         "code": REFERRER_CODE})
        check(status == 201, f"POST /v1/programs/{PROGRAM_ID}/referrers: {status} {body}")
        referrer_id = body["id"]
        code = body["code"]
        check(code == REFERRER_CODE, f"referrer code {code!r}")
        # Codes match in any case; the Location carries the code as enrolled.
        url = f"http://{earnd.public}/r/{REFERRER_CODE.lower()}?utm_source=test"

        # Run 1: Chromium as it is, headless user agent.
        headless_cid, headless_ua = follow_link(chromium, earnd, landing, url, code)
        check("HeadlessChrome/" in headless_ua,
              f"expected Chromium's headless user agent, got {headless_ua!r}")
        matched = crawler_patterns_matching(headless_ua)
        headless_reason = "bot_ua" if matched else ""
        print(f"headless UA: {headless_ua}")
        print(f"  crawler-list patterns matching it: {matched} -> expected reason "
              f"{headless_reason or '(empty: human)'}")

        # Run 2: the same browser with the user agent of headed Chromium: a human click.
        human_ua = headless_ua.replace("HeadlessChrome/", "Chrome/")
        check(not crawler_patterns_matching(human_ua),
              f"the crawler list matches the headed Chromium UA {human_ua!r}")
        human_cid, seen_ua = follow_link(chromium, earnd, landing, url, code, user_agent=human_ua)
        check(seen_ua == human_ua, f"--user-agent was not used: {seen_ua!r}")
        check(human_cid != headless_cid, "two visits got the same click id")
        print(f"human UA:    {human_ua}")

        rc = earnd.stop()
        check(rc == 0, f"earnd exited with {rc} after SIGTERM:\n{earnd.log_tail()}")
        stored, dropped = stop_counts(earnd.log_text())
        check(stored in (None, 2) and dropped in (None, 0),
              f"earnd's stop line reports {stored} clicks stored, {dropped} dropped:\n"
              + earnd.log_tail())

        rows = export_clicks(args.bin_dir, earnd.data_dir)
        by_id = {r["click_id"]: r for r in rows}
        check(len(rows) == 2 and set(by_id) == {headless_cid, human_cid},
              f"expected exactly the clicks {headless_cid} and {human_cid}, export has {rows}")
        for cid, reason in ((headless_cid, headless_reason), (human_cid, "")):
            row = by_id[cid]
            check(row["program"] == PROGRAM_ID and row["referrer_id"] == referrer_id
                  and row["code"] == code,
                  f"click {cid} stored with the wrong link: {row}")
            check(row["reason"] == reason,
                  f"click {cid} stored with reason {row['reason']!r}, expected {reason!r}")
            check(row["unique"] == "1", f"click {cid} not unique (two visitors): {row}")
        print(f"browser: headless click {headless_cid} reason={headless_reason or '(empty)'}, "
              f"human click {human_cid} reason=(empty); landed with ref, earnd_cid and cookie "
              f"({time.monotonic() - started:.1f} s)")
        return 0
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        print("--- earnd log tail ---\n" + earnd.log_tail(), file=sys.stderr)
        return 1
    finally:
        try:
            if earnd.proc is not None and earnd.proc.poll() is None:
                earnd.proc.send_signal(signal.SIGTERM)
                try:
                    earnd.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            earnd.kill()
        finally:
            landing.shutdown()
            landing.server_close()
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
