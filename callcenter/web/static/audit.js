// 审计日志 (admin only, on the manager's page): logins, failed logins, account changes, recordings played.
import { $, api, fillSelect, fmtTime, h, showPageError, table } from '/static/app.js';

const TARGETS = { call: '通话', user: '账号' };

function target(value) {
  const [kind, id] = (value || '').split(':');
  return TARGETS[kind] ? `${TARGETS[kind]} ${id}` : value || '—';
}

function detail(entry) {
  const data = entry.detail || {};
  if (entry.action === 'recording') return data.ticket_id ? `维修单 ${data.ticket_id}` : '';
  if (entry.action === 'user_changed' || entry.action === 'user_created') {
    return Object.entries(data).filter(([key]) => key !== 'username')
      .map(([key, value]) => `${key}: ${typeof value === 'object' && value !== null ? `${value.from ?? '—'} → ${value.to ?? '—'}` : value}`)
      .concat(data.username ? [`账号 ${data.username}`] : []).join('；');
  }
  return data.rehashed ? '密码已按新参数重新加密' : '';
}

async function loadAudit(event) {
  event?.preventDefault();
  const form = $('#audit-form');
  const query = new URLSearchParams({ limit: '100' });
  if (form.action_filter.value) query.set('action', form.action_filter.value);
  if (form.audit_user.value.trim()) query.set('username', form.audit_user.value.trim());
  try {
    const data = await api(`/api/audit?${query}`);
    $('#audit-summary').textContent = `共 ${data.total} 条，显示最近 ${data.entries.length} 条`;
    $('#audit-table').replaceChildren(table(
      [['时间'], ['操作'], ['用户'], ['来源地址'], ['对象'], ['说明']],
      data.entries.map((entry) => h('tr', { class: entry.action === 'login_failed' ? 'inactive' : null },
        h('td', {}, fmtTime(entry.at)), h('td', {}, entry.action_name), h('td', {}, entry.username || '—'),
        h('td', {}, entry.address || '—'), h('td', {}, target(entry.target)), h('td', {}, detail(entry)))),
      '暂无记录'));
  } catch (error) {
    showPageError(error.message);
  }
}

export async function setUpAudit() {
  const form = $('#audit-form');
  const { actions } = await api('/api/audit?limit=0');
  fillSelect(form.action_filter, [['', '全部操作'], ...Object.entries(actions)], '');
  form.addEventListener('submit', loadAudit);
  $('#audit').hidden = false;
  $('#audit-link').hidden = false;
  await loadAudit();
}
