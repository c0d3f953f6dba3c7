// agent-vault portal: a small script over the JSON API. It never receives a secret's value
// (the API answers with masked previews) and puts server text into the page only as text
// (textContent), never as HTML. A value typed in the form is sent once, in a request body,
// and the field is cleared right after.
'use strict';

let csrf = null;
let session = null;
let currentAgent = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child instanceof Node) node.append(child);
    else node.append(child === null || child === undefined ? '' : String(child));
  }
  return node;
}

function button(label, onclick, ariaLabel) {
  const attrs = { type: 'button', onclick };
  if (ariaLabel) attrs['aria-label'] = ariaLabel;
  return el('button', attrs, label);
}

function status(text) { $('status').textContent = text || ''; }
function error(text) { $('error').textContent = text || ''; }

class ApiFailure extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function call(method, path, body) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf || '';
  const options = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (_) { data = null; }
  }
  if (!response.ok) {
    const code = data && data.error ? data.error.code : 'http_' + response.status;
    const message = data && data.error ? data.error.message : 'request failed (HTTP ' + response.status + ')';
    if (response.status === 401 && session) {
      signedOut('Your session ended (' + message + '). Sign in again.');
    }
    throw new ApiFailure(response.status, code, message);
  }
  return data;
}

function show(view) {
  if (view !== 'tokens') {
    // A token shown once does not stay in the page once the operator moves on.
    $('issued-token').value = '';
    $('issued').hidden = true;
  }
  for (const section of document.querySelectorAll('main > section')) {
    section.hidden = section.id !== 'view-' + view;
  }
  error('');
  const heading = document.querySelector('#view-' + view + ' h2');
  if (heading) { heading.setAttribute('tabindex', '-1'); heading.focus(); }
}

function signedIn(info) {
  session = info;
  csrf = info.csrf;
  $('nav').hidden = false;
  $('whoami').textContent = 'token ' + info.token_id + (info.admin ? ' (admin)' : '');
  for (const b of document.querySelectorAll('#nav [data-view="tokens"], #nav [data-view="audit"]')) {
    b.hidden = !info.admin;
  }
  openAgents();
}

function signedOut(message) {
  session = null;
  csrf = null;
  currentAgent = null;
  $('nav').hidden = true;
  for (const id of ['agents-body', 'entries-body', 'tokens-body', 'audit-body', 'versions-body']) {
    $(id).replaceChildren();
  }
  show('signin');
  error(message || '');
}

// The last thing the operator did: background polling stops a while after it, so an
// open page does not keep its session alive past the idle limit.
let lastAction = Date.now();
const POLL_AFTER_ACTION_MS = 5 * 60 * 1000;

async function withErrors(action) {
  lastAction = Date.now();
  error('');
  status('');
  try { await action(); } catch (e) { error(e.message); }
}

// ---- sign-in / sign-out ----

$('signin-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const field = $('signin-token');
  const token = field.value.trim();
  field.value = '';
  withErrors(async () => {
    const info = await call('POST', '/ui/api/session', { token });
    status('Signed in.');
    signedIn(info);
  });
});

$('signout').addEventListener('click', () => withErrors(async () => {
  await call('DELETE', '/ui/api/session');
  signedOut('');
  status('Signed out.');
}));

for (const b of document.querySelectorAll('[data-view]')) {
  b.addEventListener('click', () => {
    const view = b.getAttribute('data-view');
    if (view === 'agents') openAgents();
    if (view === 'tokens') openTokens();
    if (view === 'audit') openAudit();
  });
}

// ---- agents ----

function openAgents() {
  show('agents');
  withErrors(async () => {
    const data = await call('GET', '/ui/api/agents');
    const rows = data.agents.map((a) => el('tr', {},
      el('td', {}, button(a.agent, () => openAgent(a.agent), 'Open agent ' + a.agent)),
      el('td', {}, a.entries),
      el('td', {}, a.updated_at || '—'),
      el('td', {}, a.last_read_at || 'never')));
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: '4' }, 'No agents yet.')));
    $('agents-body').replaceChildren(...rows);
  });
}

$('open-agent-form').addEventListener('submit', (event) => {
  event.preventDefault();
  openAgent($('open-agent-name').value.trim());
});

function agentPath(agent, key) {
  let path = '/v1/agents/' + encodeURIComponent(agent) + '/secrets';
  if (key !== undefined) path += '/' + encodeURIComponent(key);
  return path;
}

// Tags are never secret: `name=value` pairs, shown as text (never as HTML).
function tagsText(tags) {
  const pairs = Object.entries(tags || {}).map(([name, value]) => name + '=' + value);
  return pairs.length ? pairs.join(', ') : '—';
}

function openAgent(agent) {
  currentAgent = agent;
  $('agent-title').textContent = 'Agent ' + agent;
  $('versions').hidden = true;
  show('agent');
  return withErrors(loadEntries);
}

