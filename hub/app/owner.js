// The owner's app pages (issue 19): agents and their autonomy, the activity view, and usage
// this billing period. Uses app.js's helpers (el, api, main, ago, when, withSecrets); every
// value from the server goes into the page as text, never as HTML.
'use strict';

const LEVEL_WORDS = { 1: 'Supervised', 2: 'Trusted', 3: 'Autonomous' };
const CHANNEL_WORDS = {
  email: 'Send email', message: 'Send chat messages and texts', social: 'Post on social media',
  publish: 'Publish on your website', share: 'Share files and links', upload: 'Upload files elsewhere',
  'git-push': 'Publish code changes', http: 'Send data to other web services', browser: 'Act in a web browser',
  network: 'Connect to other computers', cloud: 'Change cloud services', payments: 'Move money',
};
const DECISION_WORDS = {
  pending: 'Waiting for you', approved: 'Approved', denied: 'Denied', expired: 'Expired unanswered',
  allowed: 'Ran without asking',
};

// The tier as a colour and the owner's words (from the server; the tier name stays in details).
function tierWords(a) {
  return el('span', { class: `words t-${a.tier}` }, a.tier_words || a.tier);
}

function ownerNav() {
  let nav = document.getElementById('appnav');
  if (!nav) {
    nav = el('nav', { id: 'appnav', class: 'appnav', hidden: true },
      el('a', { href: '#/', id: 'nav-approvals' }, 'Approvals'),
      el('a', { href: '#/agents', id: 'nav-agents' }, 'Agents'),
      el('a', { href: '#/activity', id: 'nav-activity' }, 'Activity'),
      el('a', { href: '#/usage', id: 'nav-usage' }, 'Usage'));
    // Inside the sticky header, as its second row, so it stays in reach while scrolling.
    document.querySelector('header.bar').append(nav);
  }
  return nav;
}

function markNav(hash) {
  const nav = ownerNav();
  const login = hash === '#/login' || hash === '#/signup';
  nav.hidden = login;
  const section = hash.startsWith('#/agents') ? 'agents' : hash.startsWith('#/activity') ? 'activity'
    : hash.startsWith('#/usage') ? 'usage' : hash.startsWith('#/admin') ? '' : 'approvals';
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('on', a.id === `nav-${section}`);
}

// Called by app.js's router once logged in; answers true when it drew the page.
async function ownerRoute(hash) {
  markNav(hash);
  if (hash === '#/agents') { await agentsPage(); return true; }
  if (hash === '#/activity') { await activityPage(); return true; }
  if (hash === '#/usage') { await usagePage(); return true; }
  return false;
}

window.addEventListener('hashchange', () => markNav(location.hash || '#/'));

// ---- agents and autonomy ------------------------------------------------------------------

