// Shared by every console page: the JSON API, names and times, safe DOM building, the header bar,
// and the live-update stream. Server text is only ever put into the page as text, never as HTML.

import { TZ } from '/site.js';

export { TZ }; // the site's timezone (settings: timezone), served by the console

// --- building the page safely -------------------------------------------------------------

/** h('a', {href, class}, 'text', child...) — strings become text nodes, so nothing is parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(key.replace(/^on/, ''), value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function option(value, text, selected = false) {
  return h('option', { value, selected }, text);
}

/** Fill a <select> with [value, text] pairs, keeping (or setting) the chosen value. */
export function fillSelect(select, pairs, chosen = select.value) {
  select.replaceChildren(...pairs.map(([value, text]) => option(value, text, String(value) === String(chosen ?? ''))));
}

// --- the JSON API --------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, message, fields = {}) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

function goToLogin() {
  location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
}

/**
 * fetch with JSON in and out: resolves to {ok, status, data}; a 401 sends the user to the login page
 * (unless toLogin is false: a request made in the background must not leave a half-filled form).
 */
export async function request(path, { method = 'GET', body, toLogin = true } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, '无法连接服务器，请检查网络后重试');
  }
  if (response.status === 401 && toLogin && location.pathname !== '/login') {
    goToLogin();
    return new Promise(() => {}); // the page is going away
  }
  let data = {};
  if (response.status !== 204) data = (await response.json().catch(() => null)) ?? {};
  return { ok: response.ok, status: response.status, data };
}

/** GET (or any call) that must succeed: the data, or an ApiError with the server's Chinese message. */
export async function api(path, options) {
  const { ok, status, data } = await request(path, options);
  if (!ok) throw new ApiError(status, data.error || `请求失败（${status}）`, data.fields || {});
  return data;
}

let metaPromise;
export function loadMeta() {
  metaPromise ??= api('/api/meta');
  return metaPromise;
}

let mePromise;
export function loadMe() {
  mePromise ??= api('/api/me');
  return mePromise;
}

let engineersPromise;
export function loadEngineers(refresh = false) {
  if (refresh || !engineersPromise) engineersPromise = api('/api/engineers');
  return engineersPromise;
}

// --- times and money ---------------------------------------------------------------------------

const partsFormat = new Intl.DateTimeFormat('zh-CN', {
  timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
});

function parts(value) {
  if (!value) return null;
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return null;
  const p = {};
  for (const { type, value: v } of partsFormat.formatToParts(date)) p[type] = v;
  return p;
}

/** 「2026-11-23 10:05」 in the site's time, or 「—」. */
export function fmtTime(value) {
  const p = parts(value);
  return p ? `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}` : '—';
}

/** 「11-23 10:05」 (the year only when it is not this year). */
export function fmtShort(value) {
  const p = parts(value);
  if (!p) return '—';
  return p.year === parts(new Date()).year ? `${p.month}-${p.day} ${p.hour}:${p.minute}` : fmtTime(value);
}

/** An appointment window: 「11-23 14:00–16:00」. */
export function fmtRange(start, end) {
  if (!start && !end) return '—';
  const a = parts(start), b = parts(end);
  if (a && b && a.year === b.year && a.month === b.month && a.day === b.day) {
    return `${fmtShort(start)}–${b.hour}:${b.minute}`;
  }
  return `${start ? fmtShort(start) : '—'} 至 ${end ? fmtShort(end) : '—'}`;
}

/** Today's date at the site as YYYY-MM-DD. */
export function todayISO() {
  const p = parts(new Date());
  return `${p.year}-${p.month}-${p.day}`;
}

/** A server time as the value of an <input type="datetime-local"> (the site's wall clock). */
export function toInputValue(value) {
  const p = parts(value);
  return p ? `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}` : '';
}

