// One 维修单: its fields by stage, SLA, history, the actions the server allows, corrections and notes.
import {
  $, api, clearFieldErrors, dueInfo, fillSelect, flash, fmtMoney, fmtRange, fmtTime, fromInputValue, h,
  loadEngineers, request, run, showFieldErrors, showPageError, startPage, statusBadge, toInputValue,
  urgencyBadge, watchTickets,
} from '/static/app.js';
import { actionButtons, actionForm } from '/static/actions.js';
import { createCalloutPanel } from '/static/callout.js';
import { consentPanel } from '/static/consent.js';
import { renderCalls } from '/static/calls.js';
import { renderWatch } from '/static/watch.js';

const ticketId = Number(location.pathname.split('/')[2]);
const EDITORS = ['frontdesk', 'manager', 'admin'];
const CONSENT_READERS = ['engineer', 'frontdesk', 'manager']; // api_consent.FIELD_ROLES
const FIELD_LABELS = {
  description: '报修内容', reporter_name: '报修人', phone: '联系电话', building: '楼栋', unit: '单元',
  room: '房号', area: '公共区域', category: '类别', urgency: '紧急程度', appointment_start: '预约开始',
  appointment_end: '预约结束', is_paid: '有偿', is_vip: 'VIP', remarks: '备注',
};
const TEXT_FIELDS = ['reporter_name', 'phone', 'building', 'unit', 'room', 'remarks'];
const TIME_FIELDS = ['appointment_start', 'appointment_end'];

let meta, me, ticket, fees = [], engineers = [];
let callout; // the 紧急呼叫 panel
let busy = false; // an action form or the editor is open: live changes wait for the user

const yesNo = (value) => (value ? '是' : '否');

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([label, value]) => [
    h('dt', {}, label), h('dd', {}, value === null || value === undefined || value === '' ? '—' : value)]));
}

function render() {
  document.title = `维修单 ${ticket.number} · 报修热线`;
  $('#ticket-title').textContent = `维修单 ${ticket.number}`;
  $('#ticket-status').replaceChildren(statusBadge(ticket),
    ticket.cancel_reason_name ? h('span', { class: 'muted' }, ` ${ticket.cancel_reason_name}`) : '');
  $('#ticket-urgency').replaceChildren(urgencyBadge(ticket));
  $('#ticket-due').replaceChildren(...(ticket.due_at ? ['处理期限 ', dueInfo(ticket)] : []));
  $('#print-link').href = `/tickets/${ticket.id}/print`;
  const fee = fees.find((item) => item.id === ticket.fee_item_id);
  $('#report-view').replaceChildren(facts([
    ['单号', ticket.number], ['来源', ticket.channel_name], ['报修人', ticket.reporter_name],
    ['联系电话', ticket.phone ? h('a', { href: `tel:${ticket.phone}` }, ticket.phone) : ''],
    ['地址', ticket.address], ['类别', ticket.category_name], ['紧急程度', ticket.urgency_name],
    ['报修内容', ticket.description], ['报修时间', fmtTime(ticket.reported_at)], ['接报人', ticket.received_by],
    ['预约时间', fmtRange(ticket.appointment_start, ticket.appointment_end)],
    ['有偿', ticket.is_paid ? `是${ticket.quoted_fee !== null ? `，报价 ${fmtMoney(ticket.quoted_fee)}` : '（待评审定价）'}` : '否'],
    ticket.fee_item_id ? ['收费项目', fee ? fee.name : `#${ticket.fee_item_id}`] : null,
    ['VIP', yesNo(ticket.is_vip)], ['备注', ticket.remarks],
  ]));
  $('#dispatch-view').replaceChildren(facts([
    // (the transition answer may lack engineer_name right after 派单: fall back to the engineer list)
    ['维修人员', ticket.engineer_name || engineers.find((e) => e.id === ticket.engineer_id)?.name],
    ['派单时间', fmtTime(ticket.dispatched_at)],
    ['接单时间', fmtTime(ticket.accepted_at)], ['到场时间', fmtTime(ticket.arrived_at)],
    ticket.postponed_until ? ['暂缓至', fmtTime(ticket.postponed_until)] : null,
    ['处理期限', ticket.due_at ? dueInfo(ticket) : '—'],
  ]));
  const total = ticket.material_fee === null && ticket.labour_fee === null ? null
    : (ticket.material_fee || 0) + (ticket.labour_fee || 0);
  $('#result-view').replaceChildren(facts([
    ['完成时间', fmtTime(ticket.completed_at)], ['实际维修项目', ticket.actual_item],
    ['材料费', fmtMoney(ticket.material_fee)], ['人工费', fmtMoney(ticket.labour_fee)], ['合计', fmtMoney(total)],
    ['客户提供材料', ticket.material_check ? meta.material_checks[ticket.material_check] || ticket.material_check : '—'],
    ['客户签名确认', ticket.completed_at ? yesNo(ticket.customer_confirmed) : '—'],
  ]));
  $('#followup-view').replaceChildren(facts([
    ['回访结果', ticket.rating],
    ticket.cancel_reason ? ['撤单原因', ticket.cancel_reason_name || ticket.cancel_reason] : null,
  ]));
  renderCalls($('#calls-view'), ticket.calls);
  renderWatch($('#watch-panel'), ticket, me, (updated) => { ticket = updated; render(); });
  const consent = CONSENT_READERS.includes(me.role) ? consentPanel(ticket, {
    history: true, onOpen: () => { busy = true; }, onClose: () => { busy = false; catchUp(); } }) : null;
  $('#consent-panel').hidden = !consent;
  $('#consent-panel .consent-view').replaceChildren(...(consent ? [consent] : []));
  callout.refresh();
  $('#edit-button').hidden = !EDITORS.includes(me.role);
  renderActions();
  renderTimeline();
}

