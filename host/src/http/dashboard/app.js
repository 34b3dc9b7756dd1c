// fluid's dashboard: reads the JSON API every 2 s and renders it; buttons call the same API.
// No framework and no build step: index.html is static, this file fills its tables.
//
// Rules that keep it usable while it refreshes:
// - The filter form is never re-rendered; a refresh reads the filters that were applied.
// - Table rows are keyed and only rewritten when their content changed, so a row under the
//   mouse stays the same element unless it really changed.
// - A response that left before a change the user made (toggle, cancel, ...) is dropped, and
//   the change triggers a fresh load, so the page never flips back to the old state.
// - Every API error is shown on the page (bottom right) until the same call succeeds.
'use strict';

const REFRESH_MS = 2000;
const CANCELLABLE = ['queued', 'running'];

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(method, path, status, detail) {
    super(`${method} ${path}: ${status ? status + ' ' : ''}${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

// The API token, when the host wants one: kept for this browser tab's session only.
const TOKEN_KEY = 'fluid-token';

async function api(method, path, body) {
  const init = { method, headers: { accept: 'application/json' } };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(method, path, 0, `host unreachable (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: keep the text for the error message.
  }
  if (res.status === 401) $('token-form').hidden = false;
  if (!res.ok) throw new ApiError(method, path, res.status, (data && data.detail) || text || res.statusText);
  return { status: res.status, data };
}

// What the token may do decides what the page offers: `body[data-role]` hides the
// buttons a role may not use (see app.css).
async function loadRole() {
  try {
    const { data } = await api('GET', '/token');
    document.body.dataset.role = data.role;
    $('token-role').textContent = data.enforced ? `token ${data.id} (${data.role})` : '';
    $('token-form').hidden = true;
  } catch (e) {
    document.body.dataset.role = 'none';
    if (e.status !== 401) showMessage('token', 'error', e.message);
  }
}

$('token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
  $('token-input').value = '';
  await loadRole();
  refresh();
});

// Bumped before and after every change the user makes: a load that was in flight at
// either moment may carry the old state, so its result is dropped.
let generation = 0;

// Runs a change the user asked for: its error shows under `key` until it works, its
// success note (what `change` returns) for a few seconds; then reloads everything.
async function act(key, change) {
  generation++;
  try {
    const note = await change();
    clearMessage(key);
    if (note) showMessage(`${key} done`, 'info', note, 5000);
  } catch (e) {
    showMessage(key, 'error', e.message);
  } finally {
    generation++;
  }
  refresh();
}

// ---------------------------------------------------------------------------------------
// Messages: errors stay until the same source succeeds again or the user dismisses them.

const messages = new Map(); // key -> {kind, text}

function showMessage(key, kind, text, timeoutMs) {
  messages.set(key, { kind, text });
  renderMessages();
  if (timeoutMs) {
    setTimeout(() => {
      if (messages.get(key)?.text === text) clearMessage(key);
    }, timeoutMs);
  }
}

function clearMessage(key) {
  if (messages.delete(key)) renderMessages();
}

function renderMessages() {
  const box = $('messages');
  box.innerHTML = [...messages]
    .map(
      ([key, m]) =>
        `<div class="message ${m.kind}" data-testid="message-${m.kind}">` +
        `<span>${esc(m.text)}</span><button type="button" class="link" data-dismiss="${esc(key)}" aria-label="dismiss">✕</button></div>`,
    )
    .join('');
}

$('messages').addEventListener('click', (e) => {
  const key = e.target.closest('[data-dismiss]')?.dataset.dismiss;
  if (key) clearMessage(key);
});

// Runs `load` and reports its error under `key`.
async function tracked(key, load) {
  try {
    await load();
    clearMessage(key);
  } catch (e) {
    showMessage(key, 'error', e.message);
  }
}

// ---------------------------------------------------------------------------------------
// Formatting

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function clock(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour12: false }) : d.toLocaleString([], { hour12: false });
}

