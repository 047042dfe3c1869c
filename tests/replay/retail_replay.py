#!/usr/bin/env python3
"""Replays a month of real orders (online-retail-2010-12.csv) over HTTP against a real earnd.

What it does:
  1. Starts earnd on 127.0.0.1 with free ports, a fresh data directory, EARND_ADMIN_KEY, and a
     config that trusts 127.0.0.1 as a proxy, so that each customer can click from an address of
     its own (X-Forwarded-For). Without that every click would come from one visitor
     (127.0.0.1 + one user agent) and last-click matching would mix the customers up.
  2. Creates program "retail-replay" (GBP, hold_days 0): a signup pays the referrer a fixed 500,
     a sale pays 20% of its amount (no cap, recurring_months 12), and 50 referrers
     "ref-00".."ref-49". A customer belongs to referrer CustomerID mod 50.
  3. Every customer clicks its referrer's link once with a desktop browser user agent (the click
     id comes back as earnd_cid), then signs up (event "signup-<CustomerID>", with that click id),
     then each of its invoices becomes a sale (event_id = InvoiceNo; the first one names the
     click, later ones rely on the customer's binding), and each cancellation becomes refunds.
  4. Computes every expected figure independently from the CSV and compares it with the referrer
     report, the ledgers, the payouts and their CSV files; marks one payout paid.

How the CSV becomes events (the file's README documents the columns):
  - Lines without CustomerID cannot be attributed to anyone: skipped and counted.
  - Money: each line is round(Quantity * UnitPrice * 100) pence (exact in Decimal; the prices have
    at most 2 decimals, so nothing is actually rounded), summed per invoice.
  - Refund matching (the data has no link between a cancellation and its order): for each line of
    a "C" invoice, the most recent earlier invoice of the same customer that has the same
    StockCode with at least the cancelled quantity and amount still unrefunded on that code.
    The matched lines of one cancellation are grouped per original invoice; each group is one
    refund event "<C invoice>-<original invoice>" with refund_of = the original and amount = the
    group's sum. Lines that match nothing (orders from before December 2010, "D" discounts,
    manual fees) are skipped and counted; so are groups whose amount is 0.
  - Time: the clicks are made now, so the invoices' 2010 timestamps would lie 15 years before
    their clicks, and no click (window [t - 30 days, t]) or binding (bound before t) could ever
    match them. Every event is therefore sent with occurred_at = the current time at sending,
    and the events of each customer are sent in the CSV's order (customers are spread over
    worker threads; one customer's events never cross threads, so its click, signup, sales and
    refunds keep their order). The report is thus read for the days of the run (UTC), and the
    range 2010-12-01..2010-12-31 is checked to hold nothing.

Exit status 0 when every figure reconciles, 1 otherwise.
"""

import argparse
import collections
import concurrent.futures
import csv
import datetime
import http.client
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
from decimal import Decimal
from pathlib import Path

PROGRAM = "retail-replay"
REFERRERS = 50
SIGNUP_MINOR = 500
SALE_BASIS_POINTS = 2000  # 20%
CSV_NAME = "online-retail-2010-12.csv"
COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
           "CustomerID", "Country"]
LISTENING = re.compile(r"event=listening public=(\S+) admin=(\S+)")
CLICK_ID = re.compile(r"^[0-9a-z]{26}$")


class Mismatch(Exception):
    pass


def check(ok, message):
    if not ok:
        raise Mismatch(message)


# ---------------------------------------------------------------------------------------------
# Money, exactly as the rules define it


def half_even_div(n, d):
    """n / d rounded half to even, for n >= 0 and d > 0."""
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return q


def sale_reward(amount):
    return half_even_div(amount * SALE_BASIS_POINTS, 10000)


