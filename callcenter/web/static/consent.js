// 有偿服务：业主同意报价. On a paid ticket's card: whether the resident agreed to the price, and two ways to
// ask before any work starts: a signature on this phone's screen, or a short automated call to the resident.
import {
  TZ, clearFieldErrors, h, request, showFieldErrors,
} from '/static/app.js';

const ASKING = new Set(['dispatched', 'accepted', 'on_site', 'postponed', 'price_review']);

function yuan(value) {
  return value === null || value === undefined ? '' : String(value);
}

const when = (at) => new Date(at).toLocaleString('zh-CN', { timeZone: TZ });

function statusLine(data) {
  const last = data.consents[data.consents.length - 1];
  if (!last) return h('p', { class: 'meta-line consent-state missing' }, '业主尚未同意报价：施工前请取得业主同意');
  const answer = last.agreed ? '已同意' : '不同意';
  return h('p', { class: `meta-line consent-state ${last.agreed ? 'ok' : 'missing'}` },
    `业主${answer}报价 ${last.amount} 元（${last.method_name}，${last.consented_by}，${when(last.at)}）`);
}

// A signature pad: pointer strokes on a canvas, sent as a PNG. `blank()` is true until something is drawn.
function signaturePad(id) {
  const canvas = h('canvas', { id, class: 'signature-pad', width: 600, height: 200, 'aria-label': '业主签名' });
  const pen = canvas.getContext('2d');
  pen.lineWidth = 3;
  pen.lineCap = 'round';
  pen.strokeStyle = '#111';
  let drawing = false;
  let strokes = 0;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
  };
  canvas.addEventListener('pointerdown', (event) => {
    drawing = true;
    strokes += 1;
    canvas.setPointerCapture?.(event.pointerId);
    pen.beginPath();
    pen.moveTo(...at(event));
    event.preventDefault();
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event));
    pen.stroke();
    event.preventDefault();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener('pointerup', stop);
  canvas.addEventListener('pointerleave', stop);
  canvas.style.touchAction = 'none'; // the finger signs; it does not scroll the page
  return {
    canvas,
    blank: () => strokes === 0,
    clear: () => { pen.clearRect(0, 0, canvas.width, canvas.height); strokes = 0; },
    png: () => canvas.toDataURL('image/png'),
  };
}

function signForm(ticket, data, { onDone, onCancel }) {
  const p = `consent-${ticket.id}`;
  const pad = signaturePad(`${p}-pad`);
  const field = (id, label, control) => h('div', { class: 'field' }, h('label', { for: id, class: 'required' }, label), control);
  const form = h('form', { class: 'action-form consent-form', id: `${p}-form`, novalidate: true },
    h('h3', {}, '业主签字确认报价'),
    field(`${p}-amount`, '报价（元）', h('input', {
      id: `${p}-amount`, name: 'amount', type: 'text', inputmode: 'decimal', value: yuan(data.quoted_fee),
    })),
    field(`${p}-name`, '同意人（业主）', h('input', { id: `${p}-name`, name: 'consented_by', type: 'text', value: ticket.reporter_name || '' })),
    h('div', { class: 'field', 'data-field': 'signature' }, h('label', { for: pad.canvas.id, class: 'required' }, '业主签名'), pad.canvas,
      h('input', { type: 'hidden', name: 'signature' })),
    h('p', { class: 'form-error', role: 'alert' }),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', value: 'agree' }, '业主同意'),
      h('button', { type: 'submit', class: 'danger', value: 'refuse' }, '业主不同意'),
      h('button', { type: 'button', onclick: () => pad.clear() }, '重签'),
      h('button', { type: 'button', onclick: onCancel }, '取消')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const body = {
      agreed: event.submitter?.value !== 'refuse',
      amount: form.elements.namedItem('amount').value,
      consented_by: form.elements.namedItem('consented_by').value,
      signature: pad.blank() ? '' : pad.png(),
    };
    const { status, data: answer } = await request(`/api/tickets/${ticket.id}/consents`, { method: 'POST', body });
    if (status === 201) onDone(answer);
    else if (status === 422) showFieldErrors(form, answer.fields, answer.error);
    else form.querySelector('.form-error').textContent = answer.error || `保存失败（${status}）`;
  });
  return form;
}

// Every answer the resident gave, oldest first: what the ticket page keeps after the work is done.
function records(ticket, data) {
  if (!data.consents.length) return null;
  return h('ol', { class: 'consent-records' }, ...data.consents.map((answer) => h('li', { 'data-consent-id': answer.id },
    `${when(answer.at)} 业主${answer.agreed ? '同意' : '不同意'}报价 ${answer.amount} 元`,
    `（${answer.method_name}，${answer.consented_by}；记录：${answer.recorded_by}）`,
    answer.has_signature ? h('a', {
      href: `/api/tickets/${ticket.id}/consents/${answer.id}/signature`, target: '_blank', rel: 'noopener',
    }, ' 查看签名') : null)));
}

/**
 * The consent block of a paid ticket (null for free work). While work may still start it offers the
 * two ways to ask; otherwise it is shown only with ``history`` (the ticket page), read-only.
 * onOpen()/onClose() tell the page a form is open (its live reloads wait meanwhile).
 */
export function consentPanel(ticket, { onOpen = () => {}, onClose = () => {}, history = false } = {}) {
  const asking = ASKING.has(ticket.status);
  if (!ticket.is_paid || !(asking || history)) return null;
  const state = h('div', { class: 'consent-status' }, h('p', { class: 'meta-line muted' }, '正在读取业主同意情况…'));
  const formArea = h('div', { class: 'form-area' });
  const message = h('p', { class: 'message ok', role: 'status' });
  const panel = h('section', { class: 'consent', 'data-ticket': ticket.id, 'aria-label': '业主同意报价' }, state, message, formArea);
  let data = null;

  const close = () => { if (formArea.firstChild) { formArea.replaceChildren(); onClose(); } };
  const load = async () => {
    const { status, data: answer } = await request(`/api/tickets/${ticket.id}/consents`);
    if (status !== 200) {
      state.replaceChildren(h('p', { class: 'meta-line form-error' }, answer.error || `读取失败（${status}）`));
      return;
    }
    data = answer;
    state.replaceChildren(statusLine(data), asking ? h('div', { class: 'actions-bar' },
      h('button', {
        type: 'button', class: 'primary', 'data-consent': 'sign',
        onclick: () => { if (!formArea.firstChild) onOpen(); formArea.replaceChildren(signForm(ticket, data, { onDone: done, onCancel: close })); },
      }, '现场签字确认报价'),
      ticket.phone ? h('button', { type: 'button', 'data-consent': 'call', onclick: call }, '电话确认报价') : null) : null,
    history ? records(ticket, data) : null);
  };
  async function done(answer) {
    close();
    message.textContent = `已记录：业主${answer.agreed ? '同意' : '不同意'}报价 ${answer.amount} 元`;
    await load();
  }
  async function call() {
    const amount = window.prompt('电话确认的报价（元）', yuan(data?.quoted_fee));
    if (amount === null) return;
    const { status, data: answer } = await request(`/api/tickets/${ticket.id}/consent-call`, { method: 'POST', body: { amount } });
    message.textContent = status === 202
      ? `正在致电业主确认报价 ${answer.amount} 元，业主按键后这里会显示结果`
      : (answer.fields ? Object.values(answer.fields).join('；') : answer.error || `呼叫失败（${status}）`);
  }
  load();
  return panel;
}
