// 新建报修: the description is read by the hotline's own triage (POST /api/triage) once the clerk
// stops typing, and what it finds (category, urgency with the emergency words marked, address,
// appointment, phone) is proposed item by item. Nothing goes into the form until the clerk takes it
// (采用, or 全部采用), and 全部采用 never replaces what the clerk or the resident directory already put
// in a field: that item says so and offers 改用建议 instead. Fields filled from a proposal are marked
// until the clerk edits them.
import { $, fmtRange, fromInputValue, h, request, toInputValue } from '/static/app.js';

const QUIET_MS = 500; // ask once typing has paused this long: one request per pause, not per keystroke
const DEFAULTS = { category: 'other', urgency: 'normal', area: '' }; // other fields: empty
const FIELDS = ['category', 'urgency', 'building', 'unit', 'room', 'area', 'appointment_start',
  'appointment_end', 'phone'];

function addressText({ building, unit, room, area }) {
  const home = [building && `${building}号楼`, unit && `${unit}单元`, room].filter(Boolean).join('');
  return [home, area].filter(Boolean).join(' ');
}

/** The description `said`, with each emergency word in a <mark> (offsets count characters, as Python does). */
function markedText(said, words) {
  const chars = Array.from(said);
  const parts = [];
  let at = 0;
  for (const word of [...words].sort((a, b) => a.start - b.start)) {
    if (word.start < at) continue;
    parts.push(chars.slice(at, word.start).join(''),
      h('mark', { class: 'emergency-word' }, chars.slice(word.start, word.end).join('')));
    at = word.end;
  }
  parts.push(chars.slice(at).join(''));
  return parts;
}

