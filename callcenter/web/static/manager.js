// 统计与设置 (manager/admin): figures for a date range, the 17:00 list, the fee standard,
// engineers, the duty roster, and (admin only) staff accounts and the audit log.
import {
  $, api, clearFieldErrors, dueInfo, fillSelect, fmtMoney, fmtPercent, fmtShort, fromInputValue, h, kpi, request, run,
  showFieldErrors, showPageError, startPage, statusBadge, table, todayISO, urgencyBadge, loadEngineers,
} from '/static/app.js';
import { setUpAudit } from '/static/audit.js';
import { setUpFollowups } from '/static/followups.js';
import { followComplaints } from '/static/watch.js';

let meta, me, engineers = [];

// --- figures -------------------------------------------------------------------------------------------

async function loadReport(event) {
  event?.preventDefault();
  const form = $('#report-form');
  clearFieldErrors(form);
  const { ok, data } = await request(`/api/reports/tickets?from=${form.from.value}&to=${form.to.value}`);
  if (!ok) {
    showFieldErrors(form, data.fields, data.error);
    return;
  }
  $('#kpis').replaceChildren(
    kpi('报修总数', data.total),
    kpi('已完成', data.completed),
    kpi('零修及时率', fmtPercent(data.on_time_rate), `${data.on_time} / ${data.completed} 单及时`),
    kpi('回访率', fmtPercent(data.followup_rate), `${data.followed_up} / ${data.visits} 次维修已回访`),
    kpi('满意率', fmtPercent(data.satisfaction_rate), `${data.satisfied} / ${data.followed_up} 次回访满意`));
  const counts = (title, names, values) => h('div', {}, h('h3', {}, title), table(
    [[title.replace('按', '')], ['数量', 'num']],
    Object.entries(names).map(([code, name]) => h('tr', {}, h('td', {}, name), h('td', { class: 'num' }, values[code] || 0)))));
  $('#breakdown').replaceChildren(
    counts('按状态', meta.statuses, data.by_status),
    counts('按类别', meta.categories, data.by_category),
    counts('按紧急程度', meta.urgencies, data.by_urgency));
}

async function loadDaily(event) {
  event?.preventDefault();
  const day = $('#d-day').value;
  let data;
  try {
    data = await api(`/api/reports/daily?day=${day}`);
  } catch (error) {
    $('#daily-summary').textContent = error.message;
    return;
  }
  const kept = data.kept ? `；${fmtShort(data.kept.made_at)} 自动留存的清单：${data.kept.numbers.length} 单` : '';
  $('#daily-summary').textContent = `截至 ${data.day} ${data.cutoff} 仍未完成：${data.tickets.length} 单${kept}`;
  $('#daily-table').replaceChildren(table(
    [['单号'], ['状态'], ['紧急程度'], ['地址'], ['报修内容'], ['报修时间'], ['维修人员'], ['期限']],
    data.tickets.map((t) => h('tr', { class: t.overdue ? 'overdue' : null },
      h('td', { class: 'nowrap' }, h('a', { href: `/tickets/${t.id}` }, t.number)),
      h('td', {}, statusBadge(t)), h('td', {}, urgencyBadge(t)), h('td', {}, t.address),
      h('td', { class: 'truncate', title: t.description }, t.description),
      h('td', { class: 'nowrap' }, fmtShort(t.reported_at)), h('td', {}, t.engineer_name || '—'),
      h('td', { class: 'nowrap' }, dueInfo(t)))),
    '没有未完成的维修单'));
}

// --- the fee standard ------------------------------------------------------------------------------------

let fees = [];
let editingFee = null;

function feeBody(source) {
  return {
    code: source.code, name: source.name, category: source.category, unit: source.unit,
    material_fee: source.material_fee, labour_fee: source.labour_fee, note: source.note,
  };
}

