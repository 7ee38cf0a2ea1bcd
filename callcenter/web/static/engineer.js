// 我的工单 (phone first): the engineer's open tickets as cards with big buttons, updated live.
import {
  $, api, dueInfo, flash, fmtRange, h, run, showPageError, startPage, statusBadge, urgencyBadge, watchTickets,
} from '/static/app.js';
import { actionButtons, actionForm } from '/static/actions.js';
import { consentPanel } from '/static/consent.js';

const STATUSES = 'dispatched,accepted,on_site,postponed,price_review';
let meta;
let known = new Map(); // ticket id -> updated_at
let openForms = 0; // while a form is open, live reloads wait so the form is not wiped
let pending = false;

function card(ticket) {
  const formArea = h('div', { class: 'form-area' });
  const el = h('article', {
    class: `card${ticket.urgency === 'emergency' ? ' emergency' : ''}`, 'data-id': ticket.id,
    'aria-labelledby': `card-${ticket.id}-title`,
  },
  h('div', { class: 'card-head' },
    h('a', { class: 'number', id: `card-${ticket.id}-title`, href: `/tickets/${ticket.id}` }, ticket.number),
    urgencyBadge(ticket), statusBadge(ticket)),
  h('div', { class: 'address' }, ticket.address || '—'),
  h('p', { class: 'content' }, ticket.description),
  ticket.phone ? h('a', { class: 'button tel', href: `tel:${ticket.phone}` },
    `拨打 ${ticket.reporter_name ? `${ticket.reporter_name} ` : ''}${ticket.phone}`) : null,
  h('p', { class: 'meta-line' }, `预约：${fmtRange(ticket.appointment_start, ticket.appointment_end)}`),
  h('p', { class: 'meta-line' }, '期限：', dueInfo(ticket)),
  ticket.is_paid ? h('p', { class: 'meta-line' }, '有偿维修') : null,
  consentPanel(ticket, {
    onOpen: () => { openForms += 1; },
    onClose: () => { openForms -= 1; if (pending) refresh({ ids: [] }); },
  }),
  actionButtons(ticket, async (action) => {
    if (formArea.firstChild) openForms -= 1;
    const form = await actionForm(ticket, action, meta, {
      onDone: (updated) => {
        openForms -= 1;
        formArea.replaceChildren();
        $('#mine-result').textContent = `${updated.number} 已${action.label}，当前状态：${updated.status_name}`;
        refresh({ ids: [updated.id] });
      },
      onCancel: () => {
        openForms -= 1;
        formArea.replaceChildren();
        if (pending) refresh({ ids: [] });
      },
    });
    openForms += 1;
    formArea.replaceChildren(form);
    form.querySelector('select, input, textarea')?.focus();
  }),
  formArea);
  return el;
}

async function refresh({ ids = null } = {}) {
  if (openForms > 0) {
    pending = true;
    return;
  }
  pending = false;
  let data;
  try {
    data = await api(`/api/tickets?mine=true&status=${STATUSES}`);
  } catch (error) {
    showPageError(error.message);
    return;
  }
  showPageError('');
  const cards = data.tickets.map(card);
  $('#cards').replaceChildren(...cards);
  if (!cards.length) $('#cards').append(h('p', { class: 'empty' }, '暂无待处理的工单'));
  $('#mine-count').textContent = `（${data.total}）`;
  if (ids !== null) {
    data.tickets.forEach((ticket, index) => {
      if (known.get(ticket.id) !== ticket.updated_at || ids.includes(ticket.id)) flash(cards[index]);
    });
  }
  known = new Map(data.tickets.map((ticket) => [ticket.id, ticket.updated_at]));
}

run(async () => {
  ({ meta } = await startPage());
  await refresh();
  const state = $('#live-state');
  watchTickets((ids) => refresh({ ids: ids || [] }), (on) => {
    state.className = `live-state ${on ? 'on' : 'off'}`;
    state.textContent = on ? '实时更新' : '正在重连…';
  });
});
