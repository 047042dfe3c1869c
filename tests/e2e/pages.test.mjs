// The admin dashboard and the referrer portal in a real browser (Debian's Chromium through
// playwright-core), against a real earnd on loopback: every page at desktop and phone size with
// a screenshot and an axe-core WCAG 2.1 AA check, no request leaving earnd, the pages' numbers
// equal to the report API, the CSV download equal to the API's CSV, dates in the chosen zone
// whatever the browser's, the one-time portal sign-in, referrer isolation, and the referrers
// page with 10,000 referrers.
//
// Run: EARND_BIN_DIR=build/bin EARND_E2E_ARTIFACTS=build/e2e node --test tests/e2e/

import {after, before, test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {ADMIN_KEY, Earnd, browserUa, request} from './lib/earnd.mjs';
import {VIEWPORTS, axeViolations, countOf, launch, minorOf, openContext, screenshot, tableObjects,
  tableRows} from './lib/browser.mjs';

const BIN_DIR = process.env.EARND_BIN_DIR || new URL('../../build/bin', import.meta.url).pathname;
const LINK_TTL_S = 60;  // the smallest earnd accepts; the expired-link test waits it out
const BULK_REFERRERS = 10000;

const day = (ms) => new Date(ms).toISOString().slice(0, 10);
const FROM = day(Math.min(Date.parse('2026-11-25T00:00:00Z'), Date.now() - 9 * 86400000));
const TO = day(Date.now() + 86400000);
const TZ_SALE_AT = '2026-12-01T07:30:00Z';

let earnd;
let browser;
let admin;  // {context, outside, problems} signed in as staff
const seed = {};

// Program, referrers (one named with markup that must stay text), clicks, conversions, payouts.
async function seedAcme() {
  const acme = await earnd.adminOk('POST', '/v1/programs', {
    id: 'acme', name: 'Acme', currency: 'USD',
    destination: 'https://shop.example.com/welcome', allowed_hosts: ['shop.example.com'],
    attribution: {model: 'last_click', window_days: 30, cookie_days: 30, dedupe_minutes: 60},
    rewards: [{event: 'signup', referrer: {fixed_minor: 500}},
      {event: 'sale', referrer: {percent: 20, max_minor: 10000}}],
    hold_days: 0, webhook_url: 'http://127.0.0.1:9/hook',
  });
  seed.key = acme.program_key;
  const enrol = (b) => earnd.adminOk('POST', '/v1/programs/acme/referrers', b);
  seed.ana = await enrol({external_id: 'u_ana', name: 'Ana Lima', code: 'ana'});
  seed.bob = await enrol({external_id: 'u_bob', name: 'Bob Stone', code: 'bobcode'});
  seed.eve = await enrol({external_id: 'u_eve', name: '<img src="https://evil.example/x.png" alt="">Eve', code: 'evecode'});
  seed.expiring = await earnd.adminOk('POST', `/v1/referrers/${seed.ana.id}/portal-link`, {});
  seed.expiringAt = Date.now();

  const anaClicks = [];
  for (let i = 1; i <= 6; i++) anaClicks.push(await earnd.click('ana', browserUa(i)));
  await earnd.click('ana', 'curl/8.5.0');
  seed.bobClicks = [];
  for (let i = 11; i <= 13; i++) seed.bobClicks.push(await earnd.click('bobcode', browserUa(i)));
  await earnd.click('evecode', browserUa(21));

  const sale = (event_id, click_id, customer_id, amount_minor, extra = {}) =>
    earnd.conversion(seed.key, {event_id, type: 'sale', click_id, customer_id, amount_minor, currency: 'USD', ...extra});
  await earnd.conversion(seed.key, {event_id: 's_ana1', type: 'signup', click_id: anaClicks[0], customer_id: 'cus_ana_1'});
  await sale('o_ana1', anaClicks[1], 'cus_ana_2', 4990);
  await earnd.conversion(seed.key, {event_id: 's_bob1', type: 'signup', click_id: seed.bobClicks[0], customer_id: 'cus_bob_1'});
  await sale('o_bob1', seed.bobClicks[1], 'cus_bob_2', 12000);
  await sale('o_tz', null, 'cus_tz_1', 2500, {occurred_at: TZ_SALE_AT});

  const made = await earnd.adminOk('POST', '/v1/payouts', {program: 'acme'});
  seed.payouts = made.payouts;
  const bobPayout = made.payouts.find((p) => p.referrer_id === seed.bob.id);
  await earnd.adminOk('POST', `/v1/payouts/${bobPayout.id}/paid`, {});
  // A reward after the payout, so that Ana has both a payout and a balance.
  await sale('o_ana2', anaClicks[2], 'cus_ana_3', 1000);
}

// 10,000 referrers, each with one click, through earnctl's bulk import (the same storage code
// as the server) into the data directory before earnd opens it: creating them one by one over
// the API rebuilds the catalog snapshot each time.
async function seedBulk(dataDir) {
  const dir = mkdtempSync(join(tmpdir(), 'earnd-e2e-csv-'));
  const csv = join(dir, 'clicks.csv');
  const t = Date.now() - 3600000;
  const rows = Array.from({length: BULK_REFERRERS}, (_, i) => {
    const n = String(i).padStart(5, '0');
    return `${(i + 1).toString(16)},${t + i},bulk${n},bulk_${n},visitor${i},0`;
  });
  writeFileSync(csv, `click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot\n${rows.join('\n')}\n`);
  const t0 = Date.now();
  execFileSync(join(BIN_DIR, 'earnctl'), ['import', 'clicks', csv, '--data-dir', dataDir, '--program', 'bulk']);
  console.log(`seeded ${BULK_REFERRERS} referrers in ${Date.now() - t0} ms`);
  rmSync(dir, {recursive: true, force: true});
}

before(async () => {
  earnd = await Earnd.start(BIN_DIR, `[web]\nportal_link_ttl_s = ${LINK_TTL_S}\n`, seedBulk);
  await seedAcme();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (earnd) {
    const status = await earnd.stop();
    assert.equal(status.code, 0, `earnd exit: ${JSON.stringify(status)}`);
  }
});

const range = (tz, program = 'acme') => new URLSearchParams({program, from: FROM, to: TO, tz}).toString();

// Loads url afresh and waits until the view named ready has rendered.
async function show(page, url, ready) {
  await page.goto('about:blank');
  await page.goto(url);
  await page.waitForSelector(`#view[data-ready="${ready}"]`, {state: 'attached', timeout: 15000});
}

// Each viewport: load, check with axe, screenshot; then(page) may act on the page first.
async function everyViewport(page, url, ready, name, then) {
  for (const vp of VIEWPORTS) {
    await page.setViewportSize({width: vp.width, height: vp.height});
    if (ready) await show(page, url, ready);
    else await page.goto(url);
    if (then) await then(page);
    const text = await page.innerText('body');
    assert.doesNotMatch(text, /\b(undefined|null|NaN|Invalid Date)\b|\[object /, `${name} shows a broken value`);
    assert.deepEqual(await axeViolations(page), [], `${name} at ${vp.name}`);
    await screenshot(page, `${name}-${vp.name}`);
  }
}

function assertClean(ctx, what) {
  assert.deepEqual(ctx.outside, [], `${what}: requests left earnd`);
  assert.deepEqual(ctx.problems, [], `${what}: page errors or CSP violations`);
}

test('staff sign in with the admin key into an HttpOnly, SameSite=Strict session', async () => {
  admin = await openContext(browser, [earnd.adminOrigin]);
  const page = await admin.context.newPage();
  await everyViewport(page, `${earnd.adminOrigin}/admin/`, 'signin', 'admin-signin');
  await page.fill('#key', 'wrong-key-0123456789');
  await page.click('#signin button[type=submit]');
  assert.match(await page.textContent('h1'), /Sign-in failed/);

  await page.goto(`${earnd.adminOrigin}/admin/`);
  await page.fill('#key', ADMIN_KEY);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#view[data-ready="overview"]');
  const cookie = (await admin.context.cookies()).find((c) => c.name === 'earnd_admin');
  assert.ok(cookie, 'no staff cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '');
  await page.close();
  assertClean(admin, 'admin sign-in');
});

test('every admin page renders at both sizes with no WCAG 2.1 AA violation', async () => {
  const page = await admin.context.newPage();
  const base = `${earnd.adminOrigin}/admin/#`;
  const q = range('UTC');
  await everyViewport(page, `${base}/overview?${q}`, 'overview', 'admin-overview');
  await everyViewport(page, `${base}/referrers?${q}`, 'referrers', 'admin-referrers');
  await everyViewport(page, `${base}/referrer/${seed.ana.id}?${q}`, 'referrer', 'admin-referrer');
  await everyViewport(page, `${base}/conversions?${q}`, 'conversions', 'admin-conversions',
    async (p) => {
      await p.click('button:text-is("o_ana1")');
      await p.waitForSelector('#explain');
    });
  await everyViewport(page, `${base}/payouts?${q}`, 'payouts', 'admin-payouts');
  await everyViewport(page, `${base}/webhooks?${q}`, 'webhooks', 'admin-webhooks');

  // The name with markup is shown as text, and its image was never requested.
  await show(page, `${base}/referrers?${q}`, 'referrers');
  assert.ok((await page.textContent('#referrers')).includes('<img src="https://evil.example/x.png" alt="">Eve'));
  assert.equal(await page.$$eval('#referrers img', (x) => x.length), 0);
  await page.close();
  assertClean(admin, 'admin pages');
});

test('the explain panel shows the winning click, the rule and the rewards that followed', async () => {
  const page = await admin.context.newPage();
  await show(page, `${earnd.adminOrigin}/admin/#/conversions?${range('UTC')}`, 'conversions');
  await page.click('button:text-is("o_ana1")');
  await page.waitForSelector('#explain');
  const x = await earnd.adminOk('GET', '/v1/conversions/o_ana1/explain?program=acme');
  assert.equal(await page.textContent('#explain-rule'), x.rule);
  const text = await page.textContent('#explain');
  assert.ok(text.includes(x.click_id), 'the winning click is not shown');
  assert.ok(text.includes('winner'));
  assert.ok(text.includes('$9.98'), 'the 20% reward of $49.90 is not shown');
  await page.close();
  assertClean(admin, 'explain');
});

test('the overview and referrer tables equal the report API for the same program, range and zone', async () => {
  const page = await admin.context.newPage();
  for (const tz of ['UTC', 'America/Los_Angeles']) {
    const q = range(tz);
    const ts = await earnd.adminOk('GET', `/v1/reports/timeseries?${q}&interval=day`);
    await show(page, `${earnd.adminOrigin}/admin/#/overview?${q}`, 'overview');
    const shown = await tableObjects(page, '#series');
    assert.equal(shown.length, ts.rows.length);
    assert.ok(ts.rows.some((r) => r.clicks > 0), 'the series has no clicks at all');
    ts.rows.forEach((r, i) => {
      const s = shown[i];
      assert.equal(s.day, r.start.slice(0, 10));
      assert.deepEqual([countOf(s.clicks), countOf(s.unique_clicks), countOf(s.signups), countOf(s.sales),
        minorOf(s.revenue_minor), minorOf(s.rewards_minor)],
      [r.clicks, r.unique_clicks, r.signups, r.sales, r.revenue_minor, r.rewards_minor], `${tz} ${s.day}`);
    });
    const funnel = await tableRows(page, '#funnel');
    const sum = (k) => ts.rows.reduce((a, r) => a + r[k], 0);
    assert.deepEqual(funnel.map((r) => [r[0], countOf(r[1])]),
      [['Clicks', sum('unique_clicks')], ['Signups', sum('signups')], ['Sales', sum('sales')]]);

    const report = await earnd.adminOk('GET', `/v1/reports/referrers?${q}`);
    await show(page, `${earnd.adminOrigin}/admin/#/referrers?${q}`, 'referrers');
    const rows = await tableObjects(page, '#referrers');
    assert.equal(rows.length, report.rows.length);
    for (const r of report.rows) {
      const s = rows.find((x) => x.code === r.code);
      assert.ok(s, `no row for ${r.code}`);
      assert.deepEqual([countOf(s.clicks), countOf(s.unique_clicks), countOf(s.signups), countOf(s.sales),
        minorOf(s.revenue_minor), minorOf(s.rewards_minor), s.conversion_rate],
      [r.clicks, r.unique_clicks, r.signups, r.sales, r.revenue_minor, r.rewards_minor,
        `${(r.conversion_rate * 100).toFixed(1)}%`], `${tz} ${r.code}`);
    }
    const ana = report.rows.find((r) => r.code === 'ana');
    assert.deepEqual([ana.clicks, ana.bot_clicks, ana.signups, ana.sales, ana.revenue_minor],
      [7, 1, 1, 2, 5990], 'the seeded figures did not reach the report');
  }

  // One referrer: its series and its ledger by state.
  const q = range('UTC');
  const ts = await earnd.adminOk('GET', `/v1/reports/timeseries?${q}&referrer=${seed.ana.id}&interval=day`);
  const ledger = await earnd.adminOk('GET', `/v1/referrers/${seed.ana.id}/ledger`);
  await show(page, `${earnd.adminOrigin}/admin/#/referrer/${seed.ana.id}?${q}`, 'referrer');
  const shown = await tableObjects(page, '#series');
  assert.deepEqual(shown.map((s) => [s.day, countOf(s.clicks), countOf(s.sales), minorOf(s.revenue_minor)]),
    ts.rows.map((r) => [r.start.slice(0, 10), r.clicks, r.sales, r.revenue_minor]));
  const states = await tableRows(page, '#ledger-states');
  assert.deepEqual(states.map((r) => [r[0], minorOf(r[1])]),
    ['pending', 'approved', 'paid', 'reversed'].map((k) => [k, ledger[`${k}_minor`]]));
  assert.equal(minorOf(await page.textContent('#balance')), ledger.balance_minor);
  await page.close();
  assertClean(admin, 'numbers');
});

test('the referrers CSV download equals the API\'s CSV, and so does a payout\'s', async () => {
  const page = await admin.context.newPage();
  const q = range('America/Los_Angeles');
  await show(page, `${earnd.adminOrigin}/admin/#/referrers?${q}`, 'referrers');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#referrers-csv')]);
  const got = readFileSync(await download.path(), 'utf8');
  const api = await earnd.adminOk('GET', `/v1/referrers?${q}&sort=name&format=csv`);
  assert.equal(got, api);
  assert.match(got, /^referrer_id,external_id,name,code,clicks,/);
  assert.ok(got.includes(`${seed.ana.id},u_ana,Ana Lima,ana,7,7,1,1,2,5990,1698,`), got);

  await show(page, `${earnd.adminOrigin}/admin/#/payouts?${q}`, 'payouts');
  const payout = seed.payouts[0];
  const [pd] = await Promise.all([page.waitForEvent('download'), page.click(`a:text-is("${payout.id}.csv")`)]);
  assert.equal(readFileSync(await pd.path(), 'utf8'), await earnd.adminOk('GET', `/v1/payouts/${payout.id}.csv`));
  await page.close();
  assertClean(admin, 'csv');
});

test('the payouts page shows the due balances of the API, and creating the payouts matches its preview', async () => {
  // A program of its own with a payout minimum, so that the other tests' payouts stay as seeded.
  const dues = await earnd.adminOk('POST', '/v1/programs', {
    id: 'dues', name: 'Dues', currency: 'USD',
    destination: 'https://shop.example.com/welcome', allowed_hosts: ['shop.example.com'],
    rewards: [{event: 'sale', referrer: {percent: 20}}], hold_days: 0, payout_minimum_minor: 1000,
  });
  const enrol = (b) => earnd.adminOk('POST', '/v1/programs/dues/referrers', b);
  const cleo = await enrol({external_id: 'u_cleo', name: 'Cleo Park', code: 'cleo'});
  const dan = await enrol({external_id: 'u_dan', name: 'Dan Ruiz', code: 'dan'});
  await enrol({external_id: 'u_fay', name: 'Fay Moss', code: 'fay'});  // earns nothing
  const clicks = [await earnd.click('cleo', browserUa(31)), await earnd.click('cleo', browserUa(32)),
    await earnd.click('dan', browserUa(33))];
  // earnd runs with async durability: a conversion may name only a click already stored.
  for (let i = 0; i < 50; i++) {
    const csv = await earnd.adminOk('GET', '/v1/clicks/export?program=dues');
    if (clicks.every((c) => csv.includes(c))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const sell = (click_id, event_id, amount_minor) => earnd.conversion(dues.program_key,
    {event_id, type: 'sale', click_id, customer_id: `cus_${event_id}`, amount_minor, currency: 'USD'});
  await sell(clicks[0], 'd_cleo1', 4990);  // 998
  await sell(clicks[1], 'd_cleo2', 1000);  // 200
  await sell(clicks[2], 'd_dan1', 2500);  // 500, below the minimum of 1000

  const due = await earnd.adminOk('GET', '/v1/payouts/due?program=dues');
  const byId = (rows) => [...rows].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  assert.deepEqual(byId(due.due.map((d) => [d.referrer_id, d.approved_minor, d.eligible])),
    byId([[cleo.id, 1198, true], [dan.id, 500, false]]));
  assert.equal(due.total_minor, 1198);

  const page = await admin.context.newPage();
  await show(page, `${earnd.adminOrigin}/admin/#/payouts?${range('UTC', 'dues')}`, 'payouts');
  assert.deepEqual((await tableObjects(page, '#due')).map((r) => [r.name, r.code,
    minorOf(r.approved_minor), minorOf(r.pending_minor), minorOf(r.balance_minor), r.eligible]),
  due.due.map((d) => [d.name, d.code, d.approved_minor, d.pending_minor, d.balance_minor,
    d.eligible ? 'yes' : 'no']));
  assert.equal(minorOf(await page.textContent('#preview-total')), due.total_minor);
  assert.match(await page.textContent('#payout-preview'), /^Preview: 1 payout, \$11\.98 in total\.$/);
  assert.deepEqual(await axeViolations(page), [], 'payouts page with due balances');

  // Create: the payouts made are the preview's eligible rows, and they are no longer due.
  await page.click('#create-payouts');
  await page.waitForFunction(() =>
    document.querySelectorAll('#payouts tbody td[data-key="amount_minor"]').length === 1);
  const made = await earnd.adminOk('GET', '/v1/payouts?program=dues');
  assert.deepEqual(made.payouts.map((p) => [p.referrer_id, p.amount_minor]),
    due.due.filter((d) => d.eligible).map((d) => [d.referrer_id, d.approved_minor]));
  assert.deepEqual((await tableObjects(page, '#payouts')).map((p) => [p.name, minorOf(p.amount_minor)]),
    [['Cleo Park', 1198]]);
  assert.deepEqual((await tableObjects(page, '#due')).map((r) => [r.name, minorOf(r.approved_minor), r.eligible]),
    [['Dan Ruiz', 500, 'no']]);
  assert.equal(minorOf(await page.textContent('#preview-total')), 0);
  assert.equal(await page.isDisabled('#create-payouts'), true);
  await page.close();
  assertClean(admin, 'payout preview');
});

test('a sale at 2026-12-01T07:30Z is on Nov 30 in Los Angeles and on Dec 1 in Tokyo, whatever the browser\'s zone', async () => {
  for (const browserZone of ['Europe/Berlin', 'UTC', 'Asia/Tokyo', 'America/Los_Angeles']) {
    const ctx = await openContext(browser, [earnd.adminOrigin], {timezoneId: browserZone,
      storageState: await admin.context.storageState()});
    const page = await ctx.context.newPage();
    for (const [tz, when, dayOf, otherDay] of [
      ['America/Los_Angeles', '2026-11-30 23:30', '2026-11-30', '2026-12-01'],
      ['Asia/Tokyo', '2026-12-01 16:30', '2026-12-01', '2026-11-30']]) {
      await show(page, `${earnd.adminOrigin}/admin/#/conversions?${range(tz)}`, 'conversions');
      const rows = await tableObjects(page, '#conversions');
      const sale = rows.find((r) => r.event_id === 'o_tz');
      assert.equal(sale?.occurred_at, when, `${tz} in a browser in ${browserZone}`);
      assert.ok((await page.textContent('#range')).includes(tz));

      await show(page, `${earnd.adminOrigin}/admin/#/overview?${range(tz)}`, 'overview');
      const days = await tableObjects(page, '#series');
      const on = (d) => days.find((r) => r.day === d);
      assert.equal(countOf(on(dayOf).sales), 1, `${tz} ${dayOf} in ${browserZone}`);
      assert.equal(minorOf(on(dayOf).revenue_minor), 2500);
      assert.equal(countOf(on(otherDay).sales), 0, `${tz} ${otherDay} in ${browserZone}`);
    }
    await ctx.context.close();
    assertClean(ctx, `time zones in ${browserZone}`);
  }
});

let portal;  // {context, outside, problems} signed in as Ana
let portalLink;

test('portal sign-in: the link\'s GET shows only Continue, the POST signs in, a used link fails', async () => {
  // The staff hand the referrer a link made on the referrer's page.
  const page = await admin.context.newPage();
  await show(page, `${earnd.adminOrigin}/admin/#/referrer/${seed.ana.id}?${range('UTC')}`, 'referrer');
  await page.click('#make-portal-link');
  portalLink = await page.inputValue('#portal-url');
  assert.ok(portalLink.startsWith(`${earnd.publicOrigin}/portal/signin/`), portalLink);
  await page.close();
  const token = portalLink.split('/').pop();

  // A mail scanner's GETs do not use the link.
  for (let i = 0; i < 2; i++) assert.equal((await request(portalLink)).status, 200);

  portal = await openContext(browser, [earnd.publicOrigin]);
  const seen = [];
  portal.context.on('request', (r) => seen.push({url: r.url(), referer: r.headers().referer || ''}));
  const p = await portal.context.newPage();
  await everyViewport(p, portalLink, null, 'portal-signin');
  assert.deepEqual(await p.$$eval('button, input:not([type=hidden]), a', (xs) => xs.map((x) => x.textContent.trim())),
    ['Continue']);
  assert.equal((await portal.context.cookies()).length, 0, 'the GET set a cookie');
  assert.equal((await portal.context.request.get(`${earnd.publicOrigin}/portal/api/me`)).status(), 401);

  await Promise.all([p.waitForURL(`${earnd.publicOrigin}/portal/`), p.click('#continue')]);
  await p.waitForSelector('#view[data-ready="links"]');
  assert.ok((await p.textContent('#brand')).includes('Ana Lima'));
  const cookie = (await portal.context.cookies()).find((c) => c.name === 'earnd_portal');
  assert.equal(cookie?.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  const after = seen.slice(seen.findIndex((r) => r.url === `${earnd.publicOrigin}/portal/`));
  assert.ok(after.length > 3);
  for (const r of after) {
    assert.ok(!r.url.includes(token) && !r.referer.includes(token), `token leaked to ${r.url}`);
  }
  await p.close();

  const other = await openContext(browser, [earnd.publicOrigin]);
  const q = await other.context.newPage();
  const used = await q.goto(portalLink);
  assert.equal(used.status(), 410);
  assert.match(await q.textContent('#reason'), /already been used/);
  assert.match(await q.textContent('main'), /new sign-in link/);
  assert.equal(await q.$$eval('button', (b) => b.length), 0);
  await everyViewport(q, portalLink, null, 'portal-link-used');
  assert.equal((await other.context.request.get(`${earnd.publicOrigin}/portal/api/me`)).status(), 401);
  await other.context.close();
  assertClean(other, 'used link');
  assertClean(portal, 'sign-in');
});

test('every portal page renders at both sizes with no WCAG 2.1 AA violation, with Ana\'s own numbers', async () => {
  const page = await portal.context.newPage();
  const base = `${earnd.publicOrigin}/portal/#`;
  const q = new URLSearchParams({from: FROM, to: TO, tz: 'America/Los_Angeles'});
  await portal.context.grantPermissions(['clipboard-read', 'clipboard-write'], {origin: earnd.publicOrigin});
  await everyViewport(page, `${base}/links`, 'links', 'portal-links');
  await page.click('button:text-is("Copy link")');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${earnd.publicOrigin}/r/ana`);
  assert.equal(await page.getAttribute('img.qr', 'alt'), `QR code for ${earnd.publicOrigin}/r/ana`);
  await everyViewport(page, `${base}/stats?${q}`, 'stats', 'portal-stats');
  await everyViewport(page, `${base}/conversions?${q}`, 'conversions', 'portal-conversions');
  await everyViewport(page, `${base}/rewards?${q}`, 'rewards', 'portal-rewards');

  const report = await earnd.adminOk('GET', `/v1/reports/referrers?program=acme&${q}`);
  const mine = report.rows.find((r) => r.referrer_id === seed.ana.id);
  await show(page, `${base}/stats?${q}`, 'stats');
  const [totals] = await tableObjects(page, '#totals');
  assert.deepEqual([countOf(totals.clicks), countOf(totals.unique_clicks), countOf(totals.signups),
    countOf(totals.sales), minorOf(totals.rewards_minor)],
  [mine.clicks, mine.unique_clicks, mine.signups, mine.sales, mine.rewards_minor]);
  const ts = await earnd.adminOk('GET', `/v1/reports/timeseries?program=acme&referrer=${seed.ana.id}&${q}&interval=day`);
  const series = await tableObjects(page, '#series');
  assert.deepEqual(series.map((s) => [s.day, countOf(s.clicks), countOf(s.sales)]),
    ts.rows.map((r) => [r.start.slice(0, 10), r.clicks, r.sales]));

  await show(page, `${base}/conversions?${q}`, 'conversions');
  const conv = await tableObjects(page, '#conversions');
  assert.deepEqual(conv.map((c) => c.customer_id).sort(), ['cu***_1', 'cu***_2', 'cu***_3']);

  const ledger = await earnd.adminOk('GET', `/v1/referrers/${seed.ana.id}/ledger`);
  await show(page, `${base}/rewards?${q}`, 'rewards');
  assert.equal(minorOf(await page.textContent('#balance')), ledger.balance_minor);
  assert.equal((await tableRows(page, '#rewards')).length, ledger.entries.filter((e) => e.kind !== 'referee').length);
  assert.deepEqual((await tableObjects(page, '#payouts')).map((p) => minorOf(p.amount_minor)), [1498]);
  await page.close();
  assertClean(portal, 'portal pages');
});

test('referrer A never sees B\'s code, name or clicks anywhere in the portal', async () => {
  const bodies = [];
  const onResponse = async (r) => {
    if (r.url().includes('/portal/api/')) bodies.push(await r.text().catch(() => ''));
  };
  portal.context.on('response', onResponse);
  const page = await portal.context.newPage();
  const q = new URLSearchParams({from: FROM, to: TO, tz: 'UTC'});
  const texts = [];
  for (const name of ['links', 'stats', 'conversions', 'rewards']) {
    await show(page, `${earnd.publicOrigin}/portal/#/${name}?${q}`, name);
    texts.push(await page.content());
  }
  // Asking for another referrer through the URL changes nothing, and the admin API is closed.
  for (const path of [`/portal/api/me/links?referrer_id=${seed.bob.id}`,
    `/portal/api/me/conversions?referrer_id=${seed.bob.id}`, `/portal/api/me/summary?referrer=${seed.bob.id}`]) {
    const r = await page.evaluate((u) => fetch(u).then((x) => x.text()), path);
    bodies.push(r);
  }
  const wait = Date.now() + 2000;
  while (bodies.length < 7 && Date.now() < wait) await new Promise((r) => setTimeout(r, 50));
  portal.context.off('response', onResponse);
  for (const path of [`/v1/referrers/${seed.bob.id}/ledger`, '/v1/referrers?program=acme']) {
    assert.equal((await portal.context.request.get(`${earnd.adminOrigin}${path}`)).status(), 401);
  }
  assert.ok(bodies.length >= 7, `only ${bodies.length} API answers seen`);
  assert.ok(bodies.join('\n').includes(seed.ana.id), 'Ana\'s own data is missing');
  const everything = [...bodies, ...texts].join('\n');
  for (const secret of [seed.bob.id, 'bobcode', 'Bob Stone', 'u_bob', 'cus_bob', ...seed.bobClicks,
    seed.eve.id, 'evecode']) {
    assert.ok(!everything.includes(secret), `Ana's portal shows ${secret}`);
  }
  await page.close();
  assertClean(portal, 'isolation');
});

test('the referrers page with 10,000 referrers renders its first page', async () => {
  const page = await admin.context.newPage();
  const q = new URLSearchParams({program: 'bulk', from: FROM, to: TO, tz: 'UTC'});
  const api = await earnd.adminOk('GET', `/v1/referrers?${q}&sort=name&per_page=50`);
  await page.goto('about:blank');
  const t0 = Date.now();
  await page.goto(`${earnd.adminOrigin}/admin/#/referrers?${q}`);
  await page.waitForSelector('#view[data-ready="referrers"] #referrers tbody tr:nth-child(50)',
    {state: 'attached'});
  const ms = Date.now() - t0;
  console.log(`admin referrers page with ${BULK_REFERRERS} referrers: first page rendered in ${ms} ms`);
  assert.equal(await page.textContent('#referrer-count'), '10,000 referrers, page 1 of 200');
  // Imported referrers have no name: the page shows their id instead, in the API's order.
  const shownAs = (rows) => rows.map((r) => r.name || r.referrer_id);
  assert.deepEqual((await tableObjects(page, '#referrers')).map((r) => r.name), shownAs(api.rows));
  assert.equal(api.rows.length, 50);
  const second = await earnd.adminOk('GET', `/v1/referrers?${q}&sort=name&per_page=50&page=2`);
  await page.click('#next-page');
  await page.waitForFunction(() => document.querySelector('#referrer-count')?.textContent.includes('page 2 of'));
  assert.deepEqual((await tableObjects(page, '#referrers')).map((r) => r.name), shownAs(second.rows));
  await page.close();
  assertClean(admin, '10,000 referrers');
});

test('an expired portal link fails with a page that says how to get a new one', async () => {
  const token = seed.expiring.url.split('/').pop();
  const wait = seed.expiringAt + LINK_TTL_S * 1000 + 1000 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const ctx = await openContext(browser, [earnd.publicOrigin]);
  const page = await ctx.context.newPage();
  const r = await page.goto(seed.expiring.url);
  assert.equal(r.status(), 410);
  assert.match(await page.textContent('#reason'), /expired/);
  assert.match(await page.textContent('main'), /new sign-in link/);
  await everyViewport(page, seed.expiring.url, null, 'portal-link-expired');

  // Its POST does not sign in either.
  const post = await request(`${earnd.publicOrigin}/portal/signin`, {method: 'POST', body: `token=${token}`,
    headers: {'Content-Type': 'application/x-www-form-urlencoded', Origin: earnd.publicOrigin}});
  assert.equal(post.status, 410);
  assert.ok(!(post.headers['set-cookie'] || []).some((c) => c.startsWith('earnd_portal=') && !c.includes('Max-Age=0')));
  await ctx.context.close();
  assertClean(ctx, 'expired link');
});
