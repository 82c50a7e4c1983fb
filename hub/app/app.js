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
      location.hash = signup ? '#/start' : '#/';
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
  // Released by the autonomy level the owner raised while it waited (no decision of theirs).
  if (a.status === 'approved' && a.allowed_by_autonomy) {
    return el('div', { class: 'decided approved', id: 'decided' }, `${a.reason || 'Ran without asking'} · ${when(a.decided_at)}`);
  }
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
    billingNav();
    if (me && me.role === 'admin') {
      const o = hash.match(/^#\/admin\/orders\/(\d{1,18})$/);
      if (o) return await orderPage(o[1]);
      if (hash === '#/admin/orders') return await ordersPage();
    }
    if (hash.startsWith('#/start') || hash.startsWith('#/billing')) return await billingRoute(hash);
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

// ---- billing and onboarding (issue 18) ------------------------------------------------------
// Sign-up → the business, tool stack, agent and LLM provider → pay (Stripe Checkout) or, with
// billing off, confirm the free plan → the order's progress, live → "your agent is ready".
// Also the plan, the customer portal, usage per agent and model as a chart, past invoices.

const TOOLS = ['Shopify', 'WooCommerce', 'Gmail', 'Google Calendar', 'Stripe', 'QuickBooks', 'Slack', 'WhatsApp'];
const LLMS = { anthropic: 'Anthropic (Claude)', openai: 'OpenAI (GPT)', openrouter: 'OpenRouter', mistral: 'Mistral' };
const PROGRESS = [
  ['paid', 'Payment confirmed'], ['created', 'Order placed'], ['server_requested', 'Server requested'],
  ['server_running', 'Server running'], ['dns_ready', 'Address ready'], ['installing', 'Installing your agent'],
  ['enrolled', 'Agent connected'], ['active', 'Ready'],
];

function billingNav() {
  const nav = document.querySelector('.navlinks');
  if (!nav || document.getElementById('nav-billing')) return;
  nav.prepend(el('a', { id: 'nav-billing', class: 'link', href: '#/billing' }, 'Plan'));
}

async function billingRoute(hash) {
  if (hash.startsWith('#/start')) return startPage();
  if (hash.startsWith('#/billing/plan')) return planPage();
  if (hash.startsWith('#/billing/welcome') || hash.startsWith('#/billing/progress')) return progressPage();
  if (hash.startsWith('#/billing/cancelled')) return cancelledPage();
  return billingPage();
}

async function startPage() {
  const b = await api('GET', '/v1/billing');
  const o = b.onboarding || {};
  const error = el('p', { class: 'error', role: 'alert' });
  const business = el('input', { type: 'text', id: 'business', required: true, maxlength: '100', placeholder: "Anna's Bakery", value: o.business || null });
  const tools = TOOLS.map((t) => el('label', { class: 'check' },
    el('input', { type: 'checkbox', name: 'tool', value: t.toLowerCase().replace(/ /g, '-'), checked: (o.tools || []).includes(t.toLowerCase().replace(/ /g, '-')) }), t));
  const llm = el('select', { id: 'llm' }, Object.entries(LLMS).map(([k, v]) => el('option', { value: k, selected: o.llm_provider === k }, v)));
  const form = el('form', { class: 'login', id: 'onboarding', onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      await api('POST', '/v1/billing/onboarding', {
        business: business.value.trim(),
        tools: [...form.querySelectorAll('input[name=tool]:checked')].map((i) => i.value),
        agent: 'openclaw', llm_provider: llm.value,
      });
      location.hash = '#/billing/plan';
    } catch (err) { error.textContent = err.message; }
  } },
  el('h1', {}, 'Tell us about your business'),
  el('label', { for: 'business' }, 'Business name'), business,
  el('h2', {}, 'Tools your agent works with'), el('div', { class: 'tools' }, tools),
  el('h2', {}, 'Agent'),
  el('label', { class: 'check' }, el('input', { type: 'radio', name: 'agent', value: 'openclaw', checked: true }), 'OpenClaw assistant'),
  el('label', { for: 'llm' }, 'AI model provider'), llm,
  el('p', { class: 'meta' }, 'Your agent runs on its own server. Risky actions wait for your approval on this phone.'),
  error,
  el('button', { class: 'primary', type: 'submit', id: 'onboarding-next' }, 'Continue'));
  main().replaceChildren(form);
}

