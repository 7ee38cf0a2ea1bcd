// 投诉 and 到场超时 on the console: the ticket page's panel (a manager marks a complaint handled, the
// desk stops a late arrival's apology call), the queue's 晚到 badge, and the manager's complaint list.
import { fmtShort, fmtTime, h, request, table, watchTickets } from '/static/app.js';

const MANAGERS = ['manager', 'admin'];
const DESK = ['frontdesk', 'manager', 'admin'];

/** The queue's mark for a ticket whose engineer is late (null if not). */
export function lateBadge(ticket) {
  return ticket.eta_late ? h('span', { class: 'badge late', title: `承诺到场 ${fmtShort(ticket.eta_slip.promised_at)}` }, '晚到') : null;
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([label, value]) => [
    h('dt', {}, label), h('dd', {}, value === null || value === undefined || value === '' ? '—' : value)]));
}

/** The ticket page's 投诉与到场提醒 panel; onTicket(updated) after a button worked. */
export function renderWatch(section, ticket, me, onTicket) {
  const { complaint, eta_slip: slip } = ticket;
  section.hidden = !complaint && !slip;
  const message = h('p', { class: 'form-error', role: 'alert' });
  const post = async (path, body) => {
    const { ok, data } = await request(path, { method: 'POST', body });
    if (ok) onTicket(data); else message.textContent = data.error || '操作失败';
  };
  const parts = [];
  if (complaint) {
    const note = h('input', { type: 'text', id: 'complaint-note', placeholder: '处理说明（可选）', maxlength: 500 });
    parts.push(h('h3', {}, complaint.open ? h('span', { class: 'badge overdue' }, '投诉未处理') : '投诉（已处理）'),
      facts([['登记时间', fmtTime(complaint.opened_at)], ['住户意见', complaint.reason],
        ['处理时限', fmtTime(complaint.due_at)], ['主管电话提醒', `${complaint.escalation_name}（${fmtShort(complaint.escalate_at)}）`],
        complaint.escalation_result ? ['致电结果', complaint.escalation_result] : null,
        complaint.handled_at ? ['处理', `${complaint.handled_by} ${fmtTime(complaint.handled_at)} ${complaint.handled_note}`] : null]),
      complaint.open && MANAGERS.includes(me.role) ? h('div', { class: 'form-actions' }, note,
        h('button', { type: 'button', class: 'primary', id: 'complaint-handled',
          onclick: () => post(`/api/tickets/${ticket.id}/complaint/handled`, { note: note.value }) }, '标记为已处理')) : null);
  }
  if (slip) {
    parts.push(h('h3', {}, ticket.eta_late ? h('span', { class: 'badge late' }, '维修人员晚到') : '到场超时提醒'),
      facts([['承诺到场', fmtTime(slip.promised_at)], ['发现超时', fmtTime(slip.detected_at)],
        ['致歉电话', slip.status === 'pending' ? `${slip.status_name}（${fmtShort(slip.call_at)} 拨出）` : slip.status_name],
        slip.outcome_name ? ['结果', slip.outcome_name] : null]),
      slip.can_stop && DESK.includes(me.role) ? h('div', { class: 'form-actions' },
        h('button', { type: 'button', id: 'eta-call-stop',
          onclick: () => post(`/api/tickets/${ticket.id}/eta-call/stop`) }, '取消致歉电话')) : null);
  }
  section.querySelector('.watch-body').replaceChildren(...parts, message);
}

/** The manager page's list: open complaints first. */
export async function loadComplaints(container) {
  const { ok, data } = await request('/api/complaints');
  if (!ok) {
    container.replaceChildren(h('p', { class: 'form-error' }, data.error || '无法读取投诉'));
    return;
  }
  container.replaceChildren(table(
    [['单号'], ['状态'], ['地址'], ['住户意见'], ['登记'], ['处理时限'], ['主管电话提醒'], ['处理']],
    data.map((c) => h('tr', { class: c.open ? 'overdue' : null },
      h('td', { class: 'nowrap' }, h('a', { href: `/tickets/${c.ticket_id}` }, c.ticket_number)),
      h('td', { class: 'nowrap' }, c.open ? h('span', { class: 'badge overdue' }, '未处理') : '已处理'),
      h('td', {}, c.address), h('td', { class: 'truncate', title: c.reason }, c.reason),
      h('td', { class: 'nowrap' }, fmtShort(c.opened_at)), h('td', { class: 'nowrap' }, fmtShort(c.due_at)),
      h('td', {}, c.escalation_name), h('td', {}, c.handled_at ? `${c.handled_by} ${fmtShort(c.handled_at)}` : '—'))),
    '没有投诉'));
}

/** The list, kept up to date as tickets change (a follow-up call opens one, a manager handles one). */
export async function followComplaints(container) {
  await loadComplaints(container);
  watchTickets(() => loadComplaints(container));
}
