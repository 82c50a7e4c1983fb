// The customer's approval app: plain JS over the hub's JSON API. Every value from the server
// is put into the page with textContent, never as HTML.
'use strict';

const TIERS = {
  green: 'Read-only',
  yellow: 'Changes local state',
  external: 'Sends something outside the business',
  red: 'Destructive or irreversible',
  critical: 'System level',
};
let csrf = null;
let me = null;
let refreshTimer = null;

const main = () => document.getElementById('main');

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function ago(t) {
  const d = Math.max(0, Math.floor(Date.now() / 1000) - t);
  if (d < 60) return 'just now';
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return `${Math.floor(d / 86400)} d ago`;
}

function when(t) {
  return new Date(t * 1000).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401 && !path.startsWith('/v1/login') && !path.startsWith('/v1/signup')) {
    csrf = null; me = null;
    location.hash = '#/login';
    throw new Error('Please log in.');
  }
  if (!resp.ok) throw new Error((data && data.error && data.error.message) || `The hub answered ${resp.status}.`);
  return data;
}

// Renders `SECRET_REF(name)` inside a string as a styled credential pill.
function withSecrets(text) {
  const out = [];
  const re = /SECRET_REF\(([A-Za-z0-9_.-]{1,64})\)/g;
  let last = 0; let m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(secretPill(m[1]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// Quotes an argument the way a shell would need it; a `SECRET_REF(name)` inside counts as a
// plain word (it is shown as a credential pill, not as the characters it is made of).
// A stored credential, shown by name only (its value never reaches the hub).
function secretPill(name) {
  return el('span', { class: 'secret', title: 'A stored credential, by name; its value is never shown' },
    el('small', {}, 'SECRET'), ` ${name}`);
}

function shellQuote(arg) {
  const bare = arg.replace(/SECRET_REF\([A-Za-z0-9_.-]{1,64}\)/g, 'X');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(bare) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function tierChip(tier) {
  return el('span', { class: `chip t-${tier}` }, tier);
}

function setSheet(content) {
  const sheet = document.getElementById('sheet');
  sheet.replaceChildren();
  if (!content) { sheet.hidden = true; return; }
  sheet.append(el('div', { class: 'panel' }, content));
  sheet.hidden = false;
}

// ---- pages ------------------------------------------------------------------------------

function loginPage(mode) {
  const signup = mode === 'signup';
  const error = el('p', { class: 'error', role: 'alert' });
  const email = el('input', { type: 'email', id: 'email', autocomplete: 'username', required: true });
  const password = el('input', { type: 'password', id: 'password', autocomplete: signup ? 'new-password' : 'current-password', required: true, minlength: signup ? '12' : null });
  const form = el('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const s = await api('POST', signup ? '/v1/signup' : '/v1/login', { email: email.value, password: password.value });
      csrf = s.csrf_token; me = s;
      location.hash = '#/';
    } catch (err) { error.textContent = err.message; }
  } },
  el('h1', {}, signup ? 'Create your account' : 'Log in'),
  el('label', { for: 'email' }, 'Email'), email,
  el('label', { for: 'password' }, signup ? 'Password (at least 12 characters)' : 'Password'), password,
  error,
  el('button', { class: 'primary', type: 'submit', id: 'submit' }, signup ? 'Create account' : 'Log in'),
  el('p', { class: 'meta' }, signup ? 'Have an account? ' : 'New here? ',
    el('a', { href: signup ? '#/login' : '#/signup' }, signup ? 'Log in' : 'Create an account')));
  main().replaceChildren(form);
}

async function pushBanner() {
  const supported = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  const standalone = window.matchMedia('(display-mode: standalone)').matches || navigator.standalone === true;
  const ios = /iPhone|iPad|iPod/.test(navigator.userAgent);
  if (ios && !standalone) {
    return el('div', { class: 'banner warn' }, 'To get notified on this iPhone: tap Share, then “Add to Home Screen”, and open Approvals from there.');
  }
  if (!supported) return null;
  const reg = await navigator.serviceWorker.ready;
  const sub = await reg.pushManager.getSubscription();
  if (sub && Notification.permission === 'granted') return null;
  if (Notification.permission === 'denied') {
    return el('div', { class: 'banner warn' }, 'Notifications are blocked for this site; allow them in the browser settings to be told when your agent asks.');
  }
  const button = el('button', { class: 'approve', id: 'enable-push', onclick: async () => {
    button.disabled = true;
    try { await enablePush(); button.closest('.banner').remove(); } catch (e) { button.disabled = false; alert(e.message); }
  } }, 'Enable');
  return el('div', { class: 'banner' }, el('span', {}, 'Get a notification on this device when your agent needs a decision.'), button);
}

function b64ToBytes(s) {
  const pad = '='.repeat((4 - (s.length % 4)) % 4);
  const raw = atob((s + pad).replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function enablePush() {
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') throw new Error('Notifications were not allowed.');
  const { public_key } = await api('GET', '/v1/push/key');
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64ToBytes(public_key) });
  await api('POST', '/v1/push/subscriptions', sub.toJSON());
}

async function listPage(status) {
  const data = await api('GET', `/v1/approvals?status=${status === 'history' ? 'decided' : 'pending'}`);
  const tabs = el('nav', { class: 'tabs' },
    el('a', { href: '#/', class: status === 'history' ? '' : 'on', id: 'tab-pending' }, 'Waiting'),
    el('a', { href: '#/history', class: status === 'history' ? 'on' : '', id: 'tab-history' }, 'History'));
  const items = data.approvals.map((a) => el('a', { class: `card t-${a.tier}`, href: `#/approvals/${encodeURIComponent(a.id)}`, 'data-id': a.id },
    el('div', {}, tierWords(a), status === 'history' ? el('span', { class: 'status' }, a.status) : null),
    el('div', { class: 'summary' }, withSecrets(a.summary)),
    el('div', { class: 'meta' }, `${a.tenant} · agent ${a.agent} · ${ago(a.received_at)}`)));
  const empty = el('div', { class: 'empty' }, status === 'history'
    ? 'No decided actions yet.'
    : 'Nothing is waiting for you. When your agent wants to do something risky, it shows up here and on your phone.');
  const banner = await pushBanner().catch(() => null);
  main().replaceChildren(...[banner, tabs, ...(items.length ? items : [empty])].filter(Boolean));
  refreshTimer = setTimeout(() => route(), 10000);
}

function commandView(action) {
  if (action.kind === 'command') {
    const parts = [];
    action.argv.forEach((arg, i) => {
      if (i) parts.push(' ');
      // Short words stay whole (no break inside `--charge`); long ones may wrap anywhere.
      parts.push(el('span', { class: arg.length < 40 ? 'arg whole' : 'arg' }, withSecrets(shellQuote(arg))));
    });
    return el('div', {}, el('div', { class: 'cmd', id: 'command' }, '$ ', parts),
      el('dl', { class: 'kv' }, el('dt', {}, 'in folder'), el('dd', {}, action.cwd)));
  }
  return el('div', {}, el('div', { class: 'cmd', id: 'command' }, `${action.tool}\n`, withSecrets(JSON.stringify(action.args, null, 2))),
    action.cwd ? el('dl', { class: 'kv' }, el('dt', {}, 'in folder'), el('dd', {}, action.cwd)) : null);
}

function decidedView(a) {
  if (a.status === 'pending') return null;
  const text = {
    approved: `Approved by ${a.decided_by} · ${when(a.decided_at)} · ${a.scope === 'action24h' ? 'this exact action is allowed for 24 h' : 'runs once'}`,
    denied: `Denied by ${a.decided_by} · ${when(a.decided_at)}${a.reason ? ` · “${a.reason}”` : ''}`,
    expired: 'Expired unanswered; the agent was told no.',
  }[a.status];
  return el('div', { class: `decided ${a.status}`, id: 'decided' }, text);
}

async function decide(a, decision, scope, reason) {
  await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/decision`, { decision, scope, reason: reason || undefined });
  setSheet(null);
  await detailPage(a.id);
}

function confirmApprove(a, day) {
  setSheet([
    el('h1', {}, day ? 'Allow this exact action for 24 hours?' : 'Approve and let it run?'),
    el('p', { class: 'summary', id: 'confirm-summary' }, withSecrets(a.summary)),
    el('details', { class: 'details' }, el('summary', {}, 'The exact command'), commandView(a.action)),
    el('p', { class: 'meta' }, day ? 'The agent may run exactly this, unchanged, again for the next 24 hours without asking.' : 'It runs once, exactly as shown.'),
    el('div', { class: 'row' },
      el('button', { class: 'cancel', onclick: () => setSheet(null) }, 'Cancel'),
      el('button', { class: 'approve', id: 'confirm-approve', onclick: (e) => { e.target.disabled = true; decide(a, 'approve', day ? 'action24h' : 'once').catch((err) => alert(err.message)); } }, 'Yes, approve')),
  ]);
}

function confirmDeny(a) {
  const reason = el('textarea', { id: 'reason', rows: '3', maxlength: '500', placeholder: 'Optional: tell the agent why' });
  setSheet([
    el('h1', {}, 'Deny this action?'),
    el('label', { for: 'reason' }, 'Reason for the agent (optional)'), reason,
    el('div', { class: 'row' },
      el('button', { class: 'cancel', onclick: () => setSheet(null) }, 'Cancel'),
      el('button', { class: 'deny', id: 'confirm-deny', onclick: (e) => { e.target.disabled = true; decide(a, 'deny', 'once', reason.value.trim()).catch((err) => alert(err.message)); } }, 'Deny')),
  ]);
}

async function detailPage(id) {
  const a = await api('GET', `/v1/approvals/${encodeURIComponent(id)}`);
  const secrets = a.action.secret_refs || [];
  const day = el('input', { type: 'checkbox', id: 'allow-24h' });
  const actions = a.status === 'pending' ? el('div', { class: 'actions' },
    el('label', { class: 'check' }, day, 'Allow this exact action for 24 h'),
    el('div', { class: 'row' },
      el('button', { class: 'deny', id: 'deny', onclick: () => confirmDeny(a) }, 'Deny'),
      el('button', { class: 'approve', id: 'approve', onclick: () => confirmApprove(a, day.checked) }, 'Approve'))) : null;
  // The tier bar already says whether it can be undone; the same words are not repeated.
  const effects = (a.effects || []).filter((e) => !(e.kind === 'undo' && e.text === a.tier_words));
  main().replaceChildren(...[
    el('div', { class: `tierbar t-${a.tier}`, id: 'tier' }, a.tier_words || TIERS[a.tier] || a.tier),
    el('h1', { id: 'summary' }, withSecrets(a.summary)),
    el('div', { class: 'meta' }, `Proposed by agent ${a.agent} on ${a.tenant} · ${ago(a.received_at)}`),
    decidedView(a),
    effects.length ? el('h2', {}, a.status === 'pending' ? 'What will happen' : 'What it does') : null,
    effects.length ? el('ul', { class: 'effects block', id: 'effects' }, effects.map((e) => el('li', { class: `effect e-${e.kind}` }, withSecrets(e.text)))) : null,
    a.agent_reason ? el('div', { class: 'block agent-words', id: 'agent-reason' },
      el('div', { class: 'label' }, `In the agent's own words`), el('q', {}, withSecrets(a.agent_reason))) : null,
    secrets.length ? el('h2', {}, 'Credentials it would use') : null,
    secrets.length ? el('div', { class: 'block', id: 'secrets' },
      el('ul', { class: 'bindings' }, secrets.map((s) => el('li', {}, secretPill(s),
        el('span', { class: 'binding' }, ` may go to: ${(a.secret_bindings || {})[s] || 'not known'}`)))),
      el('p', { class: 'meta' }, 'Only the names are shown; the values stay on your server.')) : null,
    el('details', { class: 'block details', id: 'details' },
      el('summary', { id: 'show-details' }, 'Details: the exact command and the rules'),
      el('dl', { class: 'kv' }, el('dt', {}, 'risk tier'), el('dd', {}, tierChip(a.tier), ` ${TIERS[a.tier] || ''}`)),
      el('h2', {}, a.status === 'pending' ? 'What would run' : 'The action'),
      commandView(a.action),
      el('h2', {}, 'Why it asks you'),
      el('ul', { class: 'reasons' }, a.reasons.map((r) => el('li', {}, withSecrets(r))))),
    actions,
    el('p', {}, el('a', { href: '#/' }, '← All approvals')),
  ].filter(Boolean));
}