function renderActions() {
  $('#action-form-area').replaceChildren();
  $('#actions').replaceChildren(actionButtons(ticket, openAction));
}

async function openAction(action) {
  $('#action-result').textContent = '';
  const form = await actionForm(ticket, action, meta, {
    onDone: (updated) => {
      busy = false;
      ticket = updated;
      render();
      $('#action-result').textContent = `已${action.label}，当前状态：${ticket.status_name}`;
      flash($('#ticket-status'));
    },
    onCancel: () => {
      busy = false;
      $('#action-form-area').replaceChildren();
      catchUp();
    },
  });
  busy = true;
  $('#action-form-area').replaceChildren(form);
  form.querySelector('select, input, textarea')?.focus();
}

// --- history ---------------------------------------------------------------------------------------

function valueText(key, value) {
  if (value === null || value === undefined || value === '') return '（空）';
  if (typeof value === 'boolean') return yesNo(value);
  if (key === 'category') return meta.categories[value] || value;
  if (key === 'urgency') return meta.urgencies[value] || value;
  if (TIME_FIELDS.includes(key)) return fmtTime(value);
  return String(value);
}

function eventTitle(event) {
  if (event.kind === 'created') return `新建维修单 → ${event.to_name}`;
  if (event.kind === 'edit') return '修改信息';
  if (event.kind === 'note') return '备注';
  if (event.kind === 'call') return '电话报修（自动记录）';
  if (event.kind === 'callout') return '紧急呼叫';
  if (event.kind === 'followup') return '回访电话';
  if (event.kind === 'alert') return '⚠ 提醒主管';
  if (event.kind === 'complaint') return '投诉';
  if (event.kind === 'eta_slip') return '到场超时';
  if (event.from_status === event.to_status && event.data?.engineer) return `改派（${event.to_name}）`;
  return `${event.from_name} → ${event.to_name}`;
}

