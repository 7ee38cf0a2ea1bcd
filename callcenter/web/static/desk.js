// 前台队列: the live ticket queue with filters, and the 新建报修 form.
import {
  $, api, clearFieldErrors, fillSelect, flash, fmtShort, fromInputValue, h, request, run,
  showFieldErrors, showPageError, startPage, statusBadge, urgencyBadge, dueInfo, watchTickets,
} from '/static/app.js';
import { proposeFromDescription } from '/static/proposals.js';
import { setUpCallbacks } from '/static/callbacks.js';
import { lateBadge } from '/static/watch.js';

const OPEN = 'draft,received,dispatched,accepted,on_site,postponed,price_review,refused';
const filters = $('#filters');
const form = $('#new-ticket');
let known = new Map(); // ticket id -> updated_at of the rows on screen
let loadSeq = 0;

function query() {
  const params = new URLSearchParams();
  const status = filters.status.value === 'open' ? OPEN : filters.status.value;
  if (status) params.set('status', status);
  if (filters.urgency.value) params.set('urgency', filters.urgency.value);
  if (filters.building.value.trim()) params.set('building', filters.building.value.trim());
  if (filters.overdue.checked) params.set('overdue', 'true');
  if (filters.q.value.trim()) params.set('q', filters.q.value.trim());
  return params.toString();
}

function row(ticket) {
  const classes = [ticket.urgency === 'emergency' && 'emergency', ticket.overdue && 'overdue',
    ticket.eta_late && 'late'].filter(Boolean);
  return h('tr', { 'data-id': ticket.id, class: classes.join(' ') || null },
    h('td', { class: 'nowrap' }, h('a', { href: `/tickets/${ticket.id}` }, ticket.number)),
    h('td', {}, statusBadge(ticket), lateBadge(ticket) ? [' ', lateBadge(ticket)] : null),
    h('td', {}, urgencyBadge(ticket)),
    h('td', { class: 'nowrap' }, ticket.category_name),
    h('td', {}, ticket.address || '—'),
    h('td', { class: 'truncate', title: ticket.description }, ticket.description),
    h('td', { class: 'nowrap' }, fmtShort(ticket.reported_at)),
    h('td', { class: 'nowrap' }, ticket.engineer_name || '—'),
    h('td', { class: 'nowrap' }, dueInfo(ticket)));
}

/** Reload the queue with the current filters; highlight: mark rows that are new or changed. */
async function refresh({ highlight = false, ids = [] } = {}) {
  const seq = ++loadSeq;
  let data;
  try {
    data = await api(`/api/tickets?${query()}`);
  } catch (error) {
    showPageError(error.message);
    return;
  }
  if (seq !== loadSeq) return; // a newer reload is under way
  showPageError('');
  const body = $('#queue tbody');
  const rows = data.tickets.map(row);
  body.replaceChildren(...rows);
  if (!rows.length) body.append(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, '没有符合条件的维修单')));
  $('#queue-count').textContent = `（共 ${data.total} 条${data.total > data.tickets.length ? `，显示前 ${data.tickets.length} 条` : ''}）`;
  if (highlight) {
    data.tickets.forEach((ticket, index) => {
      if (known.get(ticket.id) !== ticket.updated_at || ids.includes(ticket.id)) flash(rows[index]);
    });
  }
  known = new Map(data.tickets.map((ticket) => [ticket.id, ticket.updated_at]));
}

function setUpFilters(meta) {
  fillSelect(filters.status, [['open', '未完结'], ['', '全部'], ...Object.entries(meta.statuses)], 'open');
  fillSelect(filters.urgency, [['', '全部'], ...Object.entries(meta.urgencies)], '');
  let timer;
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(() => refresh(), 300);
  };
  filters.addEventListener('change', () => refresh());
  filters.addEventListener('input', (event) => event.target.type !== 'checkbox' && event.target.tagName === 'INPUT' && later());
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    refresh();
  });
}

// --- 新建报修 ----------------------------------------------------------------------------------

