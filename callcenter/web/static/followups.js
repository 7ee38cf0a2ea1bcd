// 回访 on the manager's page: the month's 回访率, 满意率 and 返修率 with the counts behind them, per
// category and engineer; the unhappy and failed follow-ups that need a person; last week's calls
// with the resident's answers and the recording one click away.
import { $, api, fmtPercent, fmtShort, h, kpi, table, todayISO } from '/static/app.js';

const WEEK_MS = 7 * 24 * 3600 * 1000;

const ticketLink = (f) => h('a', { href: `/tickets/${f.ticket_id}` }, f.ticket_number);

function answerText(f) {
  const solved = f.resolved === null ? '' : (f.resolved ? '已解决' : '未解决');
  return [solved, f.rating].filter(Boolean).join('，') || '—';
}

// Why a person has to look at it: what the resident said, or how the calls went.
function reason(f) {
  if (f.status === 'failed') return `回访失败：拨打 ${f.attempts} 次，最后一次${f.last_outcome_name || '未接通'}`;
  return `${answerText(f)}${f.comment ? `：「${f.comment}」` : ''}`;
}

// The recording loads only when asked for (a week of calls is a lot of audio); from the comment if there is one.
function playButton(f) {
  if (!f.recording_url) return '—';
  const start = f.comment_start ? `#t=${f.comment_start}` : '';
  return h('button', {
    type: 'button', class: 'small play', onclick: (event) => {
      const audio = h('audio', { controls: '', autoplay: '', src: f.recording_url + start, class: 'recording' });
      event.currentTarget.replaceWith(audio);
    },
  }, '▶ 播放');
}

function breakdown(title, rows) {
  return h('div', {}, h('h3', {}, title), table(
    [[title.replace('按', '')], ['完成', 'num'], ['回访率', 'num'], ['满意率', 'num'], ['返修率', 'num']],
    rows.map((r) => h('tr', {},
      h('td', {}, r.name), h('td', { class: 'num' }, r['完成数']), h('td', { class: 'num' }, fmtPercent(r['回访率'])),
      h('td', { class: 'num' }, fmtPercent(r['满意率'])), h('td', { class: 'num' }, fmtPercent(r['返修率'])))),
    '本月没有完成的维修'));
}

async function loadFigures(event) {
  event?.preventDefault();
  const month = $('#f-month').value;
  const path = `/api/reports/followups?month=${month}`;
  $('#followup-csv').href = `${path}&format=csv`;
  let report;
  try {
    report = await api(path);
  } catch (error) {
    $('#followup-form .form-error').textContent = error.message;
    return;
  }
  $('#followup-form .form-error').textContent = '';
  $('#followup-kpis').replaceChildren(
    kpi('回访率', fmtPercent(report['回访率']), `${report['回访数']} / ${report['完成数']} 次维修已回访`),
    kpi('满意率', fmtPercent(report['满意率']), `${report['满意数']} / ${report['回访数']} 次回访满意`),
    kpi('返修率', fmtPercent(report['返修率']), `${report['返修数']} / ${report['完成数']} 次维修返修`));
  $('#followup-breakdown').replaceChildren(
    breakdown('按类别', report.by_category), breakdown('按维修人员', report.by_engineer));
}

async function loadLists() {
  const weekAgo = new Date(Date.now() - WEEK_MS).toISOString();
  const [waiting, recent] = await Promise.all([
    api('/api/followups?needs_person=true'),
    api(`/api/followups?status=done,failed,opted_out&from=${encodeURIComponent(weekAgo)}`),
  ]);
  $('#followup-attention').replaceChildren(table(
    [['单号'], ['地址'], ['维修人员'], ['情况'], ['维修单现状'], ['时间']],
    waiting.map((f) => h('tr', { class: f.status === 'done' ? 'overdue' : null },
      h('td', { class: 'nowrap' }, ticketLink(f)), h('td', {}, f.address), h('td', {}, f.engineer_name || '—'),
      h('td', {}, reason(f)), h('td', {}, h('span', { class: `badge st-${f.ticket_status}` }, f.ticket_status_name)),
      h('td', { class: 'nowrap' }, fmtShort(f.updated_at)))),
    '没有需要人工处理的回访'));
  $('#followup-recent').replaceChildren(table(
    [['时间'], ['单号'], ['电话'], ['结果'], ['问题解决与评价'], ['住户意见'], ['录音']],
    recent.map((f) => h('tr', {},
      h('td', { class: 'nowrap' }, fmtShort(f.updated_at)), h('td', { class: 'nowrap' }, ticketLink(f)),
      h('td', { class: 'nowrap' }, f.phone || '—'), h('td', {}, f.status_name), h('td', {}, answerText(f)),
      h('td', {}, f.comment || '—'), h('td', {}, playButton(f)))),
    '最近 7 天没有回访记录'));
}

export async function setUpFollowups() {
  $('#f-month').value = todayISO().slice(0, 7);
  $('#followup-form').addEventListener('submit', loadFigures);
  await Promise.all([loadFigures(), loadLists()]);
}