// ---- orders (admins) ---------------------------------------------------------------------

const ORDER_STEPS = {
  created: 'Ordered',
  server_requested: 'Creating the server',
  server_running: 'Server running',
  dns_ready: 'DNS name set',
  installing: 'Installing',
  enrolled: 'Enrolled',
  active: 'Active',
  failed: 'Failed',
  cancelling: 'Cancelling',
  cancelled: 'Cancelled',
};
const FINAL = ['active', 'failed', 'cancelled'];

function orderChip(status) {
  return el('span', { class: `chip o-${status}`, 'data-status': status }, ORDER_STEPS[status] || status);
}

async function ordersPage() {
  const data = await api('GET', '/v1/admin/orders');
  const error = el('p', { class: 'error', role: 'alert' });
  const tenant = el('input', { type: 'text', id: 'order-tenant', required: true, autocapitalize: 'none', autocomplete: 'off', pattern: '[a-z0-9-]{1,50}', placeholder: 'bakery' });
  const owner = el('input', { type: 'email', id: 'order-owner', required: true, placeholder: 'owner@example.com' });
  const form = el('form', { class: 'login', id: 'new-order', onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const made = await api('POST', '/v1/admin/orders', { tenant: tenant.value.trim(), owner: owner.value.trim() });
      location.hash = `#/admin/orders/${made.order.id}`;
    } catch (err) { error.textContent = err.message; }
  } },
  el('h2', {}, 'New appliance'),
  el('label', { for: 'order-tenant' }, 'Tenant name (a-z, 0-9, -)'), tenant,
  el('label', { for: 'order-owner' }, "Owner's account (email)"), owner,
  error,
  el('button', { class: 'primary', type: 'submit', id: 'create-order' }, 'Order'));
  const items = data.orders.map((o) => el('a', { class: 'card order', href: `#/admin/orders/${o.id}`, 'data-id': String(o.id) },
    el('div', {}, orderChip(o.status)),
    el('div', { class: 'summary' }, o.tenant),
    el('div', { class: 'meta' }, `#${o.id} · ${o.owner || 'no owner'} · ${o.provider} · ${ago(o.updated_at)}`),
    o.last_error ? el('div', { class: 'error' }, o.last_error) : null));
  main().replaceChildren(el('h1', {}, 'Orders'), ...(items.length ? items : [el('div', { class: 'empty' }, 'No orders yet.')]), form);
  if (data.orders.some((o) => !FINAL.includes(o.status))) refreshTimer = setTimeout(() => route(), 3000);
}