/** The site's offset from UTC in minutes at an instant (+480 in Shanghai). */
function offsetAt(instant) {
  const p = parts(new Date(instant));
  return (Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - Math.floor(instant / 60000) * 60000) / 60000;
}

/** A datetime-local value (the site's wall clock) as ISO 8601 with the site's offset (+08:00), or null. */
export function fromInputValue(value) {
  if (!value) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value);
  if (!m) return value;
  const wall = Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5]);
  const offset = offsetAt(wall - offsetAt(wall) * 60000); // the offset in force at that wall-clock time
  const hhmm = `${String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0')}:${String(Math.abs(offset) % 60).padStart(2, '0')}`;
  return `${value.length === 16 ? `${value}:00` : value}${offset < 0 ? '-' : '+'}${hhmm}`;
}

export function fmtMoney(value) {
  if (value === null || value === undefined || value === '') return '—';
  return '¥' + Number(value).toFixed(2);
}

export function fmtPercent(rate) {
  return rate === null || rate === undefined ? '—' : `${(rate * 100).toFixed(1).replace(/\.0$/, '')}%`;
}

// --- ticket bits every list shows -------------------------------------------------------------------

export function statusBadge(ticket) {
  if (ticket.status === 'draft' && ticket.channel === 'phone') {
    return h('span', { class: 'badge review' }, '待审核·电话');
  }
  return h('span', { class: `badge st-${ticket.status}` }, ticket.status_name);
}

export function urgencyBadge(ticket) {
  return ticket.urgency === 'emergency'
    ? h('span', { class: 'badge urgent' }, '紧急')
    : h('span', { class: 'badge' }, ticket.urgency_name);
}

/** The SLA deadline, with a red 「超时」 when it has passed. */
export function dueInfo(ticket) {
  return h('span', { class: 'due' },
    h('span', { class: ticket.overdue ? 'overdue-text' : '' }, fmtShort(ticket.due_at)),
    ticket.overdue ? [' ', h('span', { class: 'badge overdue' }, '超时')] : null);
}

// --- tables and figures --------------------------------------------------------------------------------

/** A list table: head is [[text, class?], ...]; with no rows, one line saying `empty`. */
export function table(head, rows, empty = '暂无数据') {
  return h('table', { class: 'list' },
    h('thead', {}, h('tr', {}, head.map(([text, cls]) => h('th', { scope: 'col', class: cls || null }, text)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'empty' }, empty))));
}

/** One big figure with its label and, under it, the counts behind it. */
export function kpi(label, value, detail = '') {
  return h('div', { class: 'kpi' },
    h('div', { class: 'value' }, value), h('div', { class: 'label' }, label),
    detail ? h('div', { class: 'muted' }, detail) : null);
}

// --- forms -----------------------------------------------------------------------------------------------

export function clearFieldErrors(form) {
  form.querySelectorAll('.field-error').forEach((el) => el.remove());
  form.querySelectorAll('[aria-invalid]').forEach((el) => {
    el.removeAttribute('aria-invalid');
    el.removeAttribute('aria-describedby');
  });
  const general = form.querySelector('.form-error');
  if (general) general.textContent = '';
}

/** Put each field's Chinese message next to its input; unknown fields go to the form's .form-error. */
export function showFieldErrors(form, fields = {}, fallback = '') {
  clearFieldErrors(form);
  const general = [];
  let first = null;
  for (const [name, message] of Object.entries(fields)) {
    const input = form.elements.namedItem(name);
    if (!(input instanceof HTMLElement)) {
      general.push(message);
      continue;
    }
    const id = `${input.id || name}-error`;
    const wrap = input.closest('.field') || input.parentElement;
    wrap.append(h('p', { class: 'field-error', id }, message));
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', id);
    first ??= input;
  }
  if (!general.length && fallback && !first) general.push(fallback);
  const box = form.querySelector('.form-error');
  if (box) box.textContent = general.join('；');
  first?.focus();
}

// --- the page frame ----------------------------------------------------------------------------------------

