// The login page: POST /api/login, then on to ?next= (a path on this site only) or /.
import { request, showFieldErrors, clearFieldErrors } from '/static/app.js';

const form = document.getElementById('login-form');
const submit = document.getElementById('login-submit');

function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '/';
  // Only a path on this site. Checked as the browser will read it, not as text: browsers drop tabs and
  // line breaks and read \ as /, so '/\t/evil.example' would otherwise lead to //evil.example.
  if (!next.startsWith('/') || /[\u0000-\u001f\\]/.test(next)) return '/';
  const url = new URL(next, location.origin);
  return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  submit.disabled = true;
  try {
    const body = { username: form.username.value.trim(), password: form.password.value };
    const { ok, status, data } = await request('/api/login', { method: 'POST', body });
    if (ok) {
      location.assign(nextPath());
      return;
    }
    if (status === 422) showFieldErrors(form, data.fields, data.error);
    else form.querySelector('.form-error').textContent = data.error || `登录失败（${status}）`;
    form.password.select();
  } catch (error) {
    form.querySelector('.form-error').textContent = error.message;
  } finally {
    submit.disabled = false;
  }
});