function confirmOrder(o, action) {
  const cancel = action === 'cancel';
  setSheet([
    el('h1', {}, cancel ? `Cancel ${o.tenant}?` : `Retry ${o.tenant}?`),
    el('p', { class: 'meta' }, cancel
      ? 'The DNS name and the server are deleted and the tenant can no longer reach the hub. This cannot be undone.'
      : `The order runs again from the step that failed (${o.failed_step || 'the start'}).`),
    el('div', { class: 'row' },
      el('button', { class: 'cancel', onclick: () => setSheet(null) }, 'Back'),
      el('button', { class: cancel ? 'deny' : 'approve', id: `confirm-${action}`, onclick: async (e) => {
        e.target.disabled = true;
        try { await api('POST', `/v1/admin/orders/${o.id}/${action}`); setSheet(null); await route(); } catch (err) { alert(err.message); }
      } }, cancel ? 'Cancel the order' : 'Retry')),
  ]);
}

async function orderPage(id) {
  const { order: o, timeline } = await api('GET', `/v1/admin/orders/${id}`);
  const buttons = el('div', { class: 'row' },
    o.status === 'failed' ? el('button', { class: 'approve', id: 'retry-order', onclick: () => confirmOrder(o, 'retry') }, 'Retry') : null,
    !['cancelling', 'cancelled'].includes(o.status) ? el('button', { class: 'deny', id: 'cancel-order', onclick: () => confirmOrder(o, 'cancel') }, 'Cancel') : null);
  main().replaceChildren(...[
    el('h1', {}, `${o.tenant} `, orderChip(o.status)),
    el('div', { class: 'meta' }, `Order #${o.id} · ${o.owner || 'no owner'} · ${o.provider} (${o.plan}) · ordered ${when(o.created_at)}`),
    o.server_id ? el('dl', { class: 'kv block' },
      el('dt', {}, 'server'), el('dd', {}, o.server_id),
      el('dt', {}, 'IPv4'), el('dd', {}, o.ipv4 || '-'),
      el('dt', {}, 'IPv6'), el('dd', {}, o.ipv6 || '-')) : null,
    o.status === 'failed' ? el('div', { class: 'decided denied', id: 'failure' }, `Failed at ${ORDER_STEPS[o.failed_step] || o.failed_step}: ${o.last_error}`) : null,
    el('h2', {}, 'Timeline'),
    el('ol', { class: 'timeline block', id: 'timeline' }, timeline.map((e) => el('li', {},
      el('span', { class: 'meta' }, when(e.at)), ' ', el('strong', {}, ORDER_STEPS[e.status] || e.status), el('div', {}, e.message)))),
    buttons,
    el('p', {}, el('a', { href: '#/admin/orders' }, '← All orders')),
  ].filter(Boolean));
  if (!FINAL.includes(o.status)) refreshTimer = setTimeout(() => route(), 2000);
}