function eventDetails(event) {
  const lines = [];
  const data = event.data || {};
  if (data.engineer) {
    const previous = engineers.find((e) => e.id === data.engineer.previous_id);
    lines.push(previous && data.engineer.previous_id !== data.engineer.id
      ? `维修人员：${previous.name} → ${data.engineer.name}` : `维修人员：${data.engineer.name}`);
  }
  if (event.reason) {
    lines.push(event.to_status === 'cancelled'
      ? `撤单原因：${meta.cancel_reasons[event.reason] || event.reason}` : `原因：${event.reason}`);
  }
  if (data.completion) {
    const c = data.completion;
    lines.push(`实际维修项目：${c.actual_item}；材料费 ${fmtMoney(c.material_fee)}；人工费 ${fmtMoney(c.labour_fee)}`
      + `${c.material_check ? `；客户提供材料：${meta.material_checks[c.material_check] || c.material_check}` : ''}`
      + `；客户签名确认：${yesNo(c.customer_confirmed)}`);
  }
  if (data.rating) lines.push(`回访结果：${data.rating}`);
  if (data.postponed_until) lines.push(`暂缓至 ${fmtTime(data.postponed_until)}`);
  if (event.note) {
    lines.push(['note', 'call', 'callout', 'followup', 'alert', 'complaint', 'eta_slip'].includes(event.kind) ? event.note : `备注：${event.note}`);
  }
  const changes = data.changes
    ? h('ul', { class: 'changes' }, Object.entries(data.changes).map(([key, change]) => h('li', {},
      `${FIELD_LABELS[key] || key}：${valueText(key, change.from)} → ${valueText(key, change.to)}`)))
    : null;
  return [lines.map((line) => h('p', { class: 'detail' }, line)), changes];
}

function renderTimeline() {
  $('#timeline').replaceChildren(...(ticket.events || []).map((event) => h('li', { class: `kind-${event.kind}` },
    h('div', { class: 'when' }, fmtTime(event.at), ' · ', event.actor),
    h('div', { class: 'what' }, eventTitle(event)),
    eventDetails(event))));
}

// --- corrections ------------------------------------------------------------------------------------

function editor() {
  const form = $('#edit-form');
  const input = (name, type = 'text') => h('input', { id: `ed-${name}`, name, type });
  const select = (name, pairs) => {
    const el = h('select', { id: `ed-${name}`, name });
    fillSelect(el, pairs, '');
    return el;
  };
  const field = (name, control, extra = '') => h('div', { class: `field ${extra}` },
    h('label', { for: control.id }, FIELD_LABELS[name]), control);
  const check = (name) => h('div', { class: 'field check' }, input(name, 'checkbox'),
    h('label', { for: `ed-${name}` }, FIELD_LABELS[name]));
  form.replaceChildren(
    h('div', { class: 'grid' },
      field('description', h('textarea', { id: 'ed-description', name: 'description', rows: 3 }), 'wide'),
      TEXT_FIELDS.filter((n) => n !== 'remarks').map((name) => field(name, input(name, name === 'phone' ? 'tel' : 'text'))),
      field('area', select('area', [['', '户内'], ...meta.areas.map((a) => [a, a])])),
      field('category', select('category', Object.entries(meta.categories))),
      field('urgency', select('urgency', Object.entries(meta.urgencies))),
      TIME_FIELDS.map((name) => field(name, input(name, 'datetime-local'))),
      check('is_paid'), check('is_vip'),
      field('remarks', input('remarks'), 'wide')),
    h('p', { class: 'form-error', role: 'alert' }),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary' }, '保存修改'),
      h('button', { type: 'button', onclick: closeEditor }, '取消')));
  form.addEventListener('submit', saveEdit);
}

function original(name) {
  if (TIME_FIELDS.includes(name)) return toInputValue(ticket[name]);
  if (name === 'is_paid' || name === 'is_vip') return Boolean(ticket[name]);
  return ticket[name] ?? '';
}