function agentCard(agent, levels, channels) {
  const key = `${agent.tenant}/${agent.agent}`;
  const id = key.replace(/[^A-Za-z0-9_-]/g, '_');
  const status = el('p', { class: 'meta saved', id: `saved-${id}`, role: 'status' });
  const chosen = agent.level || null;
  const radios = levels.map((l) => {
    const input = el('input', { type: 'radio', name: `level-${id}`, value: String(l.level), id: `level-${id}-${l.level}`, checked: chosen === l.level });
    return el('label', { class: 'choice', for: `level-${id}-${l.level}` }, input,
      el('span', {}, el('strong', {}, LEVEL_WORDS[l.level] || l.name), el('small', {}, l.meaning)));
  });
  const unlocked = new Set(agent.channels || []);
  const boxes = channels.map((c) => el('label', { class: 'check channel' },
    el('input', { type: 'checkbox', value: c, id: `channel-${id}-${c}`, checked: unlocked.has(c) }), CHANNEL_WORDS[c] || c));
  const channelBlock = el('fieldset', { class: 'channels', id: `channels-${id}` },
    el('legend', {}, 'Without asking, it may also:'), boxes);
  const level = () => {
    const r = card.querySelector(`input[name="level-${id}"]:checked`);
    return r ? Number(r.value) : null;
  };
  const sync = () => { channelBlock.hidden = level() !== 3; };
  const save = el('button', { class: 'primary', id: `save-${id}`, onclick: async () => {
    const chosenLevel = level();
    if (!chosenLevel) { status.textContent = 'Choose a level first.'; return; }
    save.disabled = true;
    status.textContent = '';
    const picked = [...channelBlock.querySelectorAll('input:checked')].map((i) => i.value);
    try {
      await api('POST', `/v1/agents/${encodeURIComponent(agent.tenant)}/${encodeURIComponent(agent.agent)}/autonomy`,
        { level: chosenLevel, channels: chosenLevel === 3 ? picked : [] });
      status.textContent = `Saved: ${LEVEL_WORDS[chosenLevel]}. Your server applies it within a minute`
        + (chosenLevel > 1 ? '; what this agent has waiting for you that this level allows then runs.' : '.');
      current.textContent = `Now: ${LEVEL_WORDS[chosenLevel]} · set by you just now`;
    } catch (err) { status.textContent = err.message; }
    save.disabled = false;
  } }, 'Save');
  const current = el('p', { class: 'meta', id: `now-${id}` }, agent.level
    ? `Now: ${LEVEL_WORDS[agent.level]}${agent.updated_by ? ` · set by ${agent.updated_by} ${ago(agent.updated_at)}` : ''}`
    : 'Now: as set up on your server (supervised unless changed there)');
  const card = el('section', { class: 'block agent', 'data-agent': key },
    el('h2', { class: 'agent-name' }, `${agent.agent} on ${agent.tenant}`),
    current,
    el('div', { class: 'choices', onchange: sync }, radios),
    channelBlock, save, status);
  sync();
  return card;
}

async function agentsPage() {
  const data = await api('GET', '/v1/agents');
  const cards = data.agents.map((a) => agentCard(a, data.levels, data.channels));
  main().replaceChildren(
    el('h1', {}, 'Your agents'),
    el('p', { class: 'meta' }, 'Choose how much each agent may do without asking you. Anything that cannot be undone always asks.'),
    ...(cards.length ? cards : [el('div', { class: 'empty' }, 'No agents yet. They appear here once your server reports one.')]));
}

// ---- activity -----------------------------------------------------------------------------

function outcomeWords(i) {
  if (i.succeeded === true) return i.outcome === 'allowed' ? 'done' : 'succeeded';
  if (i.succeeded === false) return `failed${i.exit_code !== null && i.exit_code !== undefined ? ` (exit code ${i.exit_code})` : ''}`;
  if (i.decision === 'approved' || i.decision === 'pending') return 'not run yet';
  return 'did not run';
}

async function activityPage() {
  const data = await api('GET', '/v1/activity?limit=200');
  const items = data.activity.map((i) => el('div', { class: `card t-${i.tier} activity`, 'data-id': i.id },
    el('div', {}, tierWords(i), el('span', { class: `status d-${i.decision}` }, DECISION_WORDS[i.decision] || i.decision)),
    el('div', { class: 'summary' }, withSecrets(i.summary)),
    el('div', { class: 'meta' }, [
      `agent ${i.agent}`,
      i.decision === 'allowed' ? 'allowed by its autonomy level' : i.decided_by ? `${DECISION_WORDS[i.decision].toLowerCase()} by ${i.decided_by}` : null,
      i.ran_at ? `ran ${when(i.ran_at)}` : `asked ${ago(i.at)}`,
      outcomeWords(i),
    ].filter(Boolean).join(' · '))));
  main().replaceChildren(
    el('h1', {}, 'What your agents did'),
    ...(items.length ? items : [el('div', { class: 'empty' }, 'Nothing yet.')]));
  refreshTimer = setTimeout(() => route(), 10000);
}

// ---- usage --------------------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function compact(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  return String(n);
}

function money(x) {
  return x === null || x === undefined ? null : `$${x < 10 ? x.toFixed(2) : x.toFixed(0)}`;
}

