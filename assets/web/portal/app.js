// The referrer portal: my links (copy, QR code, share links), my stats, my conversions and
// my rewards. Every call goes to /portal/api/me/..., which the session cookie binds to one
// referrer; nothing here names a referrer id.

import {el, money, count, percent, dateTime, dateIn, bucketDay, zones, api, table, chart, copy,
  errorBox} from './lib/ui.js';
import qrcode from './vendor/qrcode-generator/qrcode.mjs';

const view = document.getElementById('view');
let me = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  return {name: path || 'links', params: new URLSearchParams(query || '')};
}

function scope(params) {
  const tz = params.get('tz') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  return {tz, from: params.get('from') || dateIn(tz, -29), to: params.get('to') || dateIn(tz, 0)};
}

function query(obj) {
  return new URLSearchParams(Object.entries(obj).filter(([, v]) => v !== '' && v != null)).toString();
}

function rangeForm(r, s) {
  const form = el('form', {class: 'scope', 'aria-label': 'Range and time zone'},
    el('label', {for: 'f-from'}, 'From'), el('input', {id: 'f-from', name: 'from', type: 'date', value: s.from}),
    el('label', {for: 'f-to'}, 'To'), el('input', {id: 'f-to', name: 'to', type: 'date', value: s.to}),
    el('label', {for: 'f-tz'}, 'Time zone'),
    el('select', {id: 'f-tz', name: 'tz'}, [...new Set([s.tz, ...zones])].map((z) =>
      el('option', {value: z, selected: z === s.tz}, z))),
    el('button', {type: 'submit'}, 'Show'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/${r.name}?${new URLSearchParams(new FormData(form))}`;
  });
  return [form, el('p', {class: 'range', id: 'range'}, `${s.from} to ${s.to}, dates in ${s.tz}`)];
}

function qr(url) {
  const code = qrcode(0, 'M');
  code.addData(url);
  code.make();
  return el('img', {src: code.createDataURL(4, 2), alt: `QR code for ${url}`, class: 'qr', width: 160, height: 160});
}

function shareLinks(url) {
  const text = encodeURIComponent(`Join ${me.program_name || 'us'} with my link: ${url}`);
  return el('ul', {class: 'share', 'aria-label': 'Share'},
    el('li', {}, el('a', {href: `mailto:?subject=${encodeURIComponent(me.program_name || '')}&body=${text}`}, 'Share by email')),
    el('li', {}, el('a', {href: `https://wa.me/?text=${text}`, rel: 'noopener noreferrer', target: '_blank'}, 'Share on WhatsApp')),
    el('li', {}, el('a', {href: `https://twitter.com/intent/tweet?text=${text}`, rel: 'noopener noreferrer', target: '_blank'}, 'Share on X')));
}

async function links() {
  const list = await api('/portal/api/me/links');
  const active = list.links.filter((l) => !l.disabled);
  return [el('h1', {}, 'My links'),
    el('p', {}, 'Share a link: every visitor who comes through it and signs up or buys counts for you.'),
    ...active.map((l, i) => {
      const status = el('span', {role: 'status', class: 'status'});
      const id = `link-${i}`;
      return el('section', {class: 'card link-card', 'aria-labelledby': `${id}-h`},
        el('h2', {id: `${id}-h`}, `Code ${l.code}`),
        el('label', {for: id}, 'Your link'),
        el('div', {class: 'inline'},
          el('input', {id, type: 'text', readonly: true, value: l.url, class: 'link-url'}),
          el('button', {type: 'button', onclick: () => copy(l.url, status)}, 'Copy link'), status),
        qr(l.url), shareLinks(l.url));
    }),
    active.length === 0 ? el('p', {}, 'You have no active link.') : null];
}

async function stats(r, s) {
  const range = {from: s.from, to: s.to, tz: s.tz};
  const [summary, ts] = await Promise.all([
    api(`/portal/api/me/summary?${query(range)}`),
    api(`/portal/api/me/timeseries?${query({...range, interval: 'day'})}`),
  ]);
  const t = summary.totals || {};
  const rows = ts.rows.map((x) => ({...x, day: bucketDay(x.start)}));
  return [...rangeForm(r, s), el('h1', {}, 'My stats'),
    table('Totals', [
      {key: 'clicks', label: 'Clicks', num: true, render: () => count(t.clicks)},
      {key: 'unique_clicks', label: 'Unique clicks', num: true, render: () => count(t.unique_clicks)},
      {key: 'signups', label: 'Signups', num: true, render: () => count(t.signups)},
      {key: 'sales', label: 'Sales', num: true, render: () => count(t.sales)},
      {key: 'rewards_minor', label: 'Rewards', num: true, render: () => money(t.rewards_minor || 0, me.currency)},
      {key: 'conversion_rate', label: 'Conversion', num: true, render: () => percent(t.conversion_rate)},
    ], [t], {id: 'totals'}),
    chart('My clicks, signups and sales per day', rows.map((x) => x.day), [
      {label: 'Clicks', values: rows.map((x) => x.clicks)},
      {label: 'Signups', values: rows.map((x) => x.signups)},
      {label: 'Sales', values: rows.map((x) => x.sales)},
    ], [
      {key: 'day', label: 'Day', rowHeader: true},
      {key: 'clicks', label: 'Clicks', num: true, render: (x) => count(x.clicks)},
      {key: 'unique_clicks', label: 'Unique clicks', num: true, render: (x) => count(x.unique_clicks)},
      {key: 'signups', label: 'Signups', num: true, render: (x) => count(x.signups)},
      {key: 'sales', label: 'Sales', num: true, render: (x) => count(x.sales)},
      {key: 'rewards_minor', label: 'Rewards', num: true, render: (x) => money(x.rewards_minor, me.currency)},
    ], rows, {id: 'series'})];
}

async function conversions(r, s) {
  const list = await api(`/portal/api/me/conversions?${query({from: s.from, to: s.to, tz: s.tz, per_page: 100})}`);
  return [...rangeForm(r, s), el('h1', {}, 'My conversions'),
    el('p', {}, 'Customer ids are partly hidden.'),
    table(`Conversions, times in ${s.tz}`, [
      {key: 'occurred_at', label: 'When', render: (x) => dateTime(x.occurred_at, s.tz)},
      {key: 'type', label: 'Type'},
      {key: 'customer_id', label: 'Customer'},
      {key: 'amount_minor', label: 'Amount', num: true, render: (x) => money(x.amount_minor, x.currency)},
      {key: 'reward_minor', label: 'Your reward', num: true, render: (x) => money(x.reward_minor, x.currency)},
    ], list.rows, {id: 'conversions'})];
}

async function rewards(r, s) {
  const [ledger, payouts] = await Promise.all([
    api('/portal/api/me/ledger'), api('/portal/api/me/payouts?per_page=100')]);
  const c = ledger.currency || me.currency;
  const minimum = ledger.payout_minimum_minor ?? me.payout_minimum_minor ?? 0;
  return [el('h1', {}, 'My rewards'),
    el('dl', {class: 'facts'},
      el('dt', {}, 'Balance'), el('dd', {id: 'balance'}, money(ledger.balance_minor, c)),
      el('dt', {}, 'Pending'), el('dd', {}, money(ledger.pending_minor, c)),
      el('dt', {}, 'Payable now'), el('dd', {}, money(ledger.approved_minor, c)),
      el('dt', {}, 'Paid'), el('dd', {}, money(ledger.paid_minor, c)),
      el('dt', {}, 'Payout minimum'), el('dd', {id: 'minimum'}, money(minimum, c))),
    table(`Rewards, times in ${s.tz}`, [
      {key: 'created_at', label: 'Earned', render: (x) => dateTime(x.created_at, s.tz)},
      {key: 'explanation', label: 'For'},
      {key: 'state', label: 'State'},
      {key: 'approve_at', label: 'Payable from', render: (x) => dateTime(x.approve_at, s.tz)},
      {key: 'amount_minor', label: 'Amount', num: true, render: (x) => money(x.amount_minor, x.currency)},
    ], ledger.entries || [], {id: 'rewards'}),
    el('h2', {}, 'Payouts'),
    table(`Payouts, times in ${s.tz}`, [
      {key: 'created_at', label: 'Created', render: (x) => dateTime(x.created_at, s.tz)},
      {key: 'amount_minor', label: 'Amount', num: true, render: (x) => money(x.amount_minor, x.currency)},
      {key: 'status', label: 'Status'},
    ], payouts.rows, {id: 'payouts'})];
}

const views = {links, stats, conversions, rewards};

async function render() {
  const r = route();
  const fn = views[r.name] || links;
  const s = scope(r.params);
  document.querySelectorAll('#nav a').forEach((a) => {
    if (a.getAttribute('href').slice(2) === r.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  try {
    view.replaceChildren(...(await fn(r, s)).filter(Boolean));
    document.title = `${view.querySelector('h1').textContent} · ${me.program_name || 'Referrer portal'}`;
    view.setAttribute('data-ready', r.name);
  } catch (e) {
    view.replaceChildren(errorBox(e));
    view.setAttribute('data-ready', 'error');
  }
}

async function start() {
  try {
    me = await api('/portal/api/me');
  } catch {
    view.replaceChildren(el('h1', {}, 'Sign in'),
      el('p', {}, 'Open the sign-in link you were given and press Continue. ' +
        'Ask the program that invited you for a new link if yours has expired.'));
    view.setAttribute('data-ready', 'signin');
    return;
  }
  document.getElementById('brand').textContent = `${me.program_name || me.program} · ${me.name}`;
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  window.addEventListener('hashchange', render);
  render();
}

start();