function openEditor() {
  const form = $('#edit-form');
  clearFieldErrors(form);
  for (const name of Object.keys(FIELD_LABELS)) {
    const el = form.elements.namedItem(name);
    if (el.type === 'checkbox') el.checked = original(name);
    else el.value = original(name);
  }
  busy = true;
  form.hidden = false;
  $('#report-view').hidden = true;
  $('#edit-button').disabled = true;
  form.description.focus();
}

function closeEditor() {
  busy = false;
  $('#edit-form').hidden = true;
  $('#report-view').hidden = false;
  $('#edit-button').disabled = false;
  catchUp();
}

async function saveEdit(event) {
  event.preventDefault();
  const form = $('#edit-form');
  const changes = {};
  for (const name of Object.keys(FIELD_LABELS)) {
    const el = form.elements.namedItem(name);
    const now = el.type === 'checkbox' ? el.checked : el.value;
    if (now === original(name) || (typeof now === 'string' && now.trim() === String(original(name)).trim())) continue;
    changes[name] = TIME_FIELDS.includes(name) ? fromInputValue(now) : now;
  }
  if (!Object.keys(changes).length) {
    form.querySelector('.form-error').textContent = '没有修改任何内容';
    return;
  }
  // With the version the form was filled from: a change somebody made meanwhile is not overwritten (409).
  const { status, data } = await request(`/api/tickets/${ticket.id}`, { method: 'PATCH', body: { ...changes, version: ticket.version } });
  if (status === 200) {
    ticket = data;
    closeEditor();
    render();
    $('#action-result').textContent = '已保存修改';
  } else if (status === 422) {
    showFieldErrors(form, data.fields, data.error);
  } else {
    form.querySelector('.form-error').textContent = data.error || `保存失败（${status}）`;
  }
}

// --- notes and live changes ------------------------------------------------------------------------------

async function addNote(event) {
  event.preventDefault();
  const form = $('#note-form');
  clearFieldErrors(form);
  const { status, data } = await request(`/api/tickets/${ticket.id}/notes`, { method: 'POST', body: { note: form.note.value } });
  if (status === 201 || status === 200) {
    form.reset();
    ticket = data;
    busy ? renderTimeline() : render();
  } else if (status === 422) {
    showFieldErrors(form, data.fields, data.error);
  } else {
    form.querySelector('.form-error').textContent = data.error || `添加失败（${status}）`;
  }
}

let stale = false;

async function reload() {
  try {
    const fresh = await api(`/api/tickets/${ticketId}`);
    // A call-out's rings add events without touching the ticket's own fields.
    const changed = fresh.updated_at !== ticket?.updated_at || fresh.status !== ticket?.status
      || fresh.events.length !== ticket?.events.length;
    ticket = fresh;
    showPageError('');
    return changed;
  } catch (error) {
    showPageError(error.message);
    return false;
  }
}

/** After a form closes: show what others changed meanwhile. */
async function catchUp() {
  if (!stale) return;
  stale = false;
  $('#live-notice').hidden = true;
  if (await reload()) render();
}

async function onLive(ids) {
  if (ids && !ids.includes(ticketId)) return;
  if (busy) {
    stale = true;
    const notice = $('#live-notice');
    notice.replaceChildren('此维修单刚被他人更新，完成或取消当前操作后将显示最新内容。');
    notice.hidden = false;
    return;
  }
  if (await reload()) {
    render();
    flash($('#ticket-status'));
  }
}

run(async () => {
  ({ me, meta } = await startPage());
  [fees, engineers] = await Promise.all([
    api('/api/fees').catch(() => []), loadEngineers().catch(() => []), reload()]);
  if (!ticket) return;
  callout = createCalloutPanel($('#callout-panel'), {
    me, getTicket: () => ticket, onTicket: (updated) => { ticket = updated; render(); } });
  editor();
  $('#edit-button').addEventListener('click', openEditor);
  $('#note-form').addEventListener('submit', addNote);
  render();
  watchTickets(onLive);
});