const PARTS = [
  ['input', 'Input'], ['output', 'Output'], ['cache_read', 'Cache read'], ['cache_write', 'Cache write'],
];

// Daily stacked bars of the period (input, output, cache read, cache write).
function usageChart(days) {
  const W = 358; const H = 180; const top = 12; const bottom = 22; const left = 4;
  const total = (d) => PARTS.reduce((s, [k]) => s + d.tokens[k], 0);
  const max = Math.max(1, ...days.map(total));
  const step = (W - left) / Math.max(days.length, 1);
  const bar = Math.max(2, step * 0.72);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', id: 'usage-chart', role: 'img', 'aria-label': 'Tokens per day this period' });
  chart.append(svg('line', { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, class: 'axis' }));
  chart.append(svg('text', { x: W, y: top - 2, 'text-anchor': 'end', class: 'tick' }, `${compact(max)} tokens`));
  days.forEach((d, i) => {
    let y = H - bottom;
    const x = left + i * step + (step - bar) / 2;
    for (const [k] of PARTS) {
      const h = (d.tokens[k] / max) * (H - bottom - top);
      if (h > 0) {
        y -= h;
        chart.append(svg('rect', { x: x.toFixed(1), y: y.toFixed(1), width: bar.toFixed(1), height: h.toFixed(1), class: `bar p-${k}` },
          svg('title', {}, `${new Date(d.day * 1000).toLocaleDateString()}: ${compact(d.tokens[k])} ${k.replace('_', ' ')}`)));
      }
    }
    const date = new Date(d.day * 1000);
    if (i === 0 || date.getUTCDate() % 7 === 1 || i === days.length - 1) {
      chart.append(svg('text', { x: (x + bar / 2).toFixed(1), y: H - 6, 'text-anchor': 'middle', class: 'tick' }, String(date.getUTCDate())));
    }
  });
  return chart;
}

async function usagePage() {
  const u = await api('GET', '/v1/usage');
  const t = u.total_tokens;
  const all = t.input + t.output + t.cache_read + t.cache_write;
  const month = new Date(u.period_start * 1000).toLocaleDateString([], { month: 'long', year: 'numeric', timeZone: 'UTC' });
  const trend = u.trend_percent === null || u.trend_percent === undefined ? 'No earlier week to compare with yet.'
    : u.trend_percent === 0 ? 'Same as the week before.'
      : `${u.trend_percent > 0 ? '▲' : '▼'} ${Math.abs(u.trend_percent)}% ${u.trend_percent > 0 ? 'more' : 'less'} than the week before.`;
  const legend = el('div', { class: 'legend' }, PARTS.map(([k, name]) => el('span', {}, el('i', { class: `key p-${k}` }), name)));
  const rows = u.lines.map((l) => el('tr', { 'data-agent': l.agent, 'data-model': l.model },
    el('td', {}, el('strong', {}, l.agent), el('div', { class: 'meta' }, l.model)),
    el('td', {}, compact(l.tokens.input)), el('td', {}, compact(l.tokens.output)),
    el('td', {}, compact(l.tokens.cache_read)), el('td', {}, compact(l.tokens.cache_write)),
    el('td', {}, money(l.cost_usd) || '—')));
  main().replaceChildren(
    el('h1', {}, `Usage in ${month}`),
    el('div', { class: 'block totals', id: 'usage-total' },
      el('div', { class: 'big' }, `${compact(all)} tokens`),
      el('div', {}, u.total_cost_usd !== null && u.total_cost_usd !== undefined ? `about ${money(u.total_cost_usd)} so far` : 'No prices set up for these models'),
      el('div', { class: 'meta trend', id: 'usage-trend' }, trend)),
    el('div', { class: 'block' }, usageChart(u.days), legend),
    el('h2', {}, 'By agent and model'),
    u.lines.length ? el('div', { class: 'block scroll' }, el('table', { class: 'usage', id: 'usage-table' },
      el('thead', {}, el('tr', {}, ['Agent', 'In', 'Out', 'Cache read', 'Cache write', 'Cost'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows))) : el('div', { class: 'empty' }, 'No use this month yet.'));
}