function ago(iso) {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function seconds(s) {
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// Between two RFC 3339 times; a run still going counts up to now.
function span(start, end) {
  if (!start) return '—';
  return seconds(((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000);
}

function isoDuration(d) {
  const m = /^PT([\d.]+)S$/.exec(d || '');
  return m ? seconds(parseFloat(m[1])) : '';
}

function badge(state, testid) {
  const t = testid ? ` data-testid="${esc(testid)}"` : '';
  return `<span class="badge ${esc(state)}"${t}>${esc(String(state).replace('_', ' '))}</span>`;
}

function time(iso) {
  return iso ? `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(clock(iso))}</time>` : '—';
}

// Keyed rows: rewrites a row only when its HTML changed, keeps the order of `items`.
function syncRows(tbody, items, keyOf, cells, decorate) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let prev = null;
  for (const item of items) {
    const key = keyOf(item);
    const html = cells(item);
    let tr = old.get(key);
    if (tr) {
      old.delete(key);
    } else {
      tr = document.createElement('tr');
      tr.dataset.key = key;
    }
    if (tr.renderedHtml !== html) {
      tr.innerHTML = html;
      tr.renderedHtml = html;
    }
    decorate?.(tr, item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

// ---------------------------------------------------------------------------------------
// Host summary and queue depth (GET /tasks-status)

async function loadStatus() {
  const gen = generation;
  const { data } = await api('GET', '/tasks-status');
  if (gen !== generation) return;
  const here = data.workers.find((w) => w.this_host);
  const hosts = data.workers.length;
  $('host-summary').textContent =
    `${data.backend} · ${hosts} host${hosts === 1 ? '' : 's'} alive · ` +
    `${data.running_here} running here${here ? ` of ${here.workers} workers` : ''}`;
  const queues = data.queues || {};
  const most = Math.max(1, ...Object.values(queues));
  $('queue-depth').innerHTML =
    ['high', 'medium', 'low']
      .map((p) => {
        const n = queues[p] ?? 0;
        return (
          `<div class="tile" data-testid="queue-${p}"><div class="label">${p}</div>` +
          `<div class="value">${n}</div><div class="bar"><span style="width:${(100 * n) / most}%"></span></div></div>`
        );
      })
      .join('') +
    `<div class="tile" data-testid="queue-running"><div class="label">running here</div>` +
    `<div class="value">${data.running_here}</div><div class="bar"></div></div>`;
}

// ---------------------------------------------------------------------------------------
// Tasks (GET /tasks, PATCH /tasks/{name}, POST /tasks/{name})

let tasks = [];

async function loadTasks() {
  const gen = generation;
  const { data } = await api('GET', '/tasks');
  if (gen !== generation) return;
  tasks = data;
  renderTasks();
}

function renderTasks() {
  $('tasks-empty').hidden = tasks.length > 0;
  $('task-names').innerHTML = tasks.map((t) => `<option value="${esc(t.name)}">`).join('');
  syncRows($('tasks-body'), tasks, (t) => t.name, taskCells, (tr, t) => {
    tr.dataset.testid = `task-row-${t.name}`;
    tr.classList.toggle('disabled', !t.enabled);
  });
}

function taskCells(t) {
  const n = esc(t.name);
  const tags = (t.tags || []).map((g) => `<span class="tag">${esc(g)}</span>`).join('');
  const last = t.last_run_state
    ? `${badge(t.last_run_state, `task-last-${t.name}`)} <span title="${esc(t.last_run_end)}">${esc(ago(t.last_run_end))}</span>` +
      ` <span class="muted">${esc(isoDuration(t.last_run_duration))}</span>`
    : '<span class="muted">never</span>';
  return (
    `<td><strong>${n}</strong> ${tags}<div class="muted small">${esc(t.short_description)}</div></td>` +
    `<td>${t.schedule ? `<code>${esc(t.schedule)}</code>` : '<span class="muted">—</span>'}</td>` +
    `<td>${esc(t.priority)}</td>` +
    `<td><label class="switch"><input type="checkbox" role="switch" data-action="toggle" data-task="${n}"` +
    ` data-testid="task-toggle-${n}"${t.enabled ? ' checked' : ''}><span class="slider"></span>` +
    `<span class="switch-label" data-testid="task-enabled-${n}">${t.enabled ? 'enabled' : 'disabled'}</span></label></td>` +
    `<td>${last}</td>` +
    `<td class="actions"><button type="button" data-action="run" data-task="${n}" data-testid="task-run-${n}">Run now</button></td>`
  );
}

function toggleTask(input) {
  const name = input.dataset.task;
  const enabled = input.checked;
  input.disabled = true;
  return act(`toggle ${name}`, async () => {
    try {
      const { data } = await api('PATCH', `/tasks/${encodeURIComponent(name)}`, { enabled });
      tasks = tasks.map((t) => (t.name === name ? data : t));
      return `${name} ${enabled ? 'enabled' : 'disabled'}`;
    } catch (e) {
      input.checked = !enabled;
      throw e;
    } finally {
      input.disabled = false;
      renderTasks();
    }
  });
}

// A task whose params schema requires fields gets a prompt for its params.
function askParams(task) {
  const schema = task.params_schema;
  const required = schema?.required || [];
  if (!required.length) return undefined;
  const template = Object.fromEntries(required.map((k) => [k, schema.properties?.[k]?.type === 'string' ? '' : 0]));
  const text = prompt(`Params of ${task.name} (JSON)`, JSON.stringify(template));
  if (text === null) return null;
  return JSON.parse(text);
}

function runTask(name) {
  const task = tasks.find((t) => t.name === name);
  let params;
  try {
    params = task ? askParams(task) : undefined;
  } catch (e) {
    showMessage(`run ${name}`, 'error', `params of ${name}: ${e.message}`);
    return;
  }
  if (params === null) return;
  return act(`run ${name}`, async () => {
    const { data } = await api('POST', `/tasks/${encodeURIComponent(name)}`, params);
    return `queued ${name}: run ${data.id}`;
  });
}

$('tasks-body').addEventListener('change', (e) => {
  if (e.target.dataset.action === 'toggle') toggleTask(e.target);
});
$('tasks-body').addEventListener('click', (e) => {
  const b = e.target.closest('[data-action="run"]');
  if (b) runTask(b.dataset.task);
});

// ---------------------------------------------------------------------------------------
// History (the db plugin's GET /task-history), with the applied filters and cursor paging

const history = {
  query: new URLSearchParams({ limit: '50' }), // the applied filters
  cursors: [''], // cursors[k] fetches page k; '' is the first page
  page: 0,
  nextCursor: '',
  rows: [],
};

function csv(s) {
  return s
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

// The form as history query parameters; throws on a value the user must fix.
function readFilters(form) {
  const f = new FormData(form);
  const q = new URLSearchParams();
  for (const t of csv(f.get('task'))) q.append('task', t);
  for (const t of csv(f.get('tags'))) q.append('tags', t);
  for (const s of f.getAll('state')) q.append('state', s);
  for (const p of f.getAll('priority')) q.append('priority', p);
  for (const k of ['start', 'end']) {
    if (f.get(k)) q.set(k, new Date(f.get(k)).toISOString());
  }
  const params = f.get('params').trim();
  if (params) {
    let obj;
    try {
      obj = JSON.parse(params);
    } catch (e) {
      throw new Error(`params filter is not JSON: ${e.message}`);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('params filter must be a JSON object');
    q.set('params', JSON.stringify(obj));
  }
  q.set('limit', f.get('limit'));
  return q;
}

function applyFilters() {
  let q;
  try {
    q = readFilters($('history-filters'));
  } catch (e) {
    showMessage('filters', 'error', e.message);
    return;
  }
  clearMessage('filters');
  history.query = q;
  history.cursors = [''];
  history.page = 0;
  generation++;
  loadHistoryTracked();
}

async function loadHistory() {
  const gen = generation;
  const q = new URLSearchParams(history.query);
  const cursor = history.cursors[history.page];
  if (cursor) q.set('cursor', cursor);
  const note = $('history-note');
  let data;
  try {
    ({ data } = await api('GET', `/task-history?${q}`));
  } catch (e) {
    if (gen !== generation) return;
    // Without the db plugin there is no history; the rest of the page works.
    if (e.status === 404 || e.status === 503) {
      note.textContent =
        e.status === 404
          ? 'History needs the db plugin, and it is not loaded (see Plugins).'
          : `History is unavailable: the db plugin does not answer (${e.detail}).`;
      note.hidden = false;
      history.rows = [];
      history.nextCursor = '';
      renderHistory();
      return;
    }
    throw e;
  }
  if (gen !== generation) return;
  note.hidden = true;
  history.rows = data.data;
  history.nextCursor = data.cursor || '';
  renderHistory();
}

function loadHistoryTracked() {
  return tracked('history', loadHistory);
}

function renderHistory() {
  const unavailable = !$('history-note').hidden;
  $('history-table').hidden = unavailable;
  $('history-pager').hidden = unavailable;
  $('history-empty').hidden = history.rows.length > 0 || unavailable;
  syncRows($('history-body'), history.rows, (r) => r.id, runCells, (tr, r) => {
    tr.dataset.testid = `run-row-${r.id}`;
    tr.classList.add('clickable');
    tr.classList.toggle('selected', r.id === detail.id);
  });
  $('history-prev').disabled = history.page === 0;
  $('history-next').disabled = !history.nextCursor;
  $('history-page').textContent = `page ${history.page + 1}`;
}

function runCells(r) {
  const id = esc(r.id);
  const cancel = CANCELLABLE.includes(r.state)
    ? `<button type="button" class="danger" data-action="cancel" data-run="${id}" data-testid="run-cancel-${id}">Cancel</button>`
    : '';
  const attempt = r.retry_attempt ? `retry ${esc(r.retry_attempt)}` : '';
  return (
    `<td>${time(r.queued)}</td>` +
    `<td>${esc(r.task)}</td>` +
    `<td>${badge(r.state, `run-state-${r.id}`)}</td>` +
    `<td>${esc(r.priority)}</td>` +
    // A running row's duration grows with each refresh.
    `<td>${r.state === 'running' ? span(r.start, null) : r.end ? span(r.start, r.end) : '—'}</td>` +
    `<td class="muted">${attempt}</td>` +
    `<td><code title="${id}">${id.slice(-8)}</code></td>` +
    `<td class="actions">${cancel}</td>`
  );
}

function cancelRun(id) {
  if (!confirm(`Cancel run ${id}?`)) return;
  return act(`cancel ${id}`, async () => {
    const { status } = await api('POST', `/task-runs/${encodeURIComponent(id)}/cancel`);
    return status === 202 ? `run ${id} is being stopped` : `run ${id} aborted`;
  });
}

$('history-filters').addEventListener('submit', (e) => {
  e.preventDefault();
  applyFilters();
});
// Checkboxes and selects apply at once; text fields on Enter or Apply.
$('history-filters').addEventListener('change', (e) => {
  if (e.target.type === 'checkbox' || e.target.tagName === 'SELECT') applyFilters();
});
$('history-filters').addEventListener('reset', () => setTimeout(applyFilters));
$('history-prev').addEventListener('click', () => {
  if (history.page === 0) return;
  history.page--;
  generation++;
  loadHistoryTracked();
});
$('history-next').addEventListener('click', () => {
  if (!history.nextCursor) return;
  history.cursors[history.page + 1] = history.nextCursor;
  history.page++;
  generation++;
  loadHistoryTracked();
});
$('history-body').addEventListener('click', (e) => {
  const cancel = e.target.closest('[data-action="cancel"]');
  if (cancel) {
    cancelRun(cancel.dataset.run);
    return;
  }
  const row = e.target.closest('tr[data-key]');
  if (row) openDetail(row.dataset.key);
});

// ---------------------------------------------------------------------------------------
// One run (GET /task-runs/{id}: the host's live row; GET /task-history/{id}: the db plugin's)

const detail = { id: null };

function openDetail(id) {
  detail.id = id;
  $('run-detail').hidden = false;
  $('history-row').classList.add('with-detail');
  $('run-detail-id').textContent = id;
  $('run-detail-body').innerHTML = '<p class="muted">loading…</p>';
  renderHistory();
  tracked('detail', loadDetail);
}

function closeDetail() {
  detail.id = null;
  $('run-detail').hidden = true;
  $('history-row').classList.remove('with-detail');
  clearMessage('detail');
  renderHistory();
}

async function loadDetail() {
  const id = detail.id;
  if (!id) return;
  const path = encodeURIComponent(id);
  const [live, stored] = await Promise.allSettled([api('GET', `/task-runs/${path}`), api('GET', `/task-history/${path}`)]);
  if (id !== detail.id) return;
  const run = live.status === 'fulfilled' ? live.value.data : stored.status === 'fulfilled' ? stored.value.data : null;
  if (!run) throw live.reason;
  const historyState =
    stored.status === 'fulfilled'
      ? badge(stored.value.data.state)
      : `<span class="muted">${esc(stored.reason.status === 404 ? 'not in the history' : stored.reason.detail)}</span>`;
  const link = (other) =>
    other && other !== run.id ? `<a href="#" data-run="${esc(other)}"><code>${esc(other.slice(-8))}</code></a>` : '—';
  const rows = [
    ['Task', esc(run.task)],
    ['State', badge(run.state, 'run-detail-state') + (live.status === 'fulfilled' ? '' : ' <span class="muted">(history)</span>')],
    ['In history', historyState],
    ['Priority', esc(run.priority)],
    ['Queued', time(run.queued)],
    ['Start after', time(run.execute_after)],
    ['Started', time(run.start)],
    ['Ended', time(run.end)],
    ['Duration', run.state === 'running' ? span(run.start, null) : run.end ? span(run.start, run.end) : '—'],
    ['Attempts', `retry ${esc(run.retry_attempt)} · rate limit ${esc(run.rate_limit_attempt)}`],
    ['From run', link(run.from_run_id)],
    ['Root run', link(run.root_run_id)],
    ['Tags', (run.tags || []).map((g) => `<span class="tag">${esc(g)}</span>`).join(' ') || '—'],
  ];
  const error = run.error ? `<h3>Error</h3><pre class="error">${esc(run.error)}</pre>` : '';
  const cancel = CANCELLABLE.includes(run.state)
    ? `<button type="button" class="danger" data-action="cancel" data-run="${esc(run.id)}" data-testid="detail-cancel">Cancel run</button>`
    : '';
  $('run-detail-body').innerHTML =
    `<dl>${rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>` +
    error +
    `<h3>Params</h3><pre>${esc(JSON.stringify(run.params, null, 2))}</pre>` +
    cancel;
}

$('run-detail-close').addEventListener('click', closeDetail);
$('run-detail-body').addEventListener('click', (e) => {
  const cancel = e.target.closest('[data-action="cancel"]');
  if (cancel) return cancelRun(cancel.dataset.run);
  const link = e.target.closest('a[data-run]');
  if (link) {
    e.preventDefault();
    openDetail(link.dataset.run);
  }
});

// ---------------------------------------------------------------------------------------
// Plugins (GET /plugins, POST /plugins/{name}/enable)

let plugins = [];

async function loadPlugins() {
  const gen = generation;
  const { data } = await api('GET', '/plugins');
  if (gen !== generation) return;
  plugins = data;
  $('plugins-empty').hidden = plugins.length > 0;
  syncRows($('plugins-body'), plugins, (p) => p.name, pluginCells, (tr, p) => {
    tr.dataset.testid = `plugin-row-${p.name}`;
  });
}

function pluginCells(p) {
  const n = esc(p.name);
  const h = p.health || {};
  const num = (v) => `<td class="num">${v ?? '—'}</td>`;
  const ms = h.calls ? `${h.mean_call_ms.toFixed(2)} / ${h.p99_call_ms.toFixed(2)}` : '—';
  const cpu = h.cpu_ms === undefined ? '—' : (h.cpu_ms / 1000).toFixed(1);
  const reasons = [
    ...new Set([p.error, h.last_error, p.replacement_error && `replacement failed: ${p.replacement_error}`, h.last_limit && `limit: ${h.last_limit}`]),
  ].filter(Boolean);
  // Enable delivers the events held since the quarantine; "skip held events" moves the
  // plugin's checkpoint to the head of the feed first (when those events are what made it fail).
  const enable =
    p.state === 'quarantined'
      ? `<button type="button" data-action="enable" data-plugin="${n}" data-testid="plugin-enable-${n}">Enable</button>` +
        ` <button type="button" class="link" data-action="enable-skip" data-plugin="${n}" data-testid="plugin-enable-skip-${n}">` +
        `Enable, skip held events</button>`
      : '';
  const world = p.world === 'task' ? `<span class="tag">tasks: ${esc((p.tasks || []).join(', '))}</span>` : '';
  return (
    `<td><strong>${n}</strong> <span class="muted">${esc(p.version || '')}</span> ${world}` +
    `<div class="muted small" title="${esc(p.sha256 || '')}">${esc(p.file)}</div></td>` +
    `<td>${badge(p.state, `plugin-state-${p.name}`)}</td>` +
    num(h.calls) +
    num(h.errors) +
    num(h.traps) +
    num(h.events_delivered) +
    num(h.checkpoint) +
    `<td class="num">${ms}</td>` +
    `<td class="num">${cpu}</td>` +
    `<td class="reason">${reasons.map(reason).join('') || '<span class="muted">—</span>'}</td>` +
    `<td class="actions">${enable}</td>`
  );
}

// Errors unfolded by the user, kept open across refreshes.
const unfolded = new Set();

// An error's first line and the end of its last (a wasm trap's cause comes after its
// backtrace), the whole text folded under them.
function reason(text) {
  const [first, ...rest] = text.split('\n');
  if (!rest.length) return `<div>${esc(first)}</div>`;
  const last = rest[rest.length - 1];
  const cause = last.includes('>: ') ? last.slice(last.lastIndexOf('>: ') + 3) : last.trim();
  const open = unfolded.has(text) ? ' open' : '';
  return (
    `<details data-reason="${esc(text)}"${open}><summary>${esc(first)} … ${esc(cause)}</summary>` +
    `<pre>${esc(rest.join('\n'))}</pre></details>`
  );
}

// 'toggle' does not bubble: listen in the capture phase.
$('plugins-body').addEventListener(
  'toggle',
  (e) => {
    const text = e.target.dataset?.reason;
    if (text !== undefined) e.target.open ? unfolded.add(text) : unfolded.delete(text);
  },
  true,
);

function enablePlugin(name, skipEvents) {
  if (skipEvents && !confirm(`Enable ${name} and skip the events it has not handled? It will never see them.`)) return;
  return act(`enable ${name}`, async () => {
    await api('POST', `/plugins/${encodeURIComponent(name)}/enable${skipEvents ? '?skip_events=true' : ''}`);
    return `plugin ${name} enabled${skipEvents ? ', held events skipped' : ''}`;
  });
}

$('plugins-body').addEventListener('click', (e) => {
  const b = e.target.closest('[data-action="enable"], [data-action="enable-skip"]');
  if (b) enablePlugin(b.dataset.plugin, b.dataset.action === 'enable-skip');
});

// ---------------------------------------------------------------------------------------
// Throughput chart (GET /throughput): stacked bars per bucket, inline SVG

async function loadThroughput() {
  const gen = generation;
  const { data } = await api('GET', `/throughput?minutes=${$('throughput-minutes').value}`);
  if (gen !== generation) return;
  $('throughput-chart').innerHTML = chart(data);
}

const SERIES = [
  ['succeeded', 'success'],
  ['failed', 'failure'],
  ['other', 'other'],
];

function chart({ bucket_seconds, buckets }) {
  const W = 720, H = 170, left = 34, bottom = 20, top = 8;
  const plotW = W - left - 4, plotH = H - top - bottom;
  const total = (b) => b.succeeded + b.failed + b.other;
  const peak = Math.max(0, ...buckets.map(total));
  const max = Math.max(4, niceCeil(peak));
  const bw = plotW / Math.max(1, buckets.length);
  const y = (v) => top + plotH - (v / max) * plotH;
  const bars = buckets
    .map((b, i) => {
      let base = 0;
      const x = left + i * bw;
      const rects = SERIES.map(([key, cls]) => {
        const v = b[key];
        if (!v) return '';
        const r = `<rect class="${cls}" x="${x.toFixed(1)}" y="${y(base + v).toFixed(1)}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${((v / max) * plotH).toFixed(1)}"/>`;
        base += v;
        return r;
      }).join('');
      const title = `${clock(b.start)}: ${b.succeeded} succeeded, ${b.failed} failed, ${b.other} other`;
      return `<g><title>${esc(title)}</title><rect class="hit" x="${x.toFixed(1)}" y="${top}" width="${bw.toFixed(1)}" height="${plotH}"/>${rects}</g>`;
    })
    .join('');
  const grid = [0, max / 2, max]
    .map((v) => `<line class="grid" x1="${left}" x2="${W - 4}" y1="${y(v)}" y2="${y(v)}"/><text class="axis" x="${left - 4}" y="${y(v) + 4}" text-anchor="end">${v}</text>`)
    .join('');
  const labels = [0, Math.floor(buckets.length / 2), buckets.length - 1]
    .filter((i) => buckets[i])
    .map((i, k) => {
      const anchor = ['start', 'middle', 'end'][k];
      const x = k === 2 ? W - 4 : left + i * bw;
      return `<text class="axis" x="${x}" y="${H - 4}" text-anchor="${anchor}">${esc(clock(buckets[i].start))}</text>`;
    })
    .join('');
  const sums = Object.fromEntries(SERIES.map(([key]) => [key, buckets.reduce((a, b) => a + b[key], 0)]));
  const legend = SERIES.map(
    ([key, cls]) => `<span class="key"><i class="${cls}"></i>${key} <strong data-testid="throughput-${key}">${sums[key]}</strong></span>`,
  ).join('');
  return (
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="runs finished per ${bucket_seconds} s">${grid}${bars}${labels}</svg>` +
    `<div class="legend">${legend}<span class="muted">per ${bucket_seconds} s; aborted, rate limited and interrupted count as other</span></div>`
  );
}

function niceCeil(v) {
  if (v <= 0) return 0;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= v);
}

$('throughput-minutes').addEventListener('change', () => tracked('throughput', loadThroughput));

// ---------------------------------------------------------------------------------------
// The refresh loop

let timer = null;

async function refresh() {
  clearTimeout(timer);
  await Promise.all([
    tracked('status', loadStatus),
    tracked('tasks', loadTasks),
    loadHistoryTracked(),
    tracked('detail', loadDetail),
    tracked('plugins', loadPlugins),
    tracked('throughput', loadThroughput),
  ]);
  $('refreshed').textContent = `updated ${clock(new Date().toISOString())}`;
  clearTimeout(timer);
  if ($('auto-refresh').checked) timer = setTimeout(refresh, REFRESH_MS);
}

$('auto-refresh').addEventListener('change', refresh);

loadRole().then(refresh);