async function planPage() {
  const b = await api('GET', '/v1/billing');
  if (!b.onboarding) { location.hash = '#/start'; return; }
  if (b.order) { location.hash = '#/billing/progress'; return; }
  const error = el('p', { class: 'error', role: 'alert' });
  const button = el('button', { class: 'primary', id: b.enabled ? 'pay' : 'free-plan', onclick: async () => {
    button.disabled = true; error.textContent = '';
    try {
      if (b.enabled) {
        const { url } = await api('POST', '/v1/billing/checkout');
        location.href = url;
      } else {
        await api('POST', '/v1/billing/free');
        location.hash = '#/billing/progress';
      }
    } catch (err) { button.disabled = false; error.textContent = err.message; }
  } }, b.enabled ? 'Pay with Stripe' : 'Start on the free plan');
  main().replaceChildren(el('div', { class: 'block plan' },
    el('h1', {}, b.enabled ? 'Standard plan' : 'Free dev plan'),
    el('p', { class: 'price' }, b.enabled ? 'Monthly subscription, plus AI usage' : 'No payment on this hub'),
    el('ul', {}, el('li', {}, `Your own agent for ${b.onboarding.business}`),
      el('li', {}, 'Approvals on your phone'), el('li', {}, 'Cancel any time in the customer portal')),
    error, button));
}

function cancelledPage() {
  main().replaceChildren(el('div', { class: 'block' }, el('h1', {}, 'Payment cancelled'),
    el('p', {}, 'Nothing was charged.'),
    el('a', { class: 'button primary', href: '#/billing/plan', id: 'try-again' }, 'Try again')));
}

async function progressPage() {
  const b = await api('GET', '/v1/billing');
  const o = b.order;
  const status = o ? o.status : null;
  const at = status ? PROGRESS.findIndex(([k]) => k === status) : (b.subscription ? 0 : -1);
  const steps = el('ol', { class: 'progress', id: 'progress' }, PROGRESS.map(([k, label], i) =>
    el('li', { class: i < at || status === 'active' ? 'done' : (i === at ? 'now' : ''), 'data-step': k },
      k === 'paid' && !b.enabled ? 'Free plan confirmed' : label)));
  const parts = [];
  if (status === 'active') {
    parts.push(el('div', { class: 'decided approved', id: 'ready' }, 'Your agent is ready'));
    parts.push(el('p', {}, 'It asks you here before anything risky. Turn on notifications so you hear about it.'));
    const banner = await pushBanner().catch(() => null);
    if (banner) parts.push(banner);
    parts.push(el('a', { class: 'button primary', href: '#/', id: 'first-approval' }, 'Open your approvals'));
  } else if (status === 'failed') {
    parts.push(el('div', { class: 'decided denied', id: 'failure' }, 'Setting up hit a problem. We are on it; no action is needed from you.'));
  } else if (status === 'cancelling' || status === 'cancelled') {
    parts.push(el('div', { class: 'decided expired' }, 'This agent was stopped.'));
  } else {
    parts.push(el('p', { class: 'meta', id: 'waiting' }, o ? 'Setting up your agent; this page updates by itself.' : 'Confirming your payment…'));
  }
  main().replaceChildren(el('h1', {}, status === 'active' ? 'Ready' : 'Setting up your agent'), steps, ...parts);
  if (!['active', 'failed', 'cancelled'].includes(status)) refreshTimer = setTimeout(() => route(), 2000);
}

function billingMoney(cents, currency) {
  try { return new Intl.NumberFormat([], { style: 'currency', currency: (currency || 'eur').toUpperCase() }).format(cents / 100); } catch (e) { return `${(cents / 100).toFixed(2)} ${currency}`; }
}