async function loadEntries() {
  const data = await call('GET', agentPath(currentAgent));
  const rows = data.secrets.map((s) => el('tr', {},
    el('th', { scope: 'row' }, s.key),
    el('td', {}, s.kind),
    el('td', { 'data-tier': s.key }, s.tier),
    el('td', { 'data-tags': s.key }, tagsText(s.tags)),
    el('td', { class: 'mono' }, s.preview),
    el('td', {}, s.description),
    el('td', {}, s.version),
    el('td', {}, s.updated_at),
    el('td', { 'data-last-read': s.key }, s.last_read_at || 'never'),
    el('td', { 'data-delivery': s.key }, '…'),
    el('td', { class: 'actions' },
      button('Rotate', () => startRotate(s), 'Rotate ' + s.key),
      button('Versions', () => withErrors(() => loadVersions(s.key)), 'Versions of ' + s.key),
      button('Delete', () => deleteEntry(s.key), 'Delete ' + s.key))));
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: '11' }, 'No entries you manage.')));
  $('entries-body').replaceChildren(...rows);
  await refreshDelivery();
  scheduleDelivery();
}

// Live rotation marks: whether a launcher has read each entry's current value since it was
// written (a waiting launcher re-reads within moments of a change). Polled while the agent
// is on screen.
let deliveryTimer = null;

// Returns whether some entry is still waiting for a launcher to read it.
async function refreshDelivery() {
  const agent = currentAgent;
  if (!agent || !session || $('view-agent').hidden) return false;
  const data = await call('GET', '/ui/api/agents/' + encodeURIComponent(agent) + '/delivery');
  if (agent !== currentAgent) return false;
  for (const e of data.entries) {
    const mark = document.querySelector('td[data-delivery="' + e.key + '"]');
    if (mark) mark.textContent = e.delivered ? 'delivered' : (e.last_read_at ? 'not yet read' : 'never read');
    const read = document.querySelector('td[data-last-read="' + e.key + '"]');
    if (read) read.textContent = e.last_read_at || 'never';
  }
  return data.entries.some((e) => !e.delivered);
}

// Poll while an entry waits for a launcher, the agent is on screen, and the operator acted
// in the last few minutes.
function scheduleDelivery() {
  clearTimeout(deliveryTimer);
  deliveryTimer = setTimeout(async () => {
    let pending = false;
    try { pending = await refreshDelivery(); } catch (_) { /* a lost session shows the sign-in */ }
    const recent = Date.now() - lastAction < POLL_AFTER_ACTION_MS;
    if (pending && recent && session && !$('view-agent').hidden) scheduleDelivery();
  }, 2000);
}

function startRotate(entry) {
  $('set-key').value = entry.key;
  $('set-description').value = entry.description;
  $('set-kind').value = entry.kind;
  $('set-title').textContent = 'Rotate or edit ' + entry.key + ' (an empty value keeps the current one)';
  $('set-value').focus();
}

$('set-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = $('set-key').value.trim();
  const valueField = $('set-value');
  const body = { description: $('set-description').value, kind: $('set-kind').value };
  if (valueField.value !== '') body.value = valueField.value;
  // Never kept: the field is cleared before the request goes out.
  valueField.value = '';
  withErrors(async () => {
    const result = await call('PUT', agentPath(currentAgent, key), body);
    $('set-title').textContent = 'Set a value';
    $('set-key').value = '';
    $('set-description').value = '';
    await loadEntries();
    status((result.created ? 'Created ' : 'Saved ') + key + ' (version ' + result.secret.version + ').');
  });
});

function deleteEntry(key) {
  if (!window.confirm('Delete ' + key + ' of ' + currentAgent + ' with all its versions?')) return;
  withErrors(async () => {
    await call('DELETE', agentPath(currentAgent, key));
    $('versions').hidden = true;
    await loadEntries();
    status('Deleted ' + key + '.');
  });
}

// The file is read in the browser and parsed by the server with the CLI's own reader: one
// request, all or nothing. The file input is cleared whatever the outcome.
$('import-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('import-file');
  const file = input.files[0];
  if (!file) return;
  const options = {
    plain: $('import-plain').checked,
    overwrite: $('import-overwrite').checked,
    allow_dangerous_name: $('import-dangerous').checked,
    plain_keys: $('import-plain-keys').value.split(',').map((k) => k.trim()).filter((k) => k),
  };
  withErrors(async () => {
    let content;
    try { content = await file.text(); } finally { input.value = ''; }
    const summary = await call('POST', '/ui/api/agents/' + encodeURIComponent(currentAgent) + '/import',
      Object.assign({ content }, options));
    content = null;
    await loadEntries();
    const part = (label, keys) => label + ': ' + (keys.length ? keys.join(', ') : 'none');
    status('Imported. ' + [part('created', summary.created), part('overwritten', summary.overwritten),
      part('skipped', summary.skipped)].join('; ') + '.');
  });
});

async function loadVersions(key) {
  const data = await call('GET', agentPath(currentAgent, key) + '/versions');
  $('versions-title').textContent = 'Versions of ' + key;
  const rows = data.versions.map((v) => el('tr', {},
    el('td', {}, v.version + (v.current ? ' (current)' : '')),
    el('td', {}, v.kind),
    el('td', {}, v.created_at),
    el('td', {}, v.current ? '' : button('Roll back to ' + v.version, () => rollback(key, v.version),
      'Roll back ' + key + ' to version ' + v.version))));
  $('versions-body').replaceChildren(...rows);
  $('versions').hidden = false;
}

