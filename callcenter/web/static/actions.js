// The ticket's action buttons and the small inline form each action opens (ticket page and engineer page).
import {
  clearFieldErrors, fillSelect, fromInputValue, h, loadEngineers, request, showFieldErrors,
} from '/static/app.js';

function field(id, label, control, { required = false, check = false } = {}) {
  const labelEl = h('label', { for: id, class: required ? 'required' : null }, label);
  return check ? h('div', { class: 'field check' }, control, labelEl) : h('div', { class: 'field' }, labelEl, control);
}

/**
 * A row of buttons, one per action the server offers for this ticket and user.
 * onPick(action) is called when one is pressed.
 */
export function actionButtons(ticket, onPick) {
  if (!ticket.actions?.length) return h('p', { class: 'muted' }, '当前没有可执行的操作');
  return h('div', { class: 'actions-bar' }, ticket.actions.map((action) => h('button', {
    type: 'button', class: action.to === 'cancelled' || action.to === 'refused' ? 'danger' : 'primary',
    'data-to': action.to, onclick: () => onPick(action),
  }, action.label)));
}

/**
 * The form for one action: asks only what that action needs, plus an optional note.
 * onDone(ticket) gets the ticket the server returns; onCancel() closes the form.
 */
export async function actionForm(ticket, action, meta, { onDone, onCancel }) {
  const p = `act-${ticket.id}`;
  const parts = [];
  if (action.needs_engineer) {
    const select = h('select', { id: `${p}-engineer`, name: 'engineer_id' });
    const engineers = (await loadEngineers()).filter((e) => e.active);
    fillSelect(select, [['', '请选择维修人员'], ...engineers.map((e) => [
      e.id, `${e.name}${e.id === ticket.engineer_id ? '（当前）' : ''}${e.skills?.length ? ` · ${e.skills.join('、')}` : ''}`])], '');
    parts.push(field(select.id, '维修人员', select, { required: true }));
  }
  if (action.needs_cancel_reason) {
    const select = h('select', { id: `${p}-cancel`, name: 'reason' });
    fillSelect(select, [['', '请选择撤单原因'], ...Object.entries(meta.cancel_reasons)], '');
    parts.push(field(select.id, '撤单原因', select, { required: true }));
  } else if (action.needs_reason) {
    parts.push(field(`${p}-reason`, '原因', h('textarea', { id: `${p}-reason`, name: 'reason', rows: 2 }), { required: true }));
  }
  if (action.needs_rating) {
    const select = h('select', { id: `${p}-rating`, name: 'rating' });
    fillSelect(select, [['', '请选择回访结果'], ...meta.ratings.map((r) => [r, r])], '');
    parts.push(field(select.id, '回访结果', select, { required: true }));
  }
  if (action.needs_completion) {
    const check = h('select', { id: `${p}-check`, name: 'material_check' });
    fillSelect(check, [['', '—'], ...Object.entries(meta.material_checks)], '');
    parts.push(
      field(`${p}-item`, '实际维修项目', h('input', { id: `${p}-item`, name: 'actual_item', type: 'text', value: ticket.actual_item || '' }), { required: true }),
      field(`${p}-material`, '材料费（元）', h('input', { id: `${p}-material`, name: 'material_fee', type: 'number', min: 0, step: '0.01', inputmode: 'decimal' })),
      field(`${p}-labour`, '人工费（元）', h('input', { id: `${p}-labour`, name: 'labour_fee', type: 'number', min: 0, step: '0.01', inputmode: 'decimal' })),
      field(check.id, '客户提供材料验证', check),
      field(`${p}-confirmed`, '客户已签名确认', h('input', { id: `${p}-confirmed`, name: 'customer_confirmed', type: 'checkbox' }), { check: true }),
    );
  }
  if (action.to === 'postponed') {
    parts.push(field(`${p}-until`, '暂缓至', h('input', { id: `${p}-until`, name: 'postponed_until', type: 'datetime-local' })));
  }
  parts.push(field(`${p}-note`, '备注（选填）', h('textarea', { id: `${p}-note`, name: 'note', rows: 2 })));

  const submit = h('button', { type: 'submit', class: action.to === 'cancelled' ? 'danger' : 'primary' }, `确认${action.label}`);
  const form = h('form', { class: 'action-form', id: `${p}-form`, 'data-to': action.to, novalidate: true },
    h('h3', {}, action.label),
    parts,
    h('p', { class: 'form-error', role: 'alert' }),
    h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', onclick: onCancel }, '取消')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const value = (name) => form.elements.namedItem(name)?.value ?? null;
    const number = (name) => (value(name) === null || value(name) === '' ? null : Number(value(name)));
    const body = {
      to: action.to, note: value('note'), reason: value('reason'), engineer_id: number('engineer_id'),
      rating: value('rating'), actual_item: value('actual_item'), material_fee: number('material_fee'),
      labour_fee: number('labour_fee'), material_check: value('material_check'),
      customer_confirmed: form.elements.namedItem('customer_confirmed')?.checked ?? false,
      postponed_until: fromInputValue(value('postponed_until')),
      version: ticket.version, // as shown: if somebody changed the ticket since, the server says what (409)
    };
    submit.disabled = true;
    try {
      const { status, data } = await request(`/api/tickets/${ticket.id}/transitions`, { method: 'POST', body });
      if (status === 200) onDone(data);
      else if (status === 422) showFieldErrors(form, data.fields, data.error);
      else form.querySelector('.form-error').textContent = data.error || `操作失败（${status}）`;
    } catch (error) {
      form.querySelector('.form-error').textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
