// The admin dashboard: one page whose views are chosen by the URL fragment
// (#/overview?program=acme&from=2026-11-01&to=2026-11-30&tz=UTC). Reads the admin API with the
// staff session cookie; writes send the session's CSRF token.

import {el, money, count, percent, dateTime, dateIn, bucketDay, zones, api, table, chart,
  errorBox} from './lib/ui.js';

const view = document.getElementById('view');
let csrf = '';
let programs = [];

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const [name, ...rest] = (path || 'overview').split('/');
  return {name: name || 'overview', arg: rest.map(decodeURIComponent).join('/'), params};
}

// The program, range and zone every view is about; missing ones get defaults.
function scope(params) {
  const tz = params.get('tz') || 'UTC';
  return {
    program: params.get('program') || (programs[0] && programs[0].id) || '',
    tz,
    from: params.get('from') || dateIn(tz, -29),
    to: params.get('to') || dateIn(tz, 0),
  };
}

function currencyOf(program) {
  const p = programs.find((x) => x.id === program);
  return p ? p.currency : 'USD';
}

function href(name, params, changes = {}) {
  const p = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v === '' || v === null || v === undefined) p.delete(k);
    else p.set(k, v);
  }
  return `#/${name}?${p}`;
}

function query(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) {
    if (v !== '' && v !== undefined && v !== null) p.set(k, v);
  }
  return p.toString();
}

async function write(path, body) {
  return api(path, {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
    body: JSON.stringify(body || {}),
  });
}

// The program, range and zone controls at the top of each view.
function scopeForm(r, s) {
  const form = el('form', {class: 'scope', 'aria-label': 'Program, range and time zone'});
  const program = el('select', {id: 'f-program', name: 'program'},
    programs.map((p) => el('option', {value: p.id, selected: p.id === s.program}, p.name)));
  const tz = el('select', {id: 'f-tz', name: 'tz'},
    [...new Set([s.tz, ...zones])].map((z) => el('option', {value: z, selected: z === s.tz}, z)));
  form.append(
    el('label', {for: 'f-program'}, 'Program'), program,
    el('label', {for: 'f-from'}, 'From'), el('input', {id: 'f-from', name: 'from', type: 'date', value: s.from}),
    el('label', {for: 'f-to'}, 'To'), el('input', {id: 'f-to', name: 'to', type: 'date', value: s.to}),
    el('label', {for: 'f-tz'}, 'Time zone'), tz,
    el('button', {type: 'submit'}, 'Show'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    location.hash = href(r.name + (r.arg ? `/${r.arg}` : ''), r.params,
      Object.fromEntries([...data.entries(), ['page', '']]));
  });
  return form;
}

function rangeNote(s) {
  return el('p', {class: 'range', id: 'range'}, `${s.from} to ${s.to}, dates in ${s.tz}`);
}

const seriesColumns = (currency) => [
  {key: 'day', label: 'Day', rowHeader: true},
  {key: 'clicks', label: 'Clicks', num: true, render: (r) => count(r.clicks)},
  {key: 'unique_clicks', label: 'Unique clicks', num: true, render: (r) => count(r.unique_clicks)},
  {key: 'signups', label: 'Signups', num: true, render: (r) => count(r.signups)},
  {key: 'sales', label: 'Sales', num: true, render: (r) => count(r.sales)},
  {key: 'revenue_minor', label: 'Revenue', num: true, render: (r) => money(r.revenue_minor, currency)},
  {key: 'rewards_minor', label: 'Rewards', num: true, render: (r) => money(r.rewards_minor, currency)},
];

function seriesChart(title, ts, currency) {
  const rows = ts.rows.map((r) => ({...r, day: bucketDay(r.start)}));
  return chart(title, rows.map((r) => r.day), [
    {label: 'Clicks', values: rows.map((r) => r.clicks)},
    {label: 'Signups', values: rows.map((r) => r.signups)},
    {label: 'Sales', values: rows.map((r) => r.sales)},
  ], seriesColumns(currency), rows, {id: 'series'});
}

const referrerColumns = (currency) => [
  {key: 'name', label: 'Name', render: (r) => el('a', {href: `#/referrer/${encodeURIComponent(r.referrer_id)}?${route().params}`}, r.name || r.referrer_id)},
  {key: 'code', label: 'Code'},
  {key: 'clicks', label: 'Clicks', num: true, render: (r) => count(r.clicks)},
  {key: 'unique_clicks', label: 'Unique', num: true, render: (r) => count(r.unique_clicks)},
  {key: 'signups', label: 'Signups', num: true, render: (r) => count(r.signups)},
  {key: 'sales', label: 'Sales', num: true, render: (r) => count(r.sales)},
  {key: 'revenue_minor', label: 'Revenue', num: true, render: (r) => money(r.revenue_minor, currency)},
  {key: 'rewards_minor', label: 'Rewards', num: true, render: (r) => money(r.rewards_minor, currency)},
  {key: 'conversion_rate', label: 'Conversion', num: true, render: (r) => percent(r.conversion_rate)},
];

