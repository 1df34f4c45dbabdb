// Fathom dashboards: draws a page from one call to /api/v1/pages/{page}.
// Everything is built with DOM nodes and textContent (data is never parsed
// as HTML); charts are SVG with a text label on every mark, so nothing is
// told by colour alone. The filters live in the query string, so a link
// reproduces the view.
import { setNavigate, DRAW, SVG, dateText, drawTable, el, label, linked } from './draw.js';

(function () {
  // The pages as the server declares them: [name, path, title].
  const PAGES = JSON.parse(document.body.dataset.pages || '[]').map((p) => [p.name, p.path, p.title]);
  const ROWS_TITLES = {
    deployments: 'Deployments',
    changes: 'Changes',
    failed_deployments: 'Failed deployments',
    incidents: 'Incidents',
    quarantine: 'Quarantined records',
    unattributed: 'Unattributed rows',
  };


  // ---- state in the URL ----------------------------------------------

  function currentPage() {
    const path = location.pathname.replace(/\/+$/, '') || '/';
    if (path === '/rows') return 'rows';
    const page = PAGES.find(([, p]) => p === path);
    return page ? page[0] : 'overview';
  }
  function filters() {
    const q = new URLSearchParams(location.search);
    return {
      window: (q.get('window') || '30').replace(/d$/, ''),
      env: q.get('env') || 'all',
      benchmark: q.get('benchmark') || '',
      team: q.get('team') || '',
      service: q.get('service') || '',
      q,
    };
  }
  function withFilters(path, f, extra) {
    const q = new URLSearchParams();
    if (f.window !== '30') q.set('window', f.window);
    if (f.env !== 'all') q.set('env', f.env);
    if (f.benchmark) q.set('benchmark', f.benchmark);
    for (const [k, v] of Object.entries(extra || {})) if (v) q.set(k, v);
    const s = q.toString();
    return s ? path + '?' + s : path;
  }
  function navigate(event) {
    const a = event.currentTarget;
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    // getAttribute: an SVG link's `href` property is not a string.
    const url = new URL(a.getAttribute('href'), location.href);
    if (url.origin !== location.origin) return;
    event.preventDefault();
    history.pushState(null, '', url.pathname + url.search);
    render(true);
  }
  window.addEventListener('popstate', () => render(false));

  // ---- the API -------------------------------------------------------

  class AuthError extends Error {}
  function token() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem('fathom.token', decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem('fathom.token');
  }
  function headers(accept) {
    const h = { Accept: accept || 'application/json' };
    const t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  }
  async function getJSON(path) {
    const response = await fetch(path, { headers: headers() });
    if (response.status === 401) throw new AuthError('sign in');
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    return body;
  }
  // A failed export (403, 500, …) is shown in the panel, never saved as
  // if its error body were the CSV.
  async function downloadCsv(panel, f, scope, section) {
    const q = new URLSearchParams({ window: f.window + 'd', env: f.env, scope: scope || 'org' });
    const previous = section.querySelector('p.csv-error');
    if (previous) previous.remove();
    let response;
    try {
      response = await fetch('/api/v1/panels/' + panel.id + '?' + q, { headers: headers('text/csv') });
    } catch (e) {
      section.appendChild(el('p', { class: 'error csv-error', role: 'alert', text: 'CSV download failed: ' + e.message }));
      return;
    }
    if (!response.ok) {
      let message = response.statusText;
      try {
        const body = await response.json();
        if (body.error) message = body.error.message;
      } catch (_) { /* not JSON: keep the status text */ }
      section.appendChild(el('p', { class: 'error csv-error', role: 'alert', text: 'CSV download failed: ' + message }));
      return;
    }
    const blob = await response.blob();
    const a = el('a', { href: URL.createObjectURL(blob), download: panel.id + '.csv' });
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // ---- chrome: navigation and filters --------------------------------

  function renderNav(page, f) {
    const nav = document.getElementById('nav');
    nav.replaceChildren(
      ...PAGES.map(([name, path, title]) =>
        el('a', {
          href: withFilters(path, f, { team: name === 'team' || name === 'overview' || name === 'adoption' || name === 'cost' ? f.team : '', service: name === 'service' ? f.service : '' }),
          'aria-current': name === page ? 'page' : null,
          onclick: navigate,
          text: title,
        })
      )
    );
  }
  function select(name, title, value, choices) {
    const s = el('select', { name, id: 'filter-' + name });
    for (const [v, text] of choices) s.appendChild(el('option', { value: v, selected: v === value, text }));
    s.addEventListener('change', () => {
      const q = new URLSearchParams(location.search);
      if (s.value) q.set(name, s.value);
      else q.delete(name);
      const search = q.toString();
      history.pushState(null, '', location.pathname + (search ? '?' + search : ''));
      render(false);
    });
    return el('label', { for: 'filter-' + name }, title, s);
  }
  function renderFilters(page, f, data) {
    const form = document.getElementById('filters');
    form.onsubmit = (e) => e.preventDefault();
    if (!data || page === 'health') {
      form.hidden = true;
      return;
    }
    const o = data.options;
    const parts = [
      select('window', 'Window', f.window, o.windows.map((w) => [String(w), w + ' days'])),
      select('env', 'Environment', f.env, o.environments.map((e) => [e, e === 'all' ? 'All production' : e])),
      select('benchmark', 'Benchmark', f.benchmark || data.filters.benchmark, o.benchmarks.map((b) => [b, b])),
    ];
    // Adoption is by calendar month: only the scope applies; anomalies
    // and cost have a window but no environment or benchmark.
    if (page === 'adoption') parts.length = 0;
    if (page === 'anomalies' || page === 'cost') parts.length = 1;
    if (page === 'overview' || page === 'team' || page === 'adoption' || page === 'anomalies' || page === 'cost') {
      const teams = o.teams.map((t) => [t, t.replace(/^group:default\//, '')]);
      const whole = page !== 'team';
      const none = whole ? (o.organisation ? [['', 'Whole organisation']] : []) : [['', 'Choose a team']];
      parts.push(select('team', 'Team', f.team || (whole && !o.organisation ? data.filters.scope : ''), none.concat(teams)));
    }
    if (page === 'service') {
      parts.push(select('service', 'Service', f.service, [['', 'Choose a service']].concat(o.services.map((s) => [s, s.replace(/^component:default\//, '')]))));
    }
    form.replaceChildren(...parts);
    form.hidden = false;
  }

  setNavigate(navigate);

  // ---- pages ---------------------------------------------------------

  function scopeOf(page, f) {
    if (page === 'service') return f.service;
    if (page === 'team' || page === 'overview' || page === 'adoption' || page === 'anomalies' || page === 'cost') return f.team;
    return '';
  }
  function heading(page, data) {
    const title = PAGES.find(([p]) => p === page)[2];
    const scope = data.filters.scope;
    const named = page === 'team' || page === 'service' || ((page === 'overview' || page === 'adoption' || page === 'anomalies' || page === 'cost') && scope !== 'org') ? ' — ' + scope.replace(/^(group|component):default\//, '') : '';
    const env = data.filters.environment === 'all' ? 'all production environments' : data.filters.environment;
    return [
      el('h1', { text: title + named }),
      el('p', { class: 'as-of', text: page === 'health' ? 'Sources, runs and rejected records.' : page === 'adoption' ? 'Portal use per calendar month; numbers about fewer than k people are withheld.' : page === 'anomalies' ? 'Anomalies under way in the last ' + data.filters.window_days + ' days of scored data; each day judged only by the days before it.' : page === 'cost' ? 'Daily cost in the last ' + data.filters.window_days + ' days of scored data; months by billing period, the last complete one against the month before.' : 'Last ' + data.filters.window_days + ' days to ' + (data.as_of ? dateText(data.as_of, true) : 'now') + ', ' + env + ', tiers by ' + data.filters.benchmark + '.' }),
    ];
  }
  function choices(page, data, f) {
    const kind = data.needs;
    const list = kind === 'team' ? data.options.teams : data.options.services;
    return el('section', { class: 'panel' },
      el('h2', { text: 'Choose a ' + kind }),
      el('ul', { class: 'choices' },
        list.map((ref) => el('li', {}, el('a', { href: withFilters(page === 'team' ? '/team' : '/service', f, { [kind]: ref }), onclick: navigate, text: ref.replace(/^(group|component):default\//, '') })))));
  }
  async function renderPage(main, page, f) {
    const q = new URLSearchParams({ window: f.window, env: f.env });
    if (f.benchmark) q.set('benchmark', f.benchmark);
    const scope = scopeOf(page, f);
    if (scope) q.set('scope', scope);
    const data = await getJSON('/api/v1/pages/' + page + '?' + q);
    // Fathom counts its own adoption: the view (page and path, never the
    // filters) goes to the portal-events intake, unless the server says
    // not to. Fire and forget: a failed report never hinders the page.
    if (data.options && data.options.report_page_views) {
      fetch('/api/v1/usage/page-views', {
        method: 'POST',
        headers: Object.assign(headers(), { 'content-type': 'application/json' }),
        body: JSON.stringify({ page, path: location.pathname }),
      }).catch(() => {});
    }
    renderFilters(page, f, data);
    const grid = el('div', { class: 'grid' });
    main.replaceChildren(...heading(page, data), grid);
    if (data.needs) {
      grid.appendChild(choices(page, data, f));
      return;
    }
    for (const panel of data.panels) {
      const body = el('div', { class: 'body' });
      let section = null;
      section = el('section', { class: 'panel kind-' + panel.chart.kind, 'data-panel': panel.id, 'aria-labelledby': 'h-' + panel.id },
        el('header', {},
          el('h2', { id: 'h-' + panel.id, text: panel.title }),
          panel.error ? null : el('button', { type: 'button', class: 'csv', 'aria-label': 'Download ' + panel.title + ' as CSV', text: 'CSV', onclick: () => downloadCsv(panel, f, data.filters.scope, section) })),
        el('p', { class: 'desc', text: panel.description }),
        body);
      if (panel.error) body.appendChild(el('p', { class: 'error', text: panel.error.message }));
      else DRAW[panel.chart.kind](panel, body, data);
      grid.appendChild(section);
    }
  }
  async function renderRows(main, f) {
    const kind = f.q.get('rows') || 'deployments';
    const scope = f.q.get('scope') || 'org';
    document.getElementById('filters').hidden = true;
    // Data health's records: one page of at most 1,000, filtered as linked.
    const health = kind === 'quarantine' || kind === 'unattributed';
    const pass = new URLSearchParams();
    for (const key of ['source', 'stream', 'reason', 'table']) if (f.q.get(key)) pass.set(key, f.q.get(key));
    // A trend point's rows: its calendar period instead of the window.
    const from = f.q.get('from');
    const to = f.q.get('to');
    const dora = new URLSearchParams({ window: f.window + 'd', env: f.env, limit: '1000' });
    if (from && to) {
      dora.set('from', from.slice(0, 10));
      dora.set('to', to.slice(0, 10));
    }
    const span = from && to ? ' from ' + from.slice(0, 10) + ' to ' + to.slice(0, 10) : ' in the last ' + f.window + ' days';
    const base = health
      ? '/api/v1/health/' + kind + '?' + pass
      : '/api/v1/dora/' + encodeURIComponent(scope) + '/' + encodeURIComponent(kind) + '?' + dora;
    const first = await getJSON(base);
    const items = first.items.slice();
    const table = el('div');
    const count = el('p', { class: 'as-of', id: 'row-count' });
    const more = el('button', { type: 'button', class: 'more', text: 'Load more' });
    let next = first.next_cursor;
    const draw = () => {
      const columns = items.length ? Object.keys(items[0]).filter((c) => c !== 'cursor_time') : [];
      table.replaceChildren();
      drawTable({ id: 'rows', title: ROWS_TITLES[kind] || kind, rows: items, chart: { kind: 'table', x: null, y: columns }, drills: {} }, table, null, true);
      count.dataset.count = String(items.length);
      count.textContent = health
        ? items.length + ' ' + (ROWS_TITLES[kind] || kind).toLowerCase() + (first.truncated ? ' (the newest 1,000)' : '') + [...pass.entries()].map(([k, v]) => ', ' + k + ' ' + v).join('') + '.'
        : items.length + ' ' + (ROWS_TITLES[kind] || kind).toLowerCase() + (next ? ' so far' : '') + span + ', ' + (f.env === 'all' ? 'all production environments' : f.env) + '.';
      more.hidden = !next;
    };
    more.addEventListener('click', async () => {
      const page = await getJSON(base + '&cursor=' + encodeURIComponent(next));
      items.push(...page.items);
      next = page.next_cursor;
      draw();
    });
    main.replaceChildren(el('h1', { text: (ROWS_TITLES[kind] || kind) + (health ? '' : ' behind the numbers — ' + scope.replace(/^(group|component):default\//, '')) }), count, table, more);
    draw();
  }
  function renderSignIn(main) {
    document.getElementById('filters').hidden = true;
    const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
    const form = el('form', { class: 'signin' },
      el('h1', { text: 'Sign in' }),
      el('p', { text: 'Paste an API token (fathom tokens create). It is kept for this browser tab only.' }),
      el('label', { for: 'token', text: 'API token' }), input,
      el('button', { type: 'submit', text: 'Show the dashboards' }));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      sessionStorage.setItem('fathom.token', input.value.trim());
      render(false);
    });
    main.replaceChildren(form);
    input.focus();
  }
  let generation = 0;
  async function render(focus) {
    const mine = ++generation;
    document.body.dataset.ready = '0';
    const started = performance.now();
    const page = currentPage();
    const f = filters();
    renderNav(page, f);
    const main = document.getElementById('main');
    try {
      if (page === 'rows') await renderRows(main, f);
      else await renderPage(main, page, f);
    } catch (e) {
      if (mine !== generation) return;
      if (e instanceof AuthError) renderSignIn(main);
      else main.replaceChildren(el('p', { class: 'failure', role: 'alert', text: 'Could not load this page: ' + e.message }));
    }
    if (mine !== generation) return;
    document.title = 'Fathom — ' + (page === 'rows' ? 'Rows' : PAGES.find(([p]) => p === page)[2]);
    if (focus) main.focus();
    document.body.dataset.renderMs = String(Math.round(performance.now() - started));
    document.body.dataset.ready = '1';
  }
  token();
  render(false);
})();