def pence(quantity, price):
    value = Decimal(quantity) * Decimal(price) * 100
    check(value == value.to_integral_value(), f"a line is not whole pence: {quantity} x {price}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# The CSV as events


class Plan:
    """The events to send, per customer in CSV order, and what the replay skipped."""

    def __init__(self):
        self.events = collections.defaultdict(list)  # customer -> [event dict]
        self.first_seen = {}  # customer -> position of its first line, for a stable order
        self.skipped_lines_without_customer = 0
        self.unmatched_cancel_lines = 0
        self.unmatched_cancel_invoices = 0
        self.zero_refund_groups = 0
        self.zero_sales = 0
        self.multi_refunds = 0  # refunds of a sale that an earlier refund already reduced


def read_invoices(path):
    """[(invoice, customer, [lines])] in file order, and the count of lines without a customer."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        check(reader.fieldnames == COLUMNS, f"unexpected header {reader.fieldnames}")
        invoices = collections.OrderedDict()
        skipped = 0
        for row in reader:
            if not row["CustomerID"].strip():
                skipped += 1
                continue
            customer = str(int(Decimal(row["CustomerID"])))  # "17850.0" -> "17850"
            entry = invoices.setdefault(row["InvoiceNo"], (customer, []))
            check(entry[0] == customer, f"invoice {row['InvoiceNo']} has two customers")
            entry[1].append(row)
    return [(k, c, lines) for k, (c, lines) in invoices.items()], skipped


def add_sale(plan, open_lines, invoice, customer, lines):
    amount = 0
    for line in lines:
        qty = int(line["Quantity"])
        check(qty >= 0, f"sale {invoice} has a negative quantity")
        minor = pence(qty, line["UnitPrice"])
        amount += minor
        slot = open_lines[customer].setdefault(invoice, {}).setdefault(line["StockCode"], [0, 0])
        slot[0] += qty
        slot[1] += minor
    plan.zero_sales += amount == 0
    plan.events[customer].append({"type": "sale", "event_id": invoice, "amount_minor": amount})


def match_line(open_lines, customer, stock, qty, minor):
    """The most recent earlier invoice with enough of stock left; its remainder is reduced."""
    for invoice in reversed(list(open_lines[customer])):
        slot = open_lines[customer][invoice].get(stock)
        if slot and slot[0] >= qty and slot[1] >= minor:
            slot[0] -= qty
            slot[1] -= minor
            return invoice
    return None


def add_cancellation(plan, open_lines, invoice, customer, lines):
    groups = collections.OrderedDict()  # original invoice -> refunded pence
    for line in lines:
        qty = -int(line["Quantity"])
        check(qty > 0, f"cancellation {invoice} has a positive quantity")
        minor = pence(qty, line["UnitPrice"])
        original = match_line(open_lines, customer, line["StockCode"], qty, minor)
        if original is None:
            plan.unmatched_cancel_lines += 1
            continue
        groups[original] = groups.get(original, 0) + minor
    if not groups:
        plan.unmatched_cancel_invoices += 1
    for original, minor in groups.items():
        if minor == 0:
            plan.zero_refund_groups += 1
            continue
        plan.events[customer].append({"type": "refund", "event_id": f"{invoice}-{original}",
                                      "refund_of": original, "amount_minor": minor})


def build_plan(path):
    plan = Plan()
    invoices, plan.skipped_lines_without_customer = read_invoices(path)
    open_lines = collections.defaultdict(collections.OrderedDict)  # customer -> invoice -> stock
    for position, (invoice, customer, lines) in enumerate(invoices):
        plan.first_seen.setdefault(customer, position)
        if customer not in plan.events:
            plan.events[customer].append({"type": "signup", "event_id": f"signup-{customer}"})
        if invoice.startswith("C"):
            add_cancellation(plan, open_lines, invoice, customer, lines)
        else:
            add_sale(plan, open_lines, invoice, customer, lines)
    annotate_expected(plan)
    return plan


def referrer_index(customer):
    return int(customer) % REFERRERS


# ---------------------------------------------------------------------------------------------
# The independent expectation


def annotate_expected(plan):
    """Sets each event's "expect": the referrer amounts its answer must list (a reward, or the
    reversal of the refunded share: the share of the reward that follows the refunded share of
    the sale so far, half to even, minus what earlier refunds reversed)."""
    for events in plan.events.values():
        sales = {}  # event_id -> [amount, reward, refunded, reversed]
        for e in events:
            if e["type"] == "signup":
                e["expect"] = [SIGNUP_MINOR]
            elif e["type"] == "sale":
                reward = sale_reward(e["amount_minor"])
                sales[e["event_id"]] = [e["amount_minor"], reward, 0, 0]
                e["expect"] = [reward] if reward > 0 else []
            else:
                s = sales[e["refund_of"]]
                s[2] += e["amount_minor"]
                target = s[1] if s[2] >= s[0] else half_even_div(s[1] * s[2], s[0])
                delta = max(0, target - s[3])
                s[3] += delta
                e["expect"] = [-delta] if delta > 0 else []
                plan.multi_refunds += s[2] != e["amount_minor"]


def expected_figures(plan):
    """Per referrer index, from the CSV alone: signups, sales, refunds, net revenue, sale
    rewards, reversals, and rewards = signups * 500 + sale rewards - reversals."""
    fig = collections.defaultdict(collections.Counter)
    for customer, events in plan.events.items():
        f = fig[referrer_index(customer)]
        for e in events:
            amount = sum(e["expect"])
            f["rewards"] += amount
            if e["type"] == "signup":
                f["signups"] += 1
            elif e["type"] == "sale":
                f["sales"] += 1
                f["revenue"] += e["amount_minor"]
                f["sale_rewards"] += amount
            else:
                f["refunds"] += 1
                f["revenue"] -= e["amount_minor"]
                f["reversals"] -= amount
    return fig


# ---------------------------------------------------------------------------------------------
# earnd under test


class Earnd:
    """One earnd on loopback ports, with its own data directory; stop() always ends it."""

    def __init__(self, bin_dir, work_dir):
        self.binary = Path(bin_dir) / "earnd"
        self.work_dir = Path(work_dir)
        self.admin_key = "replay-" + secrets.token_hex(16)
        self.proc = None
        self.lines = collections.deque(maxlen=200)
        self.ready = threading.Event()
        self.public = self.admin = None

    def start(self, timeout_s=30):
        check(os.access(self.binary, os.X_OK), f"no earnd at {self.binary}: build it first")
        config = self.work_dir / "earnd.toml"
        config.write_text('[server]\ntrusted_proxies = ["127.0.0.1"]\n')
        self.proc = subprocess.Popen(
            [str(self.binary), "--config", str(config), "--data-dir", str(self.work_dir / "data"),
             "--public-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(os.environ, EARND_ADMIN_KEY=self.admin_key), text=True, errors="replace")
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.05):
            check(self.proc.poll() is None,
                  f"earnd exited with {self.proc.returncode}:\n{self.log_tail()}")
            check(time.monotonic() < deadline, "earnd never logged event=listening")

    def _read_log(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = LISTENING.search(line)
            if m and not self.ready.is_set():
                self.public, self.admin = m.group(1), m.group(2)
                self.ready.set()

    def log_tail(self, n=40):
        return "\n".join(list(self.lines)[-n:])

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None


class Client:
    """One kept-alive HTTP/1.1 connection to host:port."""

    def __init__(self, address, headers=None):
        host, port = address.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = headers or {}

    def call(self, method, path, body=None, headers=None):
        h = dict(self.headers, **(headers or {}))
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=h)
        resp = self.conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("Content-Type", "")
        parsed = json.loads(raw) if raw and "json" in ctype else raw.decode(errors="replace")
        return resp.status, parsed, resp

    def close(self):
        self.conn.close()


def now_rfc3339():
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------
# Setting up and replaying


def create_program(admin):
    status, body, _ = admin.call("POST", "/v1/programs", {
        "id": PROGRAM, "name": "Online retail replay", "currency": "GBP",
        "destination": "https://shop.example.com/welcome", "allowed_hosts": ["shop.example.com"],
        "attribution": {"model": "last_click", "window_days": 30, "cookie_days": 30,
                        "dedupe_minutes": 60},
        "rewards": [{"event": "signup", "referrer": {"fixed_minor": SIGNUP_MINOR}},
                    {"event": "sale", "referrer": {"percent": SALE_BASIS_POINTS // 100},
                     "recurring_months": 12}],
        "hold_days": 0})
    check(status == 201, f"POST /v1/programs: {status} {body}")
    referrers = []
    for i in range(REFERRERS):
        status, r, _ = admin.call("POST", f"/v1/programs/{PROGRAM}/referrers", {
            "external_id": f"ref-{i:02d}", "name": f"Referrer {i:02d}", "code": f"retail-{i:02d}"})
        check(status == 201, f"POST referrer {i}: {status} {r}")
        referrers.append(r)
    return body["program_key"], referrers


def visitor_headers(customer, user_agents):
    n = int(customer)
    return {"User-Agent": user_agents[n % len(user_agents)],
            "X-Forwarded-For": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"}


def click(public, referrers, customer, user_agents):
    """Follows the customer's referral link once; returns the click id."""
    code = referrers[referrer_index(customer)]["code"]
    headers = visitor_headers(customer, user_agents)
    status, _, resp = public.call("GET", f"/r/{code}", headers=headers)
    check(status == 302, f"/r/{code}: {status}")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.getheader("Location")).query)
    cid = query.get("earnd_cid", [""])[0]
    check(CLICK_ID.match(cid), f"no click id in {resp.getheader('Location')}")
    check(f"earnd_cid={cid}" in (resp.getheader("Set-Cookie") or ""), "no click cookie")
    return cid