async function overview(r, s) {
  const currency = currencyOf(s.program);
  const range = {program: s.program, from: s.from, to: s.to, tz: s.tz};
  const [ts, top] = await Promise.all([
    api(`/v1/reports/timeseries?${query({...range, interval: 'day'})}`),
    api(`/v1/referrers?${query({...range, sort: '-revenue_minor', per_page: 10})}`),
  ]);
  const sum = (k) => ts.rows.reduce((a, x) => a + Number(x[k] || 0), 0);
  const funnel = [
    {step: 'Clicks', value: sum('unique_clicks')},
    {step: 'Signups', value: sum('signups')},
    {step: 'Sales', value: sum('sales')},
  ];
  const widest = Math.max(1, ...funnel.map((f) => f.value));
  return [
    el('h1', {}, 'Overview'),
    seriesChart('Clicks, signups and sales per day', ts, currency),
    el('h2', {}, 'Funnel'),
    el('ol', {class: 'funnel', 'aria-hidden': 'true'}, funnel.map((f) => {
      const bar = el('span', {class: 'bar'});
      bar.style.width = `${Math.max(1, Math.round(100 * f.value / widest))}%`;
      return el('li', {}, bar, el('span', {}, `${f.step}: ${count(f.value)}`));
    })),
    table('Funnel: unique clicks, signups and sales', [
      {key: 'step', label: 'Step', rowHeader: true},
      {key: 'value', label: 'Count', num: true, render: (x) => count(x.value)},
    ], funnel, {id: 'funnel'}),
    el('h2', {}, 'Top referrers'),
    table('Top referrers by revenue', referrerColumns(currency), top.rows, {id: 'top-referrers'}),
  ];
}

const sortable = ['name', 'code', 'clicks', 'unique_clicks', 'signups', 'sales', 'revenue_minor',
  'rewards_minor', 'conversion_rate'];

async function referrers(r, s) {
  const currency = currencyOf(s.program);
  const q = r.params.get('q') || '';
  const sort = r.params.get('sort') || 'name';
  const page = Number(r.params.get('page') || 1);
  const filter = {program: s.program, from: s.from, to: s.to, tz: s.tz, q, sort};
  const list = await api(`/v1/referrers?${query({...filter, page, per_page: 50})}`);
  const search = el('form', {role: 'search', class: 'inline'},
    el('label', {for: 'q'}, 'Search referrers'),
    el('input', {id: 'q', name: 'q', type: 'search', value: q}),
    el('button', {type: 'submit'}, 'Search'));
  search.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = href('referrers', r.params, {q: search.q.value, page: ''});
  });
  const columns = referrerColumns(currency);
  const t = table(`Referrers, sorted by ${sort.replace(/^-/, '')}${sort.startsWith('-') ? ' (descending)' : ''}`,
    columns, list.rows, {id: 'referrers'});
  t.querySelectorAll('thead th').forEach((th, i) => {
    const key = columns[i].key;
    if (!sortable.includes(key)) return;
    const next = sort === key ? `-${key}` : key;
    const state = sort === key ? 'ascending' : sort === `-${key}` ? 'descending' : null;
    if (state) th.setAttribute('aria-sort', state);
    th.textContent = '';
    th.append(el('a', {href: href('referrers', r.params, {sort: next, page: ''})}, columns[i].label));
  });
  const pages = Math.max(1, Math.ceil(list.total / list.per_page));
  return [
    el('h1', {}, 'Referrers'),
    search,
    el('p', {id: 'referrer-count'}, `${count(list.total)} referrers, page ${page} of ${pages}`),
    t,
    el('nav', {'aria-label': 'Pages', class: 'pager'},
      page > 1 ? el('a', {href: href('referrers', r.params, {page: page - 1})}, 'Previous page') : null,
      page < pages ? el('a', {href: href('referrers', r.params, {page: page + 1}), id: 'next-page'}, 'Next page') : null),
    el('p', {}, el('a', {id: 'referrers-csv', download: `referrers-${s.program}.csv`,
      href: `/v1/referrers?${query({...filter, format: 'csv'})}`}, 'Download CSV')),
  ];
}