export function proposeFromDescription(form, meta, { onPhone = () => {} } = {}) {
  const panel = $('#nt-proposals');
  const list = $('#nt-proposal-list');
  const said = $('#nt-said');
  const status = $('#nt-proposal-status');
  const acceptAll = $('#nt-accept-all');
  const ignore = $('#nt-ignore');
  const placed = new Map(); // field name -> the value a proposal put there
  let draft = null; // the latest answer of /api/triage
  let dismissedAs = null; // the proposals as they were when the clerk pressed 忽略
  let lastDrawn = null; // what the list on screen shows
  let timer;
  let asked = 0; // numbers the requests: only the answer to the latest one is shown

  const value = (name) => form[name].value;
  const selectedText = (name) => form[name].selectedOptions[0]?.textContent ?? value(name);
  // The clerk's: a value that is not the default and not what a proposal put there (typed by hand,
  // or filled from the resident directory).
  const isClerks = (name) => value(name).trim() !== (DEFAULTS[name] ?? '') && placed.get(name) !== value(name);

  function proposals() {
    const items = [];
    if (draft.category !== 'other') {
      items.push({ key: 'category', label: '类别', text: meta.categories[draft.category] ?? draft.category,
        fields: [['category', draft.category]], shown: () => selectedText('category') });
    }
    if (draft.urgency === 'emergency') {
      const words = [...new Set(draft.emergency_words.map((word) => word.word))];
      items.push({ key: 'urgency', label: '紧急程度', text: `${meta.urgencies.emergency}（${words.join('、')}）`,
        fields: [['urgency', 'emergency']], shown: () => selectedText('urgency') });
    }
    const address = Object.entries(draft.address).filter(([, part]) => part);
    if (address.length) {
      items.push({ key: 'address', label: '地址', text: addressText(draft.address), fields: address,
        shown: () => addressText(Object.fromEntries(['building', 'unit', 'room', 'area'].map((n) => [n, value(n)]))) });
    }
    if (draft.appointment) {
      const { start, end } = draft.appointment;
      items.push({ key: 'appointment', label: '预约时间', text: fmtRange(start, end),
        fields: [['appointment_start', toInputValue(start)], ['appointment_end', toInputValue(end)]],
        shown: () => fmtRange(fromInputValue(value('appointment_start')), fromInputValue(value('appointment_end'))) });
    }
    if (draft.phone) {
      items.push({ key: 'phone', label: '联系电话', text: draft.phone, fields: [['phone', draft.phone]],
        shown: () => value('phone') });
    }
    return items;
  }

  function state(item) {
    if (item.fields.every(([name, wanted]) => value(name) === wanted)) return 'taken';
    if (item.fields.some(([name, wanted]) => value(name) !== wanted && isClerks(name))) return 'kept';
    return 'open';
  }

  function put(item) {
    for (const [name, wanted] of item.fields) {
      if (name === 'area' && ![...form.area.options].some((o) => o.value === wanted)) {
        form.area.append(h('option', { value: wanted }, wanted)); // a place the list does not name (地下车库)
      }
      form[name].value = wanted;
      placed.set(name, wanted);
    }
    if (item.key === 'phone') onPhone(); // the directory's name and address for that number
  }

  function take(items) {
    items.forEach(put);
    refresh();
  }

  function row(item) {
    const now = state(item);
    const action = {
      taken: h('span', { class: 'state' }, '✓ 已在表单中'),
      open: h('button', { type: 'button', class: 'small', 'aria-label': `采用建议的${item.label}`,
        onclick: () => take([item]) }, '采用'),
      kept: [h('span', { class: 'state' }, `表单已填「${item.shown()}」，未覆盖`),
        h('button', { type: 'button', class: 'small', 'aria-label': `${item.label}改用建议`,
          onclick: () => take([item]) }, '改用建议')],
    }[now];
    return h('li', { class: `proposal ${now}`, 'data-key': item.key },
      h('span', { class: 'what' }, item.label), h('span', { class: 'value' }, item.text), action);
  }

  /** Mark the fields that hold a proposal's value; redraw the proposals against the form as it is now. */
  function refresh() {
    for (const name of FIELDS) {
      const fromProposal = placed.get(name) === value(name) && value(name) !== (DEFAULTS[name] ?? '');
      form[name].classList.toggle('proposed', fromProposal);
      form[name].closest('.field')?.classList.toggle('proposed', fromProposal);
    }
    if (!draft) {
      lastDrawn = null;
      list.replaceChildren();
      said.hidden = true;
      acceptAll.hidden = ignore.hidden = true;
      panel.hidden = !status.textContent;
      return;
    }
    const items = proposals();
    const signature = JSON.stringify(items.map((item) => item.fields));
    if (dismissedAs === signature) {
      panel.hidden = true;
      return;
    }
    dismissedAs = null;
    // Redrawn only when something in it changed: a button replaced between the press and the release
    // of the mouse (the description's change event comes in between) would lose the click.
    const drawn = JSON.stringify([draft.said, items.map((item) => [item.key, item.text, state(item), item.shown()])]);
    if (drawn !== lastDrawn) {
      lastDrawn = drawn;
      list.replaceChildren(...items.map(row));
      if (!items.length) list.append(h('li', { class: 'muted' }, '报修内容中没有识别出类别、紧急情况、地址、时间或电话'));
      said.replaceChildren(h('span', { class: 'what' }, '紧急词'), ' ', ...markedText(draft.said, draft.emergency_words));
    }
    said.hidden = !draft.emergency_words.length;
    acceptAll.hidden = ignore.hidden = !items.length;
    acceptAll.disabled = !items.some((item) => state(item) === 'open');
    panel.hidden = false;
  }

  async function read() {
    const mine = ++asked;
    let answer;
    try {
      answer = await request('/api/triage', {
        method: 'POST', body: { text: form.description.value }, toLogin: false });
    } catch (error) {
      answer = { ok: false, data: { error: error.message } };
    }
    if (mine !== asked) return; // typed on meanwhile: a newer answer is coming
    if (answer.ok) {
      draft = answer.data;
      status.textContent = '';
    } else {
      draft = null;
      status.textContent = answer.status === 401
        ? '登录已过期，无法自动识别：请重新登录（可先复制报修内容）'
        : `自动识别未完成：${answer.data.fields?.text || answer.data.error || `请求失败（${answer.status}）`}`;
    }
    refresh();
  }

  form.description.addEventListener('input', () => {
    clearTimeout(timer);
    if (form.description.value.trim()) {
      timer = setTimeout(read, QUIET_MS);
      return;
    }
    asked += 1; // an answer still on its way is for a text that is gone
    draft = null;
    status.textContent = '';
    refresh();
  });
  // Whatever the clerk changes, each proposal says again whether it is in the form, open or overruled.
  form.addEventListener('input', (event) => event.target !== form.description && refresh());
  form.addEventListener('change', refresh);
  acceptAll.addEventListener('click', () => take(proposals().filter((item) => state(item) === 'open')));
  ignore.addEventListener('click', () => {
    dismissedAs = JSON.stringify(proposals().map((item) => item.fields));
    refresh();
  });
  form.addEventListener('reset', () => {
    clearTimeout(timer);
    asked += 1;
    draft = null;
    dismissedAs = null;
    placed.clear();
    status.textContent = '';
    setTimeout(refresh); // after the browser has put the fields back
  });
}