def send(public, body):
    body = dict(body, occurred_at=now_rfc3339())
    status, reply, _ = public.call("POST", "/v1/conversions", body)
    check(status == 201, f"conversion {body['event_id']}: {status} {reply}")
    return reply


def replay_customer(public, ctx, customer):
    """Click, signup, sales and refunds of one customer; checks each answer as it comes."""
    expected_referrer = ctx["referrers"][referrer_index(customer)]["id"]
    cid = click(public, ctx["referrers"], customer, ctx["user_agents"])
    first_sale = True
    for e in ctx["plan"].events[customer]:
        body = {"event_id": e["event_id"], "type": e["type"], "customer_id": customer}
        if e["type"] != "signup":
            body.update(amount_minor=e["amount_minor"], currency="GBP")
        if e["type"] == "refund":
            body["refund_of"] = e["refund_of"]
        if e["type"] == "signup" or (e["type"] == "sale" and first_sale):
            body["click_id"] = cid
        first_sale = first_sale and e["type"] != "sale"
        reply = send(public, body)
        check(reply.get("attributed") is True and reply.get("referrer_id") == expected_referrer,
              f"{e['event_id']} attributed to {reply.get('referrer_id')}, not {expected_referrer}")
        got = [x["amount_minor"] for x in reply["rewards"] if x["kind"] != "referee"]
        check(got == e["expect"], f"{e['event_id']}: rewards {got}, expected {e['expect']}")