async function route() {
  clearTimeout(refreshTimer);
  setSheet(null);
  const hash = location.hash || '#/';
  const logout = document.getElementById('logout');
  if (hash === '#/login' || hash === '#/signup') {
    logout.hidden = true;
    document.getElementById('nav-orders').hidden = true;
    return loginPage(hash === '#/signup' ? 'signup' : 'login');
  }
  try {
    if (!csrf) {
      const s = await api('GET', '/v1/session');
      csrf = s.csrf_token; me = s;
    }
    logout.hidden = false;
    document.getElementById('nav-orders').hidden = !(me && me.role === 'admin');
    if (me && me.role === 'admin') {
      const o = hash.match(/^#\/admin\/orders\/(\d{1,18})$/);
      if (o) return await orderPage(o[1]);
      if (hash === '#/admin/orders') return await ordersPage();
    }
    const owned = await ownerRoute(hash);
    if (owned) return owned;
    const m = hash.match(/^#\/approvals\/([A-Za-z0-9_-]{8,64})$/);
    if (m) return await detailPage(m[1]);
    return await listPage(hash === '#/history' ? 'history' : 'pending');
  } catch (err) {
    if (location.hash !== '#/login') main().replaceChildren(el('p', { class: 'error' }, err.message));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch(() => {});
  document.getElementById('logout').addEventListener('click', async () => {
    try { await api('POST', '/v1/logout'); } catch (e) { /* logged out anyway */ }
    csrf = null; me = null; location.hash = '#/login';
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) route(); });
  window.addEventListener('hashchange', route);
  route();
});