/** A page-level error line under the header (for failures that belong to no form). */
export function showPageError(message) {
  let box = $('#page-error');
  if (!box) {
    box = h('div', { id: 'page-error', class: 'banner error', role: 'alert' });
    ($('.topbar') || document.body.firstElementChild).after(box);
  }
  box.textContent = message;
  box.hidden = !message;
}

async function showHealth() {
  let health;
  try {
    const response = await fetch('/api/health', { headers: { Accept: 'application/json' } });
    health = await response.json();
  } catch {
    return;
  }
  const banners = [];
  if (health.database && health.database !== 'ok') {
    banners.push(h('div', { class: 'banner error', role: 'alert' }, `数据库连接异常：${health.database}`));
  }
  const asr = health.asr;
  if (asr && (asr.state === 'missing' || asr.state === 'broken')) {
    const text = asr.message || (asr.state === 'missing' ? '语音识别模型未安装' : '语音识别模型无法加载');
    banners.push(h('div', { class: 'banner warn', role: 'status', id: 'asr-banner' }, `语音识别：${text}`));
  }
  if (banners.length) $('.topbar').after(...banners);
}

const NAV = [
  { href: '/desk', text: '前台队列', roles: ['frontdesk', 'manager', 'admin'] },
  { href: '/engineer', text: '我的工单', roles: ['engineer'] },
  { href: '/manager', text: '统计', roles: ['manager', 'admin'] },
];

/** Header bar with name, role, links for the role, and 退出. Resolves to {me, meta}. */
export async function startPage() {
  const [me, meta] = await Promise.all([loadMe(), loadMeta()]);
  const links = NAV.filter((link) => link.roles.includes(me.role) || (link.href === '/engineer' && me.engineer_id));
  const logout = async () => {
    await request('/api/logout', { method: 'POST' }).catch(() => null);
    location.assign('/login');
  };
  const bar = h('header', { class: 'topbar' },
    h('span', { class: 'brand' }, `报修热线 · ${meta.property_name}`),
    h('nav', { 'aria-label': '页面' }, links.map((link) => h('a', {
      href: link.href, 'aria-current': location.pathname === link.href ? 'page' : null,
    }, link.text))),
    h('span', { class: 'who' },
      h('span', { id: 'user-name' }, `${me.display_name}（${meta.roles[me.role] || me.role}）`),
      h('button', { type: 'button', id: 'logout', onclick: logout }, '退出')));
  document.body.prepend(bar);
  showHealth();
  return { me, meta };
}

/** Run a page's start function; a failure shows its message instead of a blank page. */
export function run(start) {
  start().catch((error) => {
    console.warn(error);
    showPageError(error.message || '页面加载失败');
  });
}

// --- live updates -------------------------------------------------------------------------------------------

/**
 * Calls onChange(ids) for every `tickets` event of /api/stream, and onChange(null) after a
 * reconnect (events may have been missed then, so the page should reload everything it shows).
 * onState(true|false) tells whether the stream is connected.
 */
export function watchTickets(onChange, onState = () => {}) {
  let source;
  let opened = false;
  const connect = () => {
    source = new EventSource('/api/stream');
    source.addEventListener('open', () => {
      onState(true);
      if (opened) onChange(null);
      opened = true;
    });
    source.addEventListener('tickets', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onChange(Array.isArray(message.ids) ? message.ids : null);
    });
    source.addEventListener('error', () => {
      onState(false);
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (logged out?): check the login, then try again.
        setTimeout(async () => {
          await request('/api/me').catch(() => null);
          connect();
        }, 5000);
      }
    });
  };
  connect();
  window.addEventListener('pagehide', () => source.close());
}

/** Briefly highlight an element that just appeared or changed. */
export function flash(el) {
  el.classList.remove('flash');
  void el.offsetWidth; // restart the animation
  el.classList.add('flash');
  setTimeout(() => el.classList.remove('flash'), 2600);
}