async function setUpForm(meta) {
  fillSelect(form.area, [['', '户内'], ...meta.areas.map((area) => [area, area])], '');
  fillSelect(form.category, Object.entries(meta.categories), 'other');
  fillSelect(form.urgency, Object.entries(meta.urgencies), 'normal');
  try {
    const fees = await api('/api/fees');
    fillSelect(form.fee_item_id, [['', '不选（按实际收费）'], ...fees.filter((fee) => fee.active).map((fee) => [
      fee.id, `${fee.name}（¥${(fee.material_fee + fee.labour_fee).toFixed(2)}/${fee.unit}）`])], '');
  } catch (error) {
    fillSelect(form.fee_item_id, [['', `收费标准加载失败：${error.message}`]], '');
  }
  form.is_paid.addEventListener('change', () => {
    form.fee_item_id.disabled = !form.is_paid.checked;
  });
  form.phone.addEventListener('blur', lookUpResident);
  proposeFromDescription(form, meta, { onPhone: lookUpResident });
  form.addEventListener('reset', () => {
    clearFieldErrors(form);
    $('#nt-phone-hint').textContent = '';
    $('#nt-result').replaceChildren();
    setTimeout(() => {
      form.fee_item_id.disabled = true;
    });
  });
  form.addEventListener('submit', submitTicket);
}

async function lookUpResident() {
  const phone = form.phone.value.trim();
  const hint = $('#nt-phone-hint');
  hint.textContent = '';
  if (phone.replace(/\D/g, '').length < 3) return;
  let answer;
  try {
    answer = await request(`/api/residents?phone=${encodeURIComponent(phone)}`);
  } catch {
    return;
  }
  if (form.phone.value.trim() !== phone) return; // typed on meanwhile
  if (!answer.ok) {
    hint.textContent = answer.status === 404 ? '住户名录中没有这个号码' : '';
    return;
  }
  const resident = answer.data;
  const fill = { reporter_name: resident.name, building: resident.building, unit: resident.unit, room: resident.room };
  for (const [name, value] of Object.entries(fill)) {
    if (value && !form[name].value.trim()) form[name].value = value;
  }
  hint.textContent = `住户名录：${resident.name || ''} ${[resident.building, resident.unit, resident.room].filter(Boolean).join('-')}`;
}

async function submitTicket(event) {
  event.preventDefault();
  clearFieldErrors(form);
  const result = $('#nt-result');
  result.replaceChildren();
  const body = {
    reporter_name: form.reporter_name.value, phone: form.phone.value, building: form.building.value,
    unit: form.unit.value, room: form.room.value, area: form.area.value, category: form.category.value,
    urgency: form.urgency.value, appointment_start: fromInputValue(form.appointment_start.value),
    appointment_end: fromInputValue(form.appointment_end.value), is_paid: form.is_paid.checked,
    fee_item_id: form.is_paid.checked && form.fee_item_id.value ? Number(form.fee_item_id.value) : null,
    description: form.description.value, remarks: form.remarks.value,
  };
  const button = $('#nt-submit');
  button.disabled = true;
  try {
    const { status, data } = await request('/api/tickets', { method: 'POST', body });
    if (status === 201) {
      form.reset();
      result.append(`已受理，单号 `, h('a', { href: `/tickets/${data.id}`, id: 'nt-number' }, data.number));
      form.phone.focus();
      refresh({ highlight: true, ids: [data.id] });
    } else if (status === 422) {
      showFieldErrors(form, data.fields, data.error);
    } else {
      form.querySelector('.form-error').textContent = data.error || `提交失败（${status}）`;
    }
  } catch (error) {
    form.querySelector('.form-error').textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

run(async () => {
  const { meta } = await startPage();
  setUpFilters(meta);
  await Promise.all([setUpForm(meta), refresh(), setUpCallbacks()]);
  const state = $('#live-state');
  watchTickets((ids) => refresh({ highlight: true, ids: ids || [] }), (on) => {
    state.className = `live-state ${on ? 'on' : 'off'}`;
    state.textContent = on ? '实时更新' : '实时更新已断开，正在重连…';
  });
});