async function loadFees() {
  fees = await api('/api/fees?all=true');
  $('#fee-table').replaceChildren(table(
    [['编号'], ['名称'], ['类别'], ['单位'], ['材料费', 'num'], ['人工费', 'num'], ['合计', 'num'], ['说明'], ['状态'], ['操作']],
    fees.map((fee) => h('tr', { class: fee.active ? null : 'inactive', 'data-id': fee.id },
      h('td', {}, fee.code), h('td', {}, fee.name), h('td', {}, meta.categories[fee.category] || fee.category),
      h('td', {}, fee.unit), h('td', { class: 'num' }, fmtMoney(fee.material_fee)),
      h('td', { class: 'num' }, fmtMoney(fee.labour_fee)),
      h('td', { class: 'num' }, fmtMoney(fee.material_fee + fee.labour_fee)), h('td', {}, fee.note),
      h('td', { class: 'nowrap' }, fee.active ? '使用中' : '已停用'),
      h('td', { class: 'nowrap' },
        h('button', { type: 'button', class: 'small', onclick: () => editFee(fee) }, '编辑'), ' ',
        fee.active
          ? h('button', { type: 'button', class: 'small danger', onclick: () => retireFee(fee) }, '停用')
          : h('button', { type: 'button', class: 'small', onclick: () => saveFee(fee.id, feeBody(fee)) }, '启用')))),
    '还没有收费项目'));
}

function editFee(fee) {
  const form = $('#fee-form');
  clearFieldErrors(form);
  editingFee = fee.id;
  for (const [key, value] of Object.entries(feeBody(fee))) form.elements.namedItem(key).value = value ?? '';
  $('#fee-form-title').textContent = `编辑收费项目：${fee.name}`;
  $('#fee-submit').textContent = '保存';
  $('#fee-cancel').hidden = false;
  form.code.focus();
}

function resetFeeForm() {
  const form = $('#fee-form');
  form.reset();
  clearFieldErrors(form);
  editingFee = null;
  $('#fee-form-title').textContent = '新增收费项目';
  $('#fee-submit').textContent = '添加';
  $('#fee-cancel').hidden = true;
}

async function saveFee(id, body) {
  const form = $('#fee-form');
  const { ok, status, data } = await request(id ? `/api/fees/${id}` : '/api/fees', { method: id ? 'PUT' : 'POST', body });
  if (ok) {
    if (id === editingFee || !id) resetFeeForm();
    $('#fee-result').textContent = `已保存：${data.name}`;
    await loadFees();
  } else if (status === 422) {
    showFieldErrors(form, data.fields, data.error);
  } else {
    showPageError(data.error || `保存失败（${status}）`);
  }
}

async function retireFee(fee) {
  const { ok, status, data } = await request(`/api/fees/${fee.id}`, { method: 'DELETE' });
  if (!ok) showPageError(data.error || `停用失败（${status}）`);
  else $('#fee-result').textContent = `已停用：${fee.name}`;
  await loadFees();
}

function setUpFeeForm() {
  const form = $('#fee-form');
  fillSelect(form.category, Object.entries(meta.categories), 'other');
  form.addEventListener('reset', () => setTimeout(() => { form.category.value = 'other'; }));
  $('#fee-cancel').addEventListener('click', resetFeeForm);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    saveFee(editingFee, feeBody({
      code: form.code.value, name: form.name.value, category: form.category.value, unit: form.unit.value,
      material_fee: form.material_fee.value || 0, labour_fee: form.labour_fee.value || 0, note: form.note.value,
    }));
  });
}

// --- people ----------------------------------------------------------------------------------------------

async function loadEngineerTable() {
  engineers = await loadEngineers(true);
  $('#engineer-table').replaceChildren(table(
    [['姓名'], ['电话'], ['分机 (SIP)'], ['技能'], ['状态']],
    engineers.map((e) => h('tr', { class: e.active ? null : 'inactive' },
      h('td', {}, e.name), h('td', {}, e.phone ? h('a', { href: `tel:${e.phone}` }, e.phone) : '—'),
      h('td', {}, e.sip_uri || '—'), h('td', {}, (e.skills || []).join('、') || '—'),
      h('td', {}, e.active ? '在岗' : '停用'))),
    '还没有维修人员（可用命令行导入）'));
}