const ledgerStates = ['pending', 'approved', 'paid', 'reversed'];

async function referrer(r, s) {
  const id = r.arg;
  const currency = currencyOf(s.program);
  const range = {program: s.program, from: s.from, to: s.to, tz: s.tz};
  const [found, links, ts, ledger] = await Promise.all([
    api(`/v1/referrers?${query({...range, q: id, per_page: 500})}`),
    api(`/v1/links?${query({program: s.program, referrer_id: id})}`),
    api(`/v1/reports/timeseries?${query({...range, referrer: id, interval: 'day'})}`),
    api(`/v1/referrers/${encodeURIComponent(id)}/ledger`),
  ]);
  const me = found.rows.find((x) => x.referrer_id === id) || {referrer_id: id};
  const portal = el('div', {id: 'portal-link'});
  const make = el('button', {type: 'button', id: 'make-portal-link'}, 'Create a portal sign-in link');
  make.addEventListener('click', async () => {
    try {
      const link = await write(`/v1/referrers/${encodeURIComponent(id)}/portal-link`);
      portal.replaceChildren(el('p', {}, 'Hand this one-time link to the referrer; it expires at ',
        dateTime(link.expires_at, s.tz), ` (${s.tz}).`),
      el('input', {type: 'text', readonly: true, value: link.url, 'aria-label': 'Portal sign-in link', id: 'portal-url'}));
    } catch (e) {
      portal.replaceChildren(errorBox(e));
    }
  });
  const byState = ledgerStates.map((state) => ({state, amount: ledger[`${state}_minor`] || 0}));
  return [
    el('h1', {}, `Referrer ${me.name || id}`),
    el('dl', {class: 'facts'},
      el('dt', {}, 'Id'), el('dd', {}, id),
      el('dt', {}, 'External id'), el('dd', {}, me.external_id || ''),
      el('dt', {}, 'Balance'), el('dd', {id: 'balance'}, money(ledger.balance_minor, ledger.currency || currency))),
    el('h2', {}, 'Links'),
    table('Links', [
      {key: 'code', label: 'Code', rowHeader: true},
      {key: 'url', label: 'URL'},
      {key: 'disabled', label: 'State', render: (x) => (x.disabled ? 'disabled' : 'active')},
    ], links.links, {id: 'links'}),
    seriesChart('Activity per day', ts, currency),
    el('h2', {}, 'Ledger by state'),
    table('Ledger totals by state', [
      {key: 'state', label: 'State', rowHeader: true},
      {key: 'amount', label: 'Amount', num: true, render: (x) => money(x.amount, ledger.currency || currency)},
    ], byState, {id: 'ledger-states'}),
    table('Ledger entries', [
      {key: 'created_at', label: 'Created', render: (x) => dateTime(x.created_at, s.tz)},
      {key: 'event_id', label: 'Event'},
      {key: 'state', label: 'State'},
      {key: 'amount_minor', label: 'Amount', num: true, render: (x) => money(x.amount_minor, x.currency)},
    ], ledger.entries || [], {id: 'ledger'}),
    el('h2', {}, 'Portal'),
    make, portal,
  ];
}

function explainPanel(x, s) {
  const winner = x.click_id;
  return el('section', {class: 'panel', id: 'explain', 'aria-labelledby': 'explain-title'},
    el('h2', {id: 'explain-title'}, `Why ${x.event_id} went where it went`),
    el('p', {id: 'explain-rule'}, x.rule),
    el('p', {}, `Model ${x.model}, window ${x.window_days} days.`),
    table('Candidate clicks', [
      {key: 'click_id', label: 'Click', rowHeader: true},
      {key: 'ts', label: 'When', render: (c) => dateTime(c.at || c.ts || (c.ts_ms ? new Date(c.ts_ms).toISOString() : ''), s.tz)},
      {key: 'code', label: 'Code', render: (c) => c.code || c.link_code || ''},
      {key: 'winner', label: 'Chosen', render: (c) => (c.click_id === winner ? 'winner' : c.excluded || c.reason || '')},
    ], x.candidates || []),
    table('Rewards that followed', [
      {key: 'explanation', label: 'Rule in words'},
      {key: 'state', label: 'State'},
      {key: 'amount_minor', label: 'Amount', num: true, render: (e) => money(e.amount_minor, e.currency)},
    ], (x.followed && x.followed.rewards) || x.rewards || []));
}

