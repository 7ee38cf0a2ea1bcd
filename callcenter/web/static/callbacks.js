// 回拨 on the desk page: callers who hung up before anything was understood (no ticket), one line
// per number (calls within an hour joined), with how far they got and each call's recording, until
// a clerk marks it 已回拨 or 无需回拨. Withheld numbers cannot be called back: only 无需回拨.
import { $, api, fmtShort, h, table } from '/static/app.js';

const REFRESH_MS = 30 * 1000;

function playButton(call) {
  if (!call.recording_url) return h('span', { class: 'muted' }, '无录音');
  return h('button', {
    type: 'button', class: 'small play', title: `${fmtShort(call.at)} ${call.stage_name}`, onclick: (event) => {
      event.currentTarget.replaceWith(h('audio', { controls: '', autoplay: '', src: call.recording_url, class: 'recording' }));
    },
  }, `▶ ${fmtShort(call.at)}`);
}

function numberCell(item) {
  if (item.withheld) return h('span', { class: 'muted' }, '未显示号码（无法回拨）');
  return h('a', { href: `tel:${item.number}` }, item.number);
}

async function mark(item, outcome, row) {
  const status = $('#callbacks-status');
  row.querySelectorAll('button.mark').forEach((b) => { b.disabled = true; });
  try {
    await api(`/api/callbacks/${item.id}`, { method: 'POST', body: { outcome } });
    status.textContent = `${item.number || '未显示号码'} 已标记为${outcome === 'called_back' ? '已回拨' : '无需回拨'}`;
  } catch (error) {
    status.textContent = error.message; // e.g. another clerk marked it first
  }
  await loadCallbacks();
}

function openRow(item) {
  const row = h('tr', { 'data-callback': item.id });
  const actions = h('td', {},
    item.withheld ? null : h('button', { type: 'button', class: 'small primary mark',
      onclick: () => mark(item, 'called_back', row) }, '已回拨'),
    h('button', { type: 'button', class: 'small mark', onclick: () => mark(item, 'not_needed', row) }, '无需回拨'));
  row.append(
    h('td', {}, numberCell(item)),
    h('td', {}, fmtShort(item.last_call_at)),
    h('td', { class: 'num' }, item.calls.length),
    h('td', {}, item.stage_name),
    h('td', {}, item.calls.map(playButton)),
    actions);
  return row;
}

function resolvedRow(item) {
  return h('tr', { 'data-callback': item.id },
    h('td', {}, item.number || '未显示号码'), h('td', {}, fmtShort(item.last_call_at)),
    h('td', { class: 'num' }, item.calls.length), h('td', {}, item.status_name),
    h('td', {}, `${item.resolved_by} ${fmtShort(item.resolved_at)}`));
}

export async function loadCallbacks() {
  const panel = $('#callbacks');
  if (!panel) return;
  let listed;
  try {
    listed = await api('/api/callbacks');
  } catch (error) {
    $('#callbacks-status').textContent = error.message;
    return;
  }
  $('#callbacks-count').textContent = listed.open.length ? `（${listed.open.length}）` : '';
  $('#callbacks-open').replaceChildren(table(
    [['号码'], ['最近来电'], ['次数', 'num'], ['挂机时'], ['录音'], ['处理']],
    listed.open.map(openRow), '没有待回拨的来电'));
  $('#callbacks-resolved').replaceChildren(table(
    [['号码'], ['最近来电'], ['次数', 'num'], ['结果'], ['处理人与时间']],
    listed.resolved.map(resolvedRow), '近 24 小时没有处理记录'));
}

export async function setUpCallbacks() {
  await loadCallbacks();
  setInterval(loadCallbacks, REFRESH_MS);
}