function tokens(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

const BILLING_SVG = 'http://www.w3.org/2000/svg';
function billingSvg(tag, attrs) {
  const n = document.createElementNS(BILLING_SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

// Daily stacked bars: input, output, cache read, cache write.
function billingUsageChart(hours) {
  const days = new Map();
  for (const h of hours) {
    const d = Math.floor(h.hour / 86400) * 86400;
    const v = days.get(d) || [0, 0, 0, 0];
    [h.input_tokens, h.output_tokens, h.cache_read_tokens, h.cache_write_tokens].forEach((x, i) => { v[i] += x; });
    days.set(d, v);
  }
  const entries = [...days.entries()].sort((a, b) => a[0] - b[0]).slice(-31);
  const W = 340; const H = 150; const max = Math.max(1, ...entries.map(([, v]) => v.reduce((a, b) => a + b, 0)));
  const bw = entries.length ? Math.min(28, (W - 10) / entries.length - 2) : 10;
  const chart = billingSvg('svg', { viewBox: `0 0 ${W} ${H + 20}`, class: 'chart', id: 'usage-chart', role: 'img', 'aria-label': 'Tokens per day' });
  const colours = ['#0550ae', '#1a7f37', '#9a6700', '#6e1fc2'];
  entries.forEach(([d, v], i) => {
    let y = H;
    v.forEach((x, k) => {
      const h = (x / max) * (H - 10);
      if (h > 0) { chart.append(billingSvg('rect', { x: 5 + i * (bw + 2), y: y - h, width: bw, height: h, fill: colours[k] })); y -= h; }
    });
    const t = billingSvg('text', { x: 5 + i * (bw + 2) + bw / 2, y: H + 14, 'text-anchor': 'middle', 'font-size': 9, fill: '#5b6472' });
    t.textContent = String(new Date(d * 1000).getUTCDate());
    chart.append(t);
  });
  const legend = el('div', { class: 'legend' }, ['Input', 'Output', 'Cache read', 'Cache write'].map((l, k) =>
    el('span', {}, el('i', { style: null, class: `sw sw${k}` }), l)));
  return el('div', { class: 'block' }, chart, legend);
}

async function billingPage() {
  const [b, usage, inv] = await Promise.all([api('GET', '/v1/billing'), api('GET', '/v1/billing/usage'), api('GET', '/v1/billing/invoices')]);
  const s = b.subscription;
  const parts = [el('h1', {}, 'Your plan')];
  const plan = el('div', { class: 'block', id: 'plan' },
    el('div', { class: 'summary' }, b.plan === 'dev' ? 'Free dev plan' : b.plan === 'standard' ? 'Standard plan' : 'No plan yet'),
    s ? el('div', { class: 'meta', id: 'sub-status' }, `Subscription ${s.status}${s.current_period_end ? ` · renews ${when(s.current_period_end)}` : ''}${s.cancel_at_period_end ? ' · ends at period end' : ''}`) : null);
  parts.push(plan);
  if (b.grace_until && s && s.status === 'canceled') {
    parts.push(el('div', { class: 'banner warn', id: 'grace' }, `Your subscription has ended. Your agent stops on ${when(b.grace_until)}.`));
  } else if (b.grace_until) {
    parts.push(el('div', { class: 'banner warn', id: 'grace' },
      `A payment failed. Please update your card before ${when(b.grace_until)}, or your agent will be stopped.`));
  }
  if (b.enabled && b.customer) {
    const portal = el('button', { class: 'primary', id: 'portal', onclick: async () => {
      portal.disabled = true;
      try { location.href = (await api('POST', '/v1/billing/portal')).url; } catch (err) { portal.disabled = false; alert(err.message); }
    } }, 'Manage payment and plan');
    parts.push(portal);
  } else if (!b.order) {
    parts.push(el('a', { class: 'button primary', href: b.onboarding ? '#/billing/plan' : '#/start', id: 'get-started' }, 'Get your agent'));
  }
  if (b.order) parts.push(el('p', {}, el('a', { href: '#/billing/progress', id: 'order-link' }, `Agent ${b.order.tenant}: ${ORDER_STEPS[b.order.status] || b.order.status}`)));
  parts.push(el('h2', {}, `Usage since ${new Date(usage.since * 1000).toLocaleDateString()}`));
  if (usage.hours.length) {
    parts.push(billingUsageChart(usage.hours));
    parts.push(el('table', { class: 'usage block', id: 'usage' },
      el('thead', {}, el('tr', {}, ['Agent · model', 'In', 'Out', 'Cache rd', 'Cache wr'].map((h) => el('th', {}, h)))),
      el('tbody', {}, usage.totals.map((t) => el('tr', {},
        el('td', {}, `${t.agent} · ${t.model}`), el('td', {}, tokens(t.input_tokens)), el('td', {}, tokens(t.output_tokens)),
        el('td', {}, tokens(t.cache_read_tokens)), el('td', {}, tokens(t.cache_write_tokens)))))));
  } else {
    parts.push(el('div', { class: 'empty' }, 'No usage yet this period.'));
  }
  parts.push(el('h2', {}, 'Invoices'));
  parts.push(inv.invoices.length
    ? el('div', { id: 'invoices' }, inv.invoices.map((i) => el(i.hosted_invoice_url ? 'a' : 'div', { class: 'card invoice', href: i.hosted_invoice_url || null, target: '_blank', rel: 'noopener' },
      el('div', { class: 'summary' }, `${billingMoney(i.status === 'paid' ? i.amount_paid : i.amount_due, i.currency)} `, el('span', { class: `status inv-${i.status}` }, i.status)),
      el('div', { class: 'meta' }, `${i.number || i.id} · ${when(i.created)}`))))
    : el('div', { class: 'empty' }, 'No invoices yet.'));
  main().replaceChildren(...parts);
}