async function conversions(r, s) {
  const type = r.params.get('type') || '';
  const attributed = r.params.get('attributed') || '';
  const page = Number(r.params.get('page') || 1);
  const list = await api(`/v1/conversions?${query({program: s.program, from: s.from, to: s.to,
    tz: s.tz, type, attributed, page, per_page: 50})}`);
  const filters = el('form', {class: 'inline', 'aria-label': 'Filters'},
    el('label', {for: 'f-type'}, 'Type'),
    el('select', {id: 'f-type', name: 'type'}, ['', 'signup', 'sale', 'refund'].map((t) =>
      el('option', {value: t, selected: t === type}, t || 'any'))),
    el('label', {for: 'f-attributed'}, 'Attributed'),
    el('select', {id: 'f-attributed', name: 'attributed'}, [['', 'any'], ['true', 'yes'], ['false', 'no']].map(([v, t]) =>
      el('option', {value: v, selected: v === attributed}, t))),
    el('button', {type: 'submit'}, 'Filter'));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = href('conversions', r.params, {type: filters.type.value, attributed: filters.attributed.value, page: ''});
  });
  const panel = el('div', {id: 'explain-slot'});
  const open = async (row) => {
    try {
      const x = await api(`/v1/conversions/${encodeURIComponent(row.event_id)}/explain?${query({program: row.program})}`);
      panel.replaceChildren(explainPanel(x, s));
      panel.querySelector('h2').focus?.();
    } catch (e) {
      panel.replaceChildren(errorBox(e));
    }
  };
  const t = table(`Conversions, times in ${s.tz}`, [
    {key: 'occurred_at', label: 'When', render: (x) => dateTime(x.occurred_at, s.tz)},
    {key: 'event_id', label: 'Event', render: (x) => el('button', {type: 'button', class: 'link', onclick: () => open(x)}, x.event_id)},
    {key: 'type', label: 'Type'},
    {key: 'attributed', label: 'Attributed', render: (x) => (x.attributed ? 'yes' : 'no')},
    {key: 'link_code', label: 'Code', render: (x) => x.link_code || ''},
    {key: 'customer_id', label: 'Customer'},
    {key: 'amount_minor', label: 'Amount', num: true, render: (x) => money(x.amount_minor, x.currency)},
    {key: 'reward_minor', label: 'Reward', num: true, render: (x) => money(x.reward_minor, x.currency)},
  ], list.rows, {id: 'conversions'});
  const pages = Math.max(1, Math.ceil(list.total / list.per_page));
  return [el('h1', {}, 'Conversions'), filters,
    el('p', {}, `${count(list.total)} conversions, page ${page} of ${pages}`), t,
    el('nav', {'aria-label': 'Pages', class: 'pager'},
      page > 1 ? el('a', {href: href('conversions', r.params, {page: page - 1})}, 'Previous page') : null,
      page < pages ? el('a', {href: href('conversions', r.params, {page: page + 1})}, 'Next page') : null),
    panel];
}

async function payouts(r, s) {
  const [list, due] = await Promise.all([
    api(`/v1/payouts?${query({program: s.program, per_page: 100})}`),
    api(`/v1/payouts/due?${query({program: s.program})}`),
  ]);
  const eligible = due.due.filter((d) => d.eligible);
  const status = el('p', {role: 'status', id: 'payout-status'});
  const create = el('button', {type: 'button', id: 'create-payouts', disabled: eligible.length === 0},
    'Create payouts for every due balance');
  create.addEventListener('click', async () => {
    try {
      await write('/v1/payouts', {program: s.program});
      render();
    } catch (e) {
      status.textContent = `Could not create payouts: ${e.message}`;
    }
  });
  const paid = async (p) => {
    try {
      await write(`/v1/payouts/${encodeURIComponent(p.id)}/paid`);
      render();
    } catch (e) {
      status.textContent = `Could not mark ${p.id} paid: ${e.message}`;
    }
  };
  const minimum = due.minimum_minor > 0 ? money(due.minimum_minor, due.currency) : 'any amount above zero';
  return [el('h1', {}, 'Payouts'),
    el('p', {}, 'A payout takes every approved reward of a referrer whose balance reaches the program minimum.'),
    el('h2', {}, 'Due balances'),
    el('p', {id: 'payout-minimum'}, `Program minimum: ${minimum}. Rewards still on hold are paid in a later payout.`),
    table('Due balances', [
      {key: 'name', label: 'Referrer', rowHeader: true, render: (d) => d.name || d.referrer_id},
      {key: 'code', label: 'Code', render: (d) => d.code || ''},
      {key: 'approved_minor', label: 'Payable now', num: true, render: (d) => money(d.approved_minor, due.currency)},
      {key: 'pending_minor', label: 'On hold', num: true, render: (d) => money(d.pending_minor, due.currency)},
      {key: 'balance_minor', label: 'Balance', num: true, render: (d) => money(d.balance_minor, due.currency)},
      {key: 'eligible', label: 'In this payout', render: (d) => (d.eligible ? 'yes' : 'no')},
    ], due.due, {id: 'due'}),
    el('p', {id: 'payout-preview'},
      `Preview: ${count(eligible.length)} ${eligible.length === 1 ? 'payout' : 'payouts'}, `,
      el('strong', {id: 'preview-total'}, money(due.total_minor, due.currency)), ' in total.'),
    create, status,
    el('h2', {}, 'Payouts'),
    table(`Payouts, times in ${s.tz}`, [
      {key: 'created_at', label: 'Created', render: (p) => dateTime(p.created_at, s.tz)},
      {key: 'name', label: 'Referrer', render: (p) => p.name || p.referrer_id},
      {key: 'amount_minor', label: 'Amount', num: true, render: (p) => money(p.amount_minor, p.currency)},
      {key: 'status', label: 'Status'},
      {key: 'csv', label: 'CSV', render: (p) => el('a', {href: `/v1/payouts/${encodeURIComponent(p.id)}.csv`, download: `${p.id}.csv`}, `${p.id}.csv`)},
      {key: 'action', label: 'Action', render: (p) => (p.status === 'paid' ? 'paid' :
        el('button', {type: 'button', onclick: () => paid(p)}, `Mark ${p.id} paid`))},
    ], list.rows, {id: 'payouts'})];
}