// --- the duty roster ---------------------------------------------------------------------------------

// An empty slot is where an emergency at night would ring nobody: each one is a red line.
function gapLine(gap) {
  const who = gap.shift ? `班次「${gap.shift}」的人员都不在岗` : '没有排班';
  return h('p', { class: 'message error gap' },
    `无人值班：${fmtShort(gap.from)} 至 ${fmtShort(gap.to)}，${gap.skill || '全部技能'}（${who}）`);
}

async function loadRoster() {
  const data = await api('/api/roster');
  $('#roster-gaps').replaceChildren(...(data.gaps.length ? data.gaps.map(gapLine)
    : [h('p', { class: 'message ok' }, '未来 7 天每个时段都有人值班')]));
  $('#shift-table').replaceChildren(table(
    [['班次'], ['星期'], ['时间'], ['技能'], ['呼叫顺序（振铃秒数）']],
    data.shifts.map((shift) => h('tr', {},
      h('td', {}, shift.name), h('td', {}, shift.weekdays_text),
      h('td', { class: 'nowrap' }, `${shift.start}–${shift.crosses_midnight ? '次日' : ''}${shift.end}`),
      h('td', {}, shift.skill || '全部'),
      h('td', {}, shift.chain.map((link) => `${link.name}${link.active ? '' : '（已停用）'} ${link.ring_seconds}秒`)
        .join(' → ')))),
    '还没有班次'));
  $('#override-table').replaceChildren(table(
    [['开始'], ['结束'], ['原值班'], ['顶班'], ['备注'], ['登记人'], ['操作']],
    data.overrides.map((override) => h('tr', { 'data-id': override.id },
      h('td', { class: 'nowrap' }, fmtShort(override.from)), h('td', { class: 'nowrap' }, fmtShort(override.to)),
      h('td', {}, override.replaced_name), h('td', {}, override.with_name || '无人顶班'),
      h('td', {}, override.note), h('td', {}, override.created_by),
      h('td', {}, h('button', { type: 'button', class: 'small danger', onclick: () => removeOverride(override) }, '删除')))),
    '没有调班'));
}

async function removeOverride(override) {
  const { ok, status, data } = await request(`/api/roster/overrides/${override.id}`, { method: 'DELETE' });
  if (!ok) showPageError(data.error || `删除失败（${status}）`);
  else $('#override-result').textContent = `已删除：${override.replaced_name} 的调班`;
  await loadRoster();
}

function setUpOverrideForm() {
  const form = $('#override-form');
  const people = engineers.filter((e) => e.active).map((e) => [e.id, e.name]);
  fillSelect(form.elements.namedItem('replace_id'), [['', '请选择'], ...people]);
  fillSelect(form.elements.namedItem('with_id'), [['', '无人顶班'], ...people]);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const field = (name) => form.elements.namedItem(name).value;
    const body = {
      from: fromInputValue(field('from')), to: fromInputValue(field('to')),
      replace_id: Number(field('replace_id')) || null, with_id: Number(field('with_id')) || null, note: field('note'),
    };
    const { status, data } = await request('/api/roster/overrides', { method: 'POST', body });
    if (status === 201) {
      form.reset();
      $('#override-result').textContent = `已登记：${data.with_name || '无人'} 替 ${data.replaced_name} 值班`;
      await loadRoster();
    } else if (status === 422) {
      showFieldErrors(form, data.fields, data.error);
    } else {
      form.querySelector('.form-error').textContent = data.error || `保存失败（${status}）`;
    }
  });
}

async function patchUser(user, body, done) {
  const { ok, status, data } = await request(`/api/users/${user.id}`, { method: 'PATCH', body });
  if (!ok) {
    showPageError(data.fields ? Object.values(data.fields).join('；') : data.error || `修改失败（${status}）`);
    return;
  }
  showPageError('');
  $('#user-result').textContent = done || `已更新账号 ${data.username}`;
  await loadUsers();
}

