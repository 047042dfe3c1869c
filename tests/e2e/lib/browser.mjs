// Debian's Chromium driven by playwright-core: contexts that count (and block) every request
// leaving earnd's own origins, an axe-core check with the WCAG 2.1 AA rules, screenshots, and
// reading a page's tables back as data.

import {createRequire} from 'node:module';
import {existsSync, mkdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const CHROMIUM = process.env.EARND_CHROMIUM || '/usr/bin/chromium';

export const VIEWPORTS = [
  {name: 'desktop', width: 1280, height: 800},
  {name: 'phone', width: 390, height: 844},
];

// Playwright gives every launch a fresh, empty --user-data-dir of its own (it refuses the flag
// in args for that reason), so nothing carries over from an earlier run.
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // The browser's own zone differs from every zone the pages are asked to show.
    env: {...process.env, TZ: 'Pacific/Kiritimati'},
  });
}

// A context whose requests to anything but origins are recorded in outside[] and aborted, and
// whose page errors and CSP violations are recorded in problems[].
export async function openContext(browser, origins, options = {}) {
  const context = await browser.newContext({
    timezoneId: 'Europe/Berlin', locale: 'en-US', acceptDownloads: true, ...options,
  });
  const outside = [];
  const problems = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (origins.some((o) => url === o || url.startsWith(`${o}/`))) return route.continue();
    outside.push(url);
    return route.abort();
  });
  context.on('request', (req) => {
    const url = req.url();
    if (!origins.some((o) => url.startsWith(`${o}/`)) && !url.startsWith('data:') &&
        !outside.includes(url)) {
      outside.push(url);
    }
  });
  context.on('page', (page) => watch(page, problems));
  context.on('response', (r) => {
    const url = new URL(r.url());
    // The pages ask whether a session exists; a 401 there means "show the sign-in".
    const probe = r.status() === 401 && ['/admin/session', '/portal/api/me'].includes(url.pathname);
    if (r.status() >= 400 && r.request().resourceType() !== 'document' && !probe) {
      problems.push(`HTTP ${r.status()} for ${r.url()}`);
    }
  });
  return {context, outside, problems};
}

// Failed loads are judged by their status above; what the console adds beyond them (CSP
// refusals, script errors) is a problem.
function watch(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`console: ${m.text()}`);
    }
  });
}

// Runs axe-core (WCAG 2.0/2.1 A and AA) on the page; resolves the violations, described.
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.evaluate(axeSource);
  }
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
  }));
  if (result.passes.length === 0) throw new Error('axe-core checked nothing');
  return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

export function artifactDir() {
  const dir = process.env.EARND_E2E_ARTIFACTS || join(process.cwd(), 'e2e-artifacts');
  if (!existsSync(dir)) mkdirSync(dir, {recursive: true});
  return dir;
}

export async function screenshot(page, name) {
  const path = join(artifactDir(), `${name}.png`);
  await page.screenshot({path, fullPage: true});
  return path;
}

// The rows of a table (by CSS selector) as arrays of cell texts, header row excluded.
export async function tableRows(page, selector) {
  return page.$$eval(`${selector} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
}

// Cell texts keyed by the cells' data-key, one object per row.
export async function tableObjects(page, selector) {
  return page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) =>
    Object.fromEntries([...tr.children].filter((c) => c.dataset.key)
      .map((c) => [c.dataset.key, c.textContent.trim()]))));
}

// "$1,234.50" → 123450 (for a currency with two decimals).
export function minorOf(text) {
  const negative = text.includes('-');
  const n = Math.round(Number(text.replace(/[^0-9.]/g, '')) * 100);
  return negative ? -n : n;
}

export function countOf(text) {
  return Number(text.replace(/[^0-9]/g, ''));
}
