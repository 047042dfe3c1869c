// Helpers shared by the admin dashboard and the referrer portal: building elements (text is
// always set as text, never parsed as HTML), money and dates, tables, and charts that always
// come with a table of the same numbers.

import uPlot from '../vendor/uplot/uPlot.esm.js';

// el('td', {class: 'num'}, 'text', child, ...): an element with attributes and children.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const moneyFormats = new Map();

// Minor units of a currency as the currency writes them: 4990 USD is $49.90, 500 JPY is ¥500.
export function money(minor, currency) {
  if (minor === null || minor === undefined || !currency) return '';
  let f = moneyFormats.get(currency);
  if (!f) {
    f = new Intl.NumberFormat('en-US', {style: 'currency', currency});
    moneyFormats.set(currency, f);
  }
  const digits = f.resolvedOptions().maximumFractionDigits;
  return f.format(Number(minor) / 10 ** digits);
}

export function count(n) {
  return Number(n || 0).toLocaleString('en-US');
}

export function percent(rate) {
  return `${(Number(rate || 0) * 100).toFixed(1)}%`;
}

// An RFC 3339 time shown in the IANA zone tz, as "2026-11-30 23:30".
export function dateTime(iso, tz) {
  if (!iso) return '';
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(iso));
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}

// Today's date in the zone tz, moved by days.
export function dateIn(tz, days = 0) {
  const d = new Date(Date.now() + days * 86400000);
  return new Intl.DateTimeFormat('en-CA', {timeZone: tz}).format(d);
}

// The day of a time-series bucket: its start is already written in the report's zone.
export function bucketDay(start) {
  return String(start).slice(0, 10);
}

export const zones = ['UTC', 'America/Los_Angeles', 'America/New_York', 'Europe/London',
  'Europe/Berlin', 'Asia/Kolkata', 'Asia/Tokyo', 'Australia/Sydney'];

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// GET (or another method) of a same-origin JSON resource; throws HttpError on a non-2xx.
export async function api(path, options = {}) {
  const r = await fetch(path, {credentials: 'same-origin', ...options});
  const type = r.headers.get('content-type') || '';
  const body = type.includes('json') ? await r.json() : await r.text();
  if (!r.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${r.status}`;
    throw new HttpError(r.status, message);
  }
  return body;
}

// A table: columns are {key, label, num?, render?(row)}; the caption names it for screen
// readers. Header cells may be replaced by the caller (sort buttons).
export function table(caption, columns, rows, attrs = {}) {
  const head = el('tr', {}, columns.map((c) =>
    el('th', {scope: 'col', class: c.num ? 'num' : null}, c.label)));
  const body = rows.map((row) => el('tr', {}, columns.map((c, i) => {
    const value = c.render ? c.render(row) : row[c.key];
    const cell = el(i === 0 && c.rowHeader ? 'th' : 'td',
      {class: c.num ? 'num' : null, 'data-key': c.key, scope: i === 0 && c.rowHeader ? 'row' : null},
      value);
    return cell;
  })));
  const t = el('table', attrs, el('caption', {}, caption), el('thead', {}, head),
    el('tbody', {}, body));
  if (rows.length === 0) {
    t.querySelector('tbody').append(el('tr', {}, el('td', {colspan: columns.length}, 'Nothing yet.')));
  }
  return el('div', {class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption}, t);
}

const palette = ['#1f5fbf', '#b3470b', '#2a7a2a', '#7a2a8a', '#8a6d00'];

// A line chart of series over day (or hour) buckets, drawn synchronously, with its table
// beside it. labels are the x values as text; series are {label, values}.
export function chart(title, labels, series, tableColumns, rows, tableAttrs = {}) {
  const box = el('figure', {class: 'chart'});
  const plot = el('div', {class: 'plot', 'aria-hidden': 'true'});
  box.append(el('figcaption', {}, title), plot);
  const xs = labels.map((_, i) => i);
  const width = () => Math.max(260, Math.min(900, (box.clientWidth || 600) - 8));
  const opts = {
    width: 600, height: 220,
    scales: {x: {time: false}},
    axes: [{values: (_, ticks) => ticks.map((t) => labels[t] ? labels[t].slice(5) : '')}, {}],
    series: [{}, ...series.map((s, i) => ({label: s.label, stroke: palette[i % palette.length], width: 2}))],
    legend: {show: true},
    cursor: {show: false},
  };
  const data = [xs, ...series.map((s) => s.values)];
  requestAnimationFrame(() => {
    opts.width = width();
    new uPlot(opts, data, plot);
  });
  box.append(table(`${title} (table)`, tableColumns, rows, tableAttrs));
  return box;
}

// Copies text to the clipboard; says so in a live region.
export async function copy(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied.';
  } catch {
    status.textContent = 'Copy failed: select the link and copy it by hand.';
  }
}

export function errorBox(e) {
  return el('p', {class: 'error', role: 'alert'}, `Could not load: ${e.message}`);
}