def replay(ctx, threads):
    """Spreads the customers over worker threads, each with its own connection."""
    customers = sorted(ctx["plan"].events, key=lambda c: ctx["plan"].first_seen[c])
    shards = [customers[i::threads] for i in range(threads)]

    def work(shard):
        public = Client(ctx["earnd"].public, {"Authorization": f"Bearer {ctx['key']}"})
        try:
            for customer in shard:
                replay_customer(public, ctx, customer)
        finally:
            public.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work, s) for s in shards]:
            f.result()


# ---------------------------------------------------------------------------------------------
# Reconciliation


def report_rows(admin, start_day, end_day):
    path = f"/v1/reports/referrers?program={PROGRAM}&from={start_day}&to={end_day}"
    status, body, _ = admin.call("GET", path)
    check(status == 200, f"{path}: {status} {body}")
    return {r["referrer_id"]: r for r in body["rows"]}


def reconcile(ctx, admin, start_day, end_day):
    """Rows of (index, expected, earnd) per referrer; raises at the first failed check."""
    fig = expected_figures(ctx["plan"])
    report = report_rows(admin, start_day, end_day)
    old = report_rows(admin, "2010-12-01", "2010-12-31")
    check(all(r["signups"] == r["sales"] == r["clicks"] == 0 for r in old.values()),
          "the 2010 range holds conversions, though occurred_at was the time of sending")
    rows = []
    for i, ref in enumerate(ctx["referrers"]):
        f = fig[i]
        status, ledger, _ = admin.call("GET", f"/v1/referrers/{ref['id']}/ledger")
        check(status == 200, f"ledger of {ref['id']}: {status}")
        check(ledger["currency"] == "GBP", f"ledger currency {ledger['currency']}")
        r = report[ref["id"]]
        rows.append({"i": i, "ref": ref, "exp": f, "report": r, "ledger": ledger})
    return rows