function rollback(key, version) {
  if (!window.confirm('Roll ' + key + ' back to version ' + version + '?')) return;
  withErrors(async () => {
    const result = await call('POST', agentPath(currentAgent, key) + '/rollback', { to: version });
    await loadEntries();
    await loadVersions(key);
    status('Rolled ' + key + ' back to version ' + result.rolled_back_to + ' (now version ' + result.secret.version + ').');
  });
}

// ---- tokens ----

function openTokens() {
  show('tokens');
  withErrors(loadTokens);
}

async function loadTokens() {
  const data = await call('GET', '/v1/tokens');
  const rows = data.tokens.map((t) => el('tr', {},
    el('th', { scope: 'row', class: 'mono' }, t.id),
    el('td', {}, t.scopes.join(' ')),
    el('td', {}, t.description),
    el('td', {}, t.created_at),
    el('td', {}, t.expires_at || 'never'),
    el('td', {}, t.revoked_at || ''),
    el('td', {}, t.revoked_at ? '' : button('Revoke', () => revoke(t.id), 'Revoke token ' + t.id))));
  $('tokens-body').replaceChildren(...rows);
}

// The scope builder: the fields make one scope; "Add this scope" collects several. Issuing
// uses the collected scopes, or the fields' scope when none was added.
function builtScope() {
  const action = $('issue-action').value;
  return action === 'admin' ? 'admin'
    : 'secrets:' + action + ':' + $('issue-agent').value.trim() + '/' + ($('issue-pattern').value.trim() || '*');
}

function collectedScopes() {
  return Array.from($('issue-scopes').querySelectorAll('li')).map((li) => li.getAttribute('data-scope'));
}

$('issue-add-scope').addEventListener('click', () => {
  const scope = builtScope();
  if (collectedScopes().includes(scope)) return;
  const item = el('li', { 'data-scope': scope }, el('code', {}, scope), ' ');
  item.append(button('Remove', () => item.remove(), 'Remove scope ' + scope));
  $('issue-scopes').append(item);
  status('Added scope ' + scope + '.');
});

$('issue-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const collected = collectedScopes();
  const body = { scopes: collected.length ? collected : [builtScope()] };
  const ttl = $('issue-ttl').value.trim();
  if (ttl) body.ttl = ttl;
  const description = $('issue-description').value;
  if (description) body.description = description;
  withErrors(async () => {
    const issued = await call('POST', '/v1/tokens', body);
    $('issued-token').value = issued.token;
    $('issued').hidden = false;
    $('issue-scopes').replaceChildren();
    await loadTokens();
    status('Issued token ' + issued.id + ' (' + issued.scopes.join(' ') + ').');
  });
});

$('issued-copy').addEventListener('click', () => {
  const field = $('issued-token');
  field.select();
  if (navigator.clipboard) navigator.clipboard.writeText(field.value).then(() => status('Copied.'), () => {});
});

$('issued-done').addEventListener('click', () => {
  $('issued-token').value = '';
  $('issued').hidden = true;
});

function revoke(id) {
  if (!window.confirm('Revoke token ' + id + '? Its holders lose access at once.')) return;
  withErrors(async () => {
    await call('DELETE', '/v1/tokens/' + encodeURIComponent(id));
    await loadTokens();
    status('Revoked token ' + id + '.');
  });
}

// ---- audit ----

function openAudit() {
  show('audit');
  withErrors(loadAudit);
}

function sinceParam(text) {
  const relative = /^(\d+)\s*([smhd])$/.exec(text);
  if (!relative) return text;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[relative[2]];
  return String(Math.floor(Date.now() / 1000) - Number(relative[1]) * unit);
}

async function loadAudit() {
  const params = new URLSearchParams();
  const agent = $('audit-agent').value.trim();
  const since = $('audit-since').value.trim();
  if (agent) params.set('agent', agent);
  if (since) params.set('since', sinceParam(since));
  params.set('limit', '1000');
  const data = await call('GET', '/v1/audit?' + params.toString());
  const token = $('audit-token').value.trim();
  const action = $('audit-action').value.trim();
  const rows = data.records
    .filter((r) => !token || r.token_id === token)
    .filter((r) => !action || r.action.startsWith(action))
    .reverse()
    .map((r) => el('tr', {},
      el('td', {}, r.at),
      el('td', { class: 'mono' }, r.token_id || ''),
      el('td', {}, r.action),
      el('td', {}, r.agent || ''),
      el('td', {}, r.keys.join(' ')),
      el('td', {}, r.remote || ''),
      el('td', {}, r.outcome)));
  $('audit-body').replaceChildren(...rows);
}

$('audit-form').addEventListener('submit', (event) => {
  event.preventDefault();
  withErrors(loadAudit);
});

// ---- start: resume a session after a reload ----

(async () => {
  try {
    signedIn(await call('GET', '/ui/api/session'));
  } catch (_) {
    signedOut('');
  }
})();
