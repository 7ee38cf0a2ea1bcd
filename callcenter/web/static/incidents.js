// 停水停电事件 on the desk page: declare a building's outage (also from a ticket: /desk?incident_from=<id>),
// see how many residents called about each, and close it, optionally calling them back (「已恢复供水」).
import { $, fillSelect, fmtShort, fromInputValue, h, request, showFieldErrors, clearFieldErrors } from '/static/app.js';

const section = $('#incidents');
const form = $('#incident-form');
const list = $('#incident-list');
let kinds = {};
let actions = {};

async function load() {
  const { status, data } = await request('/api/incidents');
  if (status !== 200) { section.hidden = true; return; } // engineers: not theirs
  section.hidden = false;
  kinds = data.kinds; actions = data.actions;
  if (!form.elements.kind.options.length) {
    fillSelect(form.elements.kind, Object.entries(kinds));
    fillSelect(form.elements.action, Object.entries(actions));
  }
  $('#incident-count').textContent = `（进行中 ${data.incidents.filter((i) => i.open).length}）`;
  list.replaceChildren(...(data.incidents.length ? data.incidents.map(row)
    : [h('tr', {}, h('td', { colspan: 7, class: 'muted' }, '暂无事件'))]));
}

function row(incident) {
  const where = [incident.buildings.map((b) => (/^\d+$/.test(b) ? `${b}号楼` : `${b}栋`)).join('、'), incident.area]
    .filter(Boolean).join(' ');
  return h('tr', { 'data-id': incident.id, class: incident.open ? 'emergency' : null },
    h('td', { class: 'nowrap' }, incident.kind_name),
    h('td', {}, where),
    h('td', {}, incident.action_name, incident.note ? h('div', { class: 'muted' }, incident.note) : null),
    h('td', { class: 'nowrap' }, incident.expected_end ? fmtShort(incident.expected_end) : '—'),
    h('td', { class: 'nowrap' }, `${fmtShort(incident.opened_at)} ${incident.opened_by}`),
    h('td', { class: 'nowrap caller-count' }, h('button', { type: 'button', class: 'small link', onclick: () => show(incident.id) },
      `${incident.caller_count} 人来电`)),
    h('td', { class: 'nowrap' }, incident.open
      ? [h('button', { type: 'button', class: 'small', onclick: () => close(incident, false) }, '关闭'),
         h('button', { type: 'button', class: 'small primary', onclick: () => close(incident, true) }, '关闭并回电')]
      : `已关闭 ${fmtShort(incident.closed_at)}`));
}

async function show(id) {
  const { status, data } = await request(`/api/incidents/${id}`);
  if (status !== 200) return;
  const box = $('#incident-callers');
  box.hidden = false;
  box.replaceChildren(h('h2', {}, `${data.kind_name} · ${data.caller_count} 位来电`),
    h('table', { class: 'list' }, h('tbody', {}, data.callers.map((c) => h('tr', {},
      h('td', { class: 'nowrap' }, fmtShort(c.at)), h('td', { class: 'nowrap' }, c.phone || '—'),
      h('td', {}, [c.building && `${c.building}号楼`, c.unit && `${c.unit}单元`, c.room].filter(Boolean).join('')),
      h('td', {}, c.words || '—'),
      h('td', {}, c.ticket_id ? h('a', { href: `/tickets/${c.ticket_id}` }, '维修单') : null,
        c.recording ? h('audio', { controls: true, preload: 'none', src: c.recording }) : null),
      h('td', { class: 'nowrap' }, c.call_back_name || ''))))));
}

async function close(incident, callBack) {
  const question = callBack ? `关闭「${incident.kind_name}」并给 ${incident.caller_count} 位来电住户回电告知已恢复？`
    : `关闭「${incident.kind_name}」？`;
  if (!confirm(question)) return;
  const { status, data } = await request(`/api/incidents/${incident.id}/close`, { method: 'POST', body: { call_back: callBack } });
  if (status >= 400) alert(data.error || `操作失败（${status}）`);
  await load();
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  const body = {
    kind: form.elements.kind.value, action: form.elements.action.value, area: form.elements.area.value.trim(), note: form.elements.note.value.trim(),
    buildings: form.elements.buildings.value.split(/[,，、\s]+/).filter(Boolean),
    expected_end: form.elements.expected_end.value ? fromInputValue(form.elements.expected_end.value) : null,
  };
  if (form.elements.ticket_id.value) body.ticket_id = Number(form.elements.ticket_id.value);
  const { status, data } = await request('/api/incidents', { method: 'POST', body });
  if (status === 422) { showFieldErrors(form, data.fields); return; }
  if (status >= 400) { showFieldErrors(form, {}, data.error || `发布失败（${status}）`); return; }
  form.reset();
  form.elements.ticket_id.value = '';
  $('#incident-panel').open = false;
  await load();
});

async function proposeFromTicket() {
  const ticketId = new URLSearchParams(location.search).get('incident_from');
  if (!ticketId || !/^\d+$/.test(ticketId)) return;
  const { status, data } = await request(`/api/tickets/${ticketId}/incident-proposal`);
  if (status !== 200) return;
  $('#incident-panel').open = true;
  form.elements.ticket_id.value = ticketId;
  if (data.kind) form.elements.kind.value = data.kind;
  form.elements.buildings.value = data.buildings.join(',');
  form.elements.area.value = data.area || '';
}

load().then(proposeFromTicket);
setInterval(load, 15000); // caller counts grow as residents call