def compare_rows(rows):
    problems = []
    for row in rows:
        f, r, ledger = row["exp"], row["report"], row["ledger"]
        pairs = [("clicks", f["signups"], r["clicks"]), ("signups", f["signups"], r["signups"]),
                 ("sales", f["sales"], r["sales"]), ("revenue", f["revenue"], r["revenue_minor"]),
                 ("report rewards", f["rewards"], r["rewards_minor"]),
                 ("balance", f["rewards"], ledger["balance_minor"]),
                 ("reversed", -f["reversals"], ledger["reversed_minor"]),
                 ("bot clicks", 0, r["bot_clicks"])]
        for name, want, got in pairs:
            if want != got:
                problems.append(f"ref-{row['i']:02d} {name}: expected {want}, earnd {got}")
    return problems


def check_payouts(admin, rows):
    """POST /v1/payouts; every payout and its CSV must equal the referrer's balance."""
    status, body, _ = admin.call("POST", "/v1/payouts", {"program": PROGRAM})
    check(status == 200, f"POST /v1/payouts: {status} {body}")
    by_referrer = {p["referrer_id"]: p for p in body["payouts"]}
    problems = []
    for row in rows:
        balance, rid = row["ledger"]["balance_minor"], row["ref"]["id"]
        p = by_referrer.get(rid)
        row["payout"] = p
        if balance <= 0:
            problems += [f"{rid}: payout for a zero balance"] if p else []
            continue
        if p is None or p["amount_minor"] != balance or p["currency"] != "GBP":
            problems.append(f"{rid}: payout {p} does not equal the balance {balance}")
            continue
        status, text, _ = admin.call("GET", f"/v1/payouts/{p['id']}.csv")
        cells = list(csv.DictReader(text.splitlines())) if status == 200 else []
        payable = sum(1 for e in row["ledger"]["entries"] if e["kind"] in ("referrer", "reversal"))
        if (len(cells) != 1 or int(cells[0]["amount_minor"]) != balance
                or cells[0]["referrer_id"] != rid or cells[0]["currency"] != "GBP"
                or int(cells[0]["entries"]) != payable or cells[0]["status"] != "created"):
            problems.append(f"{rid}: payout CSV {status} {cells} (balance {balance})")
    return problems


def check_paid(admin, rows, row):
    """Marks one payout paid: its ledger moves to paid and nothing stays owed."""
    p = row["payout"]
    status, body, _ = admin.call("POST", f"/v1/payouts/{p['id']}/paid")
    check(status == 200 and body.get("status") == "paid", f"mark paid: {status} {body}")
    status, ledger, _ = admin.call("GET", f"/v1/referrers/{row['ref']['id']}/ledger")
    check(status == 200, "ledger after paid")
    check(ledger["balance_minor"] == 0, f"balance after paid: {ledger['balance_minor']}")
    check(ledger["paid_minor"] == p["amount_minor"],
          f"paid_minor {ledger['paid_minor']} != payout {p['amount_minor']}")
    for e in ledger["entries"]:
        check(e["kind"] != "referrer" or e["state"] == "paid", f"entry not paid: {e}")
        check(e["kind"] != "reversal" or e.get("settled_payout") == p["id"],
              f"reversal not settled: {e}")
    status, listed, _ = admin.call("GET", f"/v1/payouts?program={PROGRAM}&status=paid")
    check([x["id"] for x in listed["payouts"]] == [p["id"]], f"paid list: {listed}")
    status, again, _ = admin.call("POST", "/v1/payouts", {"program": PROGRAM})
    open_ids = sorted(x["id"] for x in again["payouts"])
    want = sorted(r["payout"]["id"] for r in rows if r["payout"] and r is not row)
    check(open_ids == want, "a second POST /v1/payouts changed the open payouts")
    return p