function passwordCell(user) {
  const input = h('input', { type: 'password', id: `pw-${user.id}`, autocomplete: 'new-password', placeholder: '新密码（至少 8 位）' });
  const form = h('form', { class: 'row-form', hidden: true, novalidate: true },
    h('label', { for: input.id, class: 'sr-only' }, `${user.username} 的新密码`), input,
    h('button', { type: 'submit', class: 'small primary' }, '确认'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    patchUser(user, { password: input.value }, `已重置 ${user.username} 的密码`);
  });
  const toggle = h('button', { type: 'button', class: 'small', onclick: () => {
    form.hidden = !form.hidden;
    if (!form.hidden) input.focus();
  } }, '重置密码');
  return [toggle, form];
}

async function loadUsers() {
  const users = await api('/api/users');
  const engineerName = (id) => engineers.find((e) => e.id === id)?.name || '—';
  $('#user-table').replaceChildren(table(
    [['用户名'], ['姓名'], ['角色'], ['维修人员'], ['状态'], ['操作']],
    users.map((user) => {
      const role = h('select', { class: 'inline', 'aria-label': `${user.username} 的角色`, disabled: user.id === me.id });
      fillSelect(role, Object.entries(meta.roles), user.role);
      role.addEventListener('change', () => patchUser(user, { role: role.value }));
      return h('tr', { class: user.active ? null : 'inactive' },
        h('td', {}, user.username), h('td', {}, user.display_name), h('td', {}, role),
        h('td', {}, user.engineer_id ? engineerName(user.engineer_id) : '—'),
        h('td', {}, user.active ? '启用' : '已停用'),
        h('td', {},
          user.id === me.id ? null : h('button', {
            type: 'button', class: `small${user.active ? ' danger' : ''}`,
            onclick: () => patchUser(user, { active: !user.active }),
          }, user.active ? '停用' : '启用'), ' ', passwordCell(user)));
    })));
}

function setUpUserForm() {
  const form = $('#user-form');
  fillSelect(form.role, Object.entries(meta.roles), 'frontdesk');
  const syncEngineer = () => {
    const isEngineer = form.role.value === 'engineer';
    $('#u-engineer-field').hidden = !isEngineer;
    fillSelect(form.engineer_name, [['', '请选择'], ...engineers.filter((e) => e.active).map((e) => [e.name, e.name])]);
  };
  form.role.addEventListener('change', syncEngineer);
  syncEngineer();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const body = {
      username: form.username.value.trim(), password: form.password.value, role: form.role.value,
      display_name: form.display_name.value.trim(),
      engineer_name: form.role.value === 'engineer' ? form.engineer_name.value : '',
    };
    const { status, data } = await request('/api/users', { method: 'POST', body });
    if (status === 201) {
      form.reset();
      syncEngineer();
      $('#user-result').textContent = `已添加账号 ${data.username}`;
      await loadUsers();
    } else if (status === 422) {
      showFieldErrors(form, data.fields, data.error);
    } else {
      form.querySelector('.form-error').textContent = data.error || `添加失败（${status}）`;
    }
  });
}

run(async () => {
  ({ me, meta } = await startPage());
  const today = todayISO();
  $('#r-from').value = `${today.slice(0, 8)}01`;
  $('#r-to').value = today;
  $('#d-day').value = today;
  $('#report-form').addEventListener('submit', loadReport);
  $('#daily-form').addEventListener('submit', loadDaily);
  setUpFeeForm();
  await Promise.all([followComplaints($('#complaint-table')), loadReport(), loadDaily(), loadFees(), loadEngineerTable(), loadRoster(), setUpFollowups()]);
  setUpOverrideForm();
  if (me.role === 'admin') {
    $('#users').hidden = false;
    $('#users-link').hidden = false;
    setUpUserForm();
    await Promise.all([loadUsers(), setUpAudit()]);
  }
});
