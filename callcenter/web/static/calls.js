// The calls behind a ticket: where they came from, the recording (whole, or one answer at a time),
// the transcript with words the recognizer was unsure of marked, and what the caller confirmed.
import { fmtTime, h } from '/static/app.js';

const LOW_CONFIDENCE = 0.6;
const STEPS = { problem: '报修内容', address: '地址', time: '预约时间' };
const CONFIRMED = { address: '地址（语音确认）', address_keypad: '地址（按键输入）', summary: '报修摘要' };
const DIRECTIONS = { inbound: '来电', outbound: '外呼' };

function transcriptLine(utterance) {
  if (!utterance.words || utterance.words.length === 0) {
    return utterance.text || (utterance.keys ? `按键 ${utterance.keys}` : '（未识别，请听录音）');
  }
  return utterance.words.map((word) => (word.conf < LOW_CONFIDENCE
    ? h('mark', { class: 'low-conf', title: `识别置信度 ${word.conf.toFixed(2)}，请听录音核对` }, word.word)
    : word.word));
}

function playSpan(audio, start, end) {
  audio.currentTime = start;
  audio.play();
  const stop = () => {
    if (audio.currentTime >= end) {
      audio.pause();
      audio.removeEventListener('timeupdate', stop);
    }
  };
  audio.addEventListener('timeupdate', stop);
}

function callPanel(call) {
  const audio = call.recording_url
    ? h('audio', { controls: '', preload: 'none', src: call.recording_url, class: 'recording' }) : null;
  const utterances = call.transcript?.utterances || [];
  const confirmed = call.transcript?.confirmed || [];
  return h('div', { class: 'call', id: `call-${call.id}` },
    h('p', { class: 'call-head' },
      `${DIRECTIONS[call.direction] || call.direction} ${call.caller || '未知号码'} → 线路 ${call.line}`,
      h('span', { class: 'muted' }, ` · ${fmtTime(call.started_at)} · ${call.outcome_name}`)),
    audio || h('p', { class: 'muted' }, '无录音'),
    confirmed.length ? h('p', {}, '来电人已确认：', confirmed.map((c) => CONFIRMED[c] || c).join('、')) : null,
    utterances.length ? h('ol', { class: 'utterances' }, utterances.map((u) => h('li', {},
      h('span', { class: 'step' }, `${STEPS[u.step] || u.step}：`),
      h('span', { class: 'said' }, transcriptLine(u)),
      audio && u.end > u.start ? h('button', { type: 'button', class: 'small', onclick: () => playSpan(audio, u.start, u.end) },
        `▶ ${u.start.toFixed(1)}–${u.end.toFixed(1)} 秒`) : null))) : null);
}

export function renderCalls(container, calls) {
  container.closest('section').hidden = !calls || calls.length === 0;
  container.replaceChildren(...(calls || []).map(callPanel));
}
