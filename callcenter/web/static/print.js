// The paper 维修单 (A4): the ticket's fields in the order of the printed form, blanks to fill by hand.
import { $, api, fmtMoney, fmtRange, fmtTime, h, loadMeta } from '/static/app.js';

const ticketId = Number(location.pathname.split('/')[2]);

/** One table row of label/value pairs: [[label, value, {class, colspan}] ...]. */
function row(...cells) {
  return h('tr', {}, cells.map(([label, value, options = {}]) => [
    h('th', { scope: 'row' }, label),
    h('td', { class: options.class || null, colspan: options.colspan || null }, value ?? '')]));
}

function render(meta, t) {
  document.title = `维修单 ${t.number} · 打印`;
  $('#property-name').textContent = meta.property_name;
  $('#p-number').textContent = t.number;
  $('#p-printed').textContent = fmtTime(new Date());
  const hasFees = t.material_fee !== null || t.labour_fee !== null;
  const total = hasFees ? (t.material_fee || 0) + (t.labour_fee || 0) : null;
  const money = (value) => (hasFees ? fmtMoney(value ?? 0) : '');
  const appointment = t.appointment_start || t.appointment_end ? fmtRange(t.appointment_start, t.appointment_end) : '';
  $('#p-rows').replaceChildren(
    row(['报修人', t.reporter_name], ['联系电话', t.phone]),
    row(['房号/地址', t.address, { colspan: 3 }]),
    row(['报修内容', t.description, { colspan: 3, class: 'tall' }]),
    row(['报修时间', fmtTime(t.reported_at)], ['接报人', t.received_by]),
    row(['预约维修时间', appointment], ['紧急程度', t.urgency_name]),
    row(['维修人', t.engineer_name || ''], ['完成时间', t.completed_at ? fmtTime(t.completed_at) : '']),
    row(['实际维修项目', t.actual_item || '', { colspan: 3, class: 'tall' }]),
    row(['收费', h('span', {}, `材料费：${money(t.material_fee)}`, h('span', { class: 'gap' }, '　　'),
      `人工费：${money(t.labour_fee)}`, h('span', { class: 'gap' }, '　　'), `合计：${hasFees ? fmtMoney(total) : ''}`), { colspan: 3 }]),
    row(['客户提供材料验证', t.material_check ? meta.material_checks[t.material_check] || t.material_check
      : Object.values(meta.material_checks).map((name) => `□${name}`).join('　'), { colspan: 3 }]),
    row(['客户签名', '', { class: 'sign' }], ['日期', '', { class: 'sign' }]),
    row(['备注', t.remarks || '', { colspan: 3, class: 'tall' }]),
  );
}

async function start() {
  $('#print-button').addEventListener('click', () => window.print());
  try {
    const [meta, ticket] = await Promise.all([loadMeta(), api(`/api/tickets/${ticketId}`)]);
    render(meta, ticket);
  } catch (error) {
    const box = $('#print-error');
    box.textContent = error.message;
    box.hidden = false;
  }
}

start();
