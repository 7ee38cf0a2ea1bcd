// 紧急呼叫 on the ticket page: start one (紧急派单), watch it go down the duty chain live, stop it,
// or give the ticket to someone in the chain by hand.
import { fmtTime, h, request } from '/static/app.js';

const DESK = ['frontdesk', 'manager', 'admin'];
const WAITING_FOR_ENGINEER = ['draft', 'received', 'dispatched'];
const POLL_MS = 2000; // while ringing: the ring itself is no ticket event, so ask

export function createCalloutPanel(section, { me, getTicket, onTicket }) {
  const view = section.querySelector('.callout-view');
  let callout = null;
  let timer = null;
  let error = '';

  const canStart = () => DESK.includes(me.role) && WAITING_FOR_ENGINEER.includes(getTicket().status)
    && callout?.state !== 'ringing';

  async function refresh() {
    const { status, data } = await request(`/api/tickets/${getTicket().id}/callout`);
    callout = status === 200 ? data : null;
    render();
    clearTimeout(timer);
    if (callout?.state === 'ringing') timer = setTimeout(refresh, POLL_MS);
  }

  async function act(path, options, after) {
    error = '';
    const { status, data } = await request(path, options);
    if (status >= 400) error = data.error || `操作失败（${status}）`;
    else if (after) await after(data);
    await refresh();
  }

  const start = () => act(`/api/tickets/${getTicket().id}/callout`, { method: 'POST' });

  function stop() {
    const reason = prompt('停止紧急呼叫的原因（可不填）：', '') ?? null;
    if (reason === null) return;
    act(`/api/tickets/${getTicket().id}/callout?reason=${encodeURIComponent(reason)}`, { method: 'DELETE' });
  }

  function handTo(link) {
    if (!confirm(`停止紧急呼叫，并把维修单直接派给 ${link.name}？`)) return;
    const ticket = getTicket();
    const move = ticket.status === 'dispatched'
      ? { to: 'dispatched', engineer_id: link.engineer_id, reason: '紧急呼叫中前台手动指定' }
      : { to: 'dispatched', engineer_id: link.engineer_id, note: '紧急呼叫中前台手动指定' };
    act(`/api/tickets/${ticket.id}/callout?reason=${encodeURIComponent(`手动派给${link.name}`)}`, { method: 'DELETE' },
      async () => {
        if (ticket.status === 'draft') {
          const received = await request(`/api/tickets/${ticket.id}/transitions`, { method: 'POST', body: { to: 'received' } });
          if (received.status !== 200) { error = received.data.error; return; }
        }
        const moved = await request(`/api/tickets/${ticket.id}/transitions`, { method: 'POST', body: move });
        if (moved.status === 200) onTicket(moved.data);
        else error = moved.data.error || `派单失败（${moved.status}）`;
      });
  }

  function warning() {
    if (!callout) return null;
    if (callout.state === 'exhausted') {
      return h('p', { class: 'message error', role: 'alert' },
        '无人接单！链上所有人员均未接听或拒绝，已通知主管。请立即电话联系值班人员。');
    }
    if (callout.state === 'ringing' && !callout.line_configured) {
      return h('p', { class: 'message error', role: 'alert' },
        '未配置外呼线路（callout.line），系统无法拨打电话，请人工电话通知值班人员。');
    }
    return null;
  }

  function attemptsTable() {
    if (!callout.attempts.length) return h('p', { class: 'muted' }, '正在拨打第一位……');
    return h('div', { class: 'table-wrap' }, h('table', { class: 'list attempts' },
      h('thead', {}, h('tr', {}, ['呼叫对象', '号码', '开始', '结果', '振铃'].map((t) => h('th', {}, t)))),
      h('tbody', {}, callout.attempts.map((a) => h('tr', { class: a.outcome ? `outcome-${a.outcome}` : 'ringing' },
        h('td', {}, a.step), h('td', {}, a.contact), h('td', {}, fmtTime(a.started_at)),
        h('td', {}, a.outcome_name), h('td', {}, a.rang_seconds === null ? '—' : `${Math.round(a.rang_seconds)} 秒`))))));
  }

  function render() {
    const ticket = getTicket();
    section.hidden = !DESK.includes(me.role) || (!callout && !WAITING_FOR_ENGINEER.includes(ticket.status));
    const parts = [];
    if (error) parts.push(h('p', { class: 'message error', role: 'alert' }, error));
    if (callout) {
      const who = callout.state === 'accepted' && callout.engineer_name ? `：${callout.engineer_name}` : '';
      parts.push(h('p', { class: `callout-state state-${callout.state}` },
        h('strong', { id: 'callout-state' }, `${callout.state_name}${who}`),
        h('span', { class: 'muted' }, ` · ${fmtTime(callout.started_at)} 由 ${callout.started_by} 发起`,
          callout.shift ? `，班次 ${callout.shift}` : '')));
      parts.push(warning(), attemptsTable());
      if (callout.state === 'ringing') {
        parts.push(h('div', { class: 'form-actions' },
          h('button', { type: 'button', id: 'callout-stop', class: 'danger', onclick: stop }, '停止呼叫'),
          callout.chain.map((link) => h('button', { type: 'button', onclick: () => handTo(link) }, `派给 ${link.name}`))));
      }
    }
    if (canStart()) {
      parts.push(h('div', { class: 'form-actions' }, h('button', { type: 'button', id: 'callout-start', class: 'danger',
        onclick: start }, callout ? '重新紧急派单' : '紧急派单')));
    }
    view.replaceChildren(...parts.filter(Boolean));
  }

  return { refresh };
}