def print_table(rows, plan, paid):
    head = (f"{'referrer':<9}{'cust':>5}{'sales':>6}{'refd':>5}{'net revenue':>13}"
            f"{'earnd':>13}{'rewards':>10}{'report':>10}{'ledger':>10}{'payout':>10}")
    print(head)
    print("-" * len(head))
    tot = collections.Counter()
    for row in rows:
        f, r, ledger, p = row["exp"], row["report"], row["ledger"], row["payout"]
        payout = p["amount_minor"] if p else 0
        vals = [f["signups"], f["sales"], f["refunds"], f["revenue"], r["revenue_minor"],
                f["rewards"], r["rewards_minor"], ledger["balance_minor"], payout]
        for k, v in zip("abcdefghi", vals):
            tot[k] += v
        print(f"ref-{row['i']:02d}  " + "".join(f"{v:>{w}}" for v, w in
                                                zip(vals, (5, 6, 5, 13, 13, 10, 10, 10, 10))))
    print("-" * len(head))
    print("total    " + "".join(f"{tot[k]:>{w}}" for k, w in
                                 zip("abcdefghi", (5, 6, 5, 13, 13, 10, 10, 10, 10))))
    print(f"(amounts in pence; 'net revenue' and 'rewards' are computed from the CSV, "
          f"'earnd'/'report' come from the referrer report, 'ledger' is balance_minor "
          f"before payout {paid['id']} of {paid['amount_minor']} was marked paid)")
    print(f"skipped: {plan.skipped_lines_without_customer} lines without CustomerID, "
          f"{plan.unmatched_cancel_lines} cancellation lines without a matching order "
          f"({plan.unmatched_cancel_invoices} cancellations wholly unmatched), "
          f"{plan.zero_refund_groups} zero-amount refund groups; {plan.zero_sales} sales of 0; "
          f"{plan.multi_refunds} refunds of an already partly refunded sale")
    fig = collections.Counter()
    for row in rows:
        fig.update(row["exp"])
    print(f"expected balances in all: {fig['signups']} signups x {SIGNUP_MINOR} + "
          f"{fig['sale_rewards']} sale rewards - {fig['reversals']} reversed = "
          f"{fig['signups'] * SIGNUP_MINOR + fig['sale_rewards'] - fig['reversals']}")


# ---------------------------------------------------------------------------------------------


def run(args, work_dir):
    plan = build_plan(Path(args.data) / CSV_NAME)
    with open(Path(args.data) / "top-user-agents-desktop.json", encoding="utf-8") as f:
        user_agents = json.load(f)
    earnd = Earnd(args.bin_dir, work_dir)
    try:
        earnd.start()
        admin = Client(earnd.admin, {"Authorization": f"Bearer {earnd.admin_key}"})
        key, referrers = create_program(admin)
        ctx = {"plan": plan, "earnd": earnd, "key": key, "referrers": referrers,
               "user_agents": user_agents}
        start_day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        t0 = time.monotonic()
        replay(ctx, args.threads)
        sent = sum(len(v) for v in plan.events.values())
        print(f"replayed {len(plan.events)} clicks and {sent} conversions in "
              f"{time.monotonic() - t0:.1f} s with {args.threads} connections")
        end_day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        rows = reconcile(ctx, admin, start_day, end_day)
        problems = compare_rows(rows)
        problems += check_payouts(admin, rows)
        with_payout = [r for r in rows if r["payout"]]
        check(with_payout, "no payout was created")
        paid = check_paid(admin, rows, max(with_payout, key=lambda r: r["payout"]["amount_minor"]))
        print_table(rows, plan, paid)
        admin.close()
    finally:
        code = earnd.stop()
    check(code == 0, f"earnd exited with {code} after SIGTERM:\n{earnd.log_tail()}")
    for p in problems:
        print("MISMATCH " + p)
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="directory holding the earnd binary")
    ap.add_argument("--data", required=True, help="the shared data directory")
    ap.add_argument("--threads", type=int, default=8, help="concurrent connections")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    work_dir = tempfile.mkdtemp(prefix="earnd_replay_")
    try:
        return run(args, work_dir)
    except Mismatch as e:
        print(f"FAILED: {e}")
        return 1
    finally:
        if args.keep:
            print(f"data kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