async function webhooks(r, s) {
  const list = await api(`/v1/webhooks/deliveries?${query({program: s.program, per_page: 100})}`);
  const status = el('p', {role: 'status', id: 'webhook-status'});
  const redeliver = async (d) => {
    try {
      await write(`/v1/webhooks/deliveries/${encodeURIComponent(d.id)}/redeliver`);
      status.textContent = `${d.id} queued again.`;
    } catch (e) {
      status.textContent = `Could not redeliver ${d.id}: ${e.message}`;
    }
  };
  return [el('h1', {}, 'Webhook deliveries'), status,
    table(`Deliveries, times in ${s.tz}`, [
      {key: 'created_at', label: 'Created', render: (d) => dateTime(d.created_at, s.tz)},
      {key: 'type', label: 'Event'},
      {key: 'state', label: 'State'},
      {key: 'attempt_count', label: 'Attempts', num: true},
      {key: 'last', label: 'Last attempt', render: (d) => {
        const a = (d.attempts || [])[d.attempts ? d.attempts.length - 1 : 0];
        return a ? `${dateTime(a.at, s.tz)} ${a.status ? `HTTP ${a.status}` : a.error || ''}` : '';
      }},
      {key: 'action', label: 'Action', render: (d) =>
        el('button', {type: 'button', onclick: () => redeliver(d)}, `Redeliver ${d.id}`)},
    ], list.deliveries || [], {id: 'deliveries'})];
}

const views = {overview, referrers, referrer, conversions, payouts, webhooks};

async function render() {
  const r = route();
  const fn = views[r.name] || overview;
  const s = scope(r.params);
  document.querySelectorAll('#nav a').forEach((a) => {
    const target = a.getAttribute('href').slice(2);
    if (target === r.name || (r.name === 'referrer' && target === 'referrers')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  if (programs.length === 0) {
    view.replaceChildren(el('h1', {}, 'No program yet'),
      el('p', {}, 'Create a program with POST /v1/programs (or earnctl program), then reload.'));
    view.setAttribute('data-ready', 'empty');
    return;
  }
  try {
    const parts = await fn(r, s);
    view.replaceChildren(scopeForm(r, s), rangeNote(s), ...parts.filter(Boolean));
    document.title = `${view.querySelector('h1').textContent} · earnd admin`;
    view.setAttribute('data-ready', r.name);
  } catch (e) {
    view.replaceChildren(scopeForm(r, s), errorBox(e));
    view.setAttribute('data-ready', 'error');
  }
}

async function start() {
  try {
    const session = await api('/admin/session');
    csrf = session.csrf;
  } catch {
    document.getElementById('signin').hidden = false;
    view.replaceChildren();
    view.setAttribute('data-ready', 'signin');
    return;
  }
  programs = (await api('/v1/programs')).programs;
  document.getElementById('nav').hidden = false;
  window.addEventListener('hashchange', render);
  render();
}

start();
