// Fathom dashboards: the helpers and the charts — DOM nodes and SVG built
// from a panel's rows, a text label on every mark, numbers linked to the
// rows behind them. Imported by app.js, which owns the page and its state.

// The page's navigation, set by app.js (links drawn here navigate without
// a reload).
let navigate = () => {};
export function setNavigate(handler) {
  navigate = handler;
}

export const SVG = 'http://www.w3.org/2000/svg';
const LABELS = {
  deployments_per_week: 'Deployment frequency',
  lead_time_p50_seconds: 'Lead time (median)',
  change_failure_rate: 'Change failure rate',
  failed_deployment_recovery_p50_seconds: 'Failed deployment recovery (median)',
  rework_rate: 'Rework rate',
  overall_tier: 'Overall tier',
  deployments: 'Deployments',
  failed_deployments: 'Failed deployments',
  changes: 'Changes',
  coding_hours: 'Coding',
  pickup_hours: 'Pickup',
  review_hours: 'Review',
  deploy_hours: 'Deploy',
  lead_time_seconds: 'Lead time',
  coding_seconds: 'Coding',
  pickup_seconds: 'Pickup',
  review_seconds: 'Review',
  deploy_seconds: 'Deploy',
  restore_seconds: 'Time to restore',
  recovery_seconds: 'Recovery',
  rolled_back: 'Rolled back',
  failed: 'Failed',
  incident_ids: 'Linked to incidents',
  lag_seconds: 'Since last success',
  table_name: 'Table',
  records: 'Records',
};
// The tier column that grades each key.
const TIER_OF = {
  deployments_per_week: 'deployment_frequency_tier',
  lead_time_p50_seconds: 'lead_time_tier',
  change_failure_rate: 'change_failure_rate_tier',
  failed_deployment_recovery_p50_seconds: 'recovery_tier',
};
const TIER_RANK = { elite: 4, high: 3, medium: 2, low: 1 };

// ---- small helpers -------------------------------------------------

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}
function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
}
function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}
export function label(column) {
  return LABELS[column] || column.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}
function cap(text) {
  return String(text).replace(/^./, (c) => c.toUpperCase());
}
function isNumber(v) {
  return typeof v === 'number' && Number.isFinite(v);
}
function plain(v) {
  if (Number.isInteger(v)) return v.toLocaleString('en');
  const abs = Math.abs(v);
  return v.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
}
function duration(seconds) {
  const s = Math.abs(seconds);
  if (s < 90) return plain(seconds) + ' s';
  if (s < 90 * 60) return plain(seconds / 60) + ' min';
  if (s < 48 * 3600) return plain(seconds / 3600) + ' h';
  return plain(seconds / 86400) + ' d';
}
function toDate(text) {
  let t = String(text).replace(' ', 'T');
  if (!/[zZ]|[+-]\d\d:?\d\d$/.test(t)) t += 'Z';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}
export function dateText(text, withTime) {
  const d = toDate(text);
  if (!d) return String(text);
  const day = d.toISOString().slice(0, 10);
  return withTime ? day + ' ' + d.toISOString().slice(11, 16) + ' UTC' : day;
}
function isTime(column) {
  return column.endsWith('_at') || column === 'period_start';
}
// A value as shown; the raw value stays in data-value.
function fmt(column, v) {
  if (v === null || v === undefined || v === '') return '–';
  if (column.endsWith('_tier')) return cap(v);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (isTime(column)) return dateText(v, column !== 'period_start');
  if (!isNumber(v)) return String(v).replace(/^(component|group):default\//, '');
  if (column.endsWith('_seconds')) return duration(v);
  if (column.endsWith('_rate')) return (v * 100).toFixed(1) + '%';
  if (column.endsWith('_per_week')) return plain(v) + ' / week';
  if (column.endsWith('_hours')) return plain(v) + ' h';
  return plain(v);
}
function tierBadge(tier) {
  const name = tier || 'none';
  return el('span', { class: 'badge tier-' + name, 'data-tier': name, text: tier ? cap(tier) : 'No tier' });
}
// A drill path with {{row.col}} filled from a row.
function fillRow(template, row) {
  if (!template) return null;
  let missing = false;
  const path = template.replace(/\{\{row\.([a-z0-9_]+)\}\}/g, (_, col) => {
    const v = row ? row[col] : undefined;
    if (v === null || v === undefined) missing = true;
    return encodeURIComponent(v === null || v === undefined ? '' : String(v));
  });
  return missing ? null : path;
}
function drillFor(panel, column, row) {
  return fillRow((panel.drills && panel.drills[column]) || panel.drill, row);
}
// A number that leads to the rows behind it (or plain text when none).
function numberNode(panel, column, row, extra) {
  const v = row ? row[column] : null;
  // A missing value has no rows behind it: plain text, not a link.
  const href = v === null || v === undefined ? null : drillFor(panel, column, row);
  const attrs = Object.assign({ class: 'num', 'data-column': column, 'data-value': v === null || v === undefined ? '' : String(v), text: fmt(column, v) }, extra || {});
  if (href) {
    attrs.href = href;
    attrs.onclick = (event) => navigate(event);
    return el('a', attrs);
  }
  return el('span', attrs);
}


// ---- charts --------------------------------------------------------

function scale(values, height, pad) {
  const nums = values.filter(isNumber);
  const max = Math.max(0, ...nums);
  const min = Math.min(0, ...nums);
  const span = max - min || 1;
  return (v) => pad + (height - 2 * pad) * (1 - (v - min) / span);
}
// One series as a line with a point per value (gaps where a week has no value).
// A mark that leads to its rows when it has any (SVG links are
// focusable, so the keyboard reaches them too).
export function linked(mark, href, text) {
  if (!href) return mark;
  return svg('a', { href, class: 'mark-link', 'aria-label': text, onclick: (event) => navigate(event) }, mark);
}
function lineSeries(column, rows, xColumn, width, height, pad, withLabels, linkFor) {
  const values = rows.map((r) => r[column]);
  const y = scale(values, height, pad);
  const step = rows.length > 1 ? (width - 2 * pad) / (rows.length - 1) : 0;
  const x = (i) => pad + i * step;
  let d = '';
  let pen = false;
  const points = [];
  values.forEach((v, i) => {
    if (!isNumber(v)) {
      pen = false;
      return;
    }
    d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
    pen = true;
    const text = (xColumn ? fmt(xColumn, rows[i][xColumn]) + ': ' : '') + fmt(column, v);
    points.push(
      linked(
        svg('circle', { class: 'point', cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: withLabels ? 3.5 : 2.5, 'data-value': v }, svg('title', { text })),
        linkFor ? linkFor(i) : null,
        text)
    );
  });
  return svg('g', { class: 'series', 'data-series': column, 'data-points': points.length }, svg('path', { class: 'line', d }), points);
}
function sparkline(column, rows) {
  const values = rows.map((r) => r[column]).filter(isNumber);
  const text = values.length ? 'Last ' + rows.length + ' weeks: ' + rows.map((r) => fmt(column, r[column])).join(', ') : 'No weekly values';
  return svg('svg', { class: 'spark', viewBox: '0 0 160 36', width: 160, height: 36, role: 'img', 'aria-label': text },
    svg('title', { text }), lineSeries(column, rows, 'period_start', 160, 36, 4, false));
}
function drawTiles(panel, body, page) {
  const row = panel.rows[0];
  if (!row) {
    body.appendChild(el('p', { class: 'empty', text: 'No metrics for this scope, window and environment.' }));
    return;
  }
  const spark = page.panels.find((p) => p.id === panel.chart.spark);
  const tiles = el('div', { class: 'tiles' });
  for (const column of panel.chart.y) {
    const tierColumn = TIER_OF[column];
    const tier = tierColumn ? row[tierColumn] : null;
    const href = drillFor(panel, column, row);
    tiles.appendChild(
      el(href ? 'a' : 'div', { class: 'tile tier-' + (tier || 'none'), href, onclick: href ? navigate : null, 'data-metric': column, 'data-value': row[column] === null ? '' : String(row[column]) },
        el('span', { class: 'tile-label', text: label(column) }),
        el('span', { class: 'tile-value', text: fmt(column, row[column]) }),
        el('span', { class: 'tile-tier', 'data-tier': tier || 'none', text: tierColumn ? (tier ? cap(tier) : 'No tier') : 'Not tiered' }),
        spark && spark.rows.length ? sparkline(column, spark.rows) : null)
    );
  }
  body.appendChild(tiles);
  body.appendChild(
    el('p', { class: 'totals' },
      'Overall ', tierBadge(row.overall_tier), ' · ',
      numberNode(panel, 'deployments', row), ' deployments, ',
      numberNode(Object.assign({}, panel, { drill: panel.drills.lead_time_p50_seconds || panel.drill }), 'changes', row), ' changes, ',
      numberNode(Object.assign({}, panel, { drill: panel.drills.failed_deployment_recovery_p50_seconds || panel.drill }), 'failed_deployments', row), ' failed')
  );
}
function drawLine(panel, body) {
  if (!panel.rows.length) {
    body.appendChild(el('p', { class: 'empty', text: 'No weeks yet.' }));
    return;
  }
  const xColumn = panel.chart.x;
  const rows = panel.rows;
  const smalls = el('div', { class: 'smalls line-chart' });
  for (const column of panel.chart.y) {
    const values = rows.map((r) => r[column]).filter(isNumber);
    const max = values.length ? Math.max(...values) : null;
    const w = 300;
    const h = 120;
    const chart = svg('svg', { viewBox: '0 0 ' + w + ' ' + (h + 18), width: w, height: h + 18, style: 'max-width:100%;height:auto', role: 'img', 'aria-label': label(column) + ' per week: ' + rows.map((r) => dateText(r[xColumn]) + ' ' + fmt(column, r[column])).join('; ') },
      svg('line', { class: 'axis', x1: 8, y1: h - 8, x2: w - 8, y2: h - 8 }),
      lineSeries(column, rows, xColumn, w, h, 8, true, (i) => drillFor(panel, column, rows[i])),
      svg('text', { x: 8, y: h + 12, text: dateText(rows[0][xColumn]) }),
      svg('text', { x: w - 8, y: h + 12, 'text-anchor': 'end', text: dateText(rows[rows.length - 1][xColumn]) }),
      max === null ? null : svg('text', { x: w - 8, y: 10, 'text-anchor': 'end', text: 'max ' + fmt(column, max) }));
    smalls.appendChild(el('figure', {}, el('figcaption', { text: label(column) }), chart));
  }
  body.appendChild(smalls);
}
function pattern(id, kind) {
  const p = svg('pattern', { id, width: 6, height: 6, patternUnits: 'userSpaceOnUse' });
  p.appendChild(svg('rect', { width: 6, height: 6, fill: '#fff' }));
  if (kind === 0) p.appendChild(svg('rect', { width: 6, height: 6, fill: '#1f5fae' }));
  if (kind === 1) p.appendChild(svg('path', { d: 'M0 6L6 0', stroke: '#b3261e', 'stroke-width': 2 }));
  if (kind === 2) p.appendChild(svg('circle', { cx: 3, cy: 3, r: 1.6, fill: '#1b7f4c' }));
  if (kind === 3) p.appendChild(svg('path', { d: 'M0 3H6M3 0V6', stroke: '#a86400', 'stroke-width': 1.5 }));
  return p;
}
function patterns(prefix, n) {
  return svg('defs', {}, Array.from({ length: n }, (_, i) => pattern(prefix + i, i % 4)));
}
function legend(prefix, columns, values) {
  return el('ul', { class: 'legend' },
    columns.map((c, i) =>
      el('li', {},
        svg('svg', { width: 16, height: 16, 'aria-hidden': 'true' }, patterns(prefix + 'l', columns.length), svg('rect', { width: 16, height: 16, fill: 'url(#' + prefix + 'l' + i + ')', stroke: '#5b6571' })),
        values ? values[i] : label(c))
    ));
}
function drawBar(panel, body) {
  const rows = panel.rows;
  if (!rows.length) {
    body.appendChild(el('p', { class: 'empty', text: 'No weeks yet.' }));
    return;
  }
  const cols = panel.chart.y;
  const w = Math.max(320, rows.length * (cols.length * 16 + 14));
  const h = 170;
  const all = rows.flatMap((r) => cols.map((c) => r[c])).filter(isNumber);
  const max = Math.max(1, ...all);
  const band = (w - 20) / rows.length;
  const barW = Math.max(4, (band - 8) / cols.length);
  const prefix = 'pat-' + panel.id + '-';
  const chart = svg('svg', { viewBox: '0 0 ' + w + ' ' + (h + 30), width: w, height: h + 30, role: 'img', 'aria-label': panel.title }, patterns(prefix, cols.length),
    svg('line', { class: 'axis', x1: 10, y1: h, x2: w - 10, y2: h }));
  cols.forEach((column, ci) => {
    const g = svg('g', { class: 'series', 'data-series': column, 'data-points': rows.length });
    rows.forEach((row, i) => {
      const v = isNumber(row[column]) ? row[column] : 0;
      const bh = (h - 20) * (v / max);
      const x = 10 + i * band + 4 + ci * barW;
      const text = dateText(row[panel.chart.x]) + ' — ' + label(column) + ': ' + fmt(column, v);
      g.appendChild(linked(
        svg('rect', { class: 'point', x: x.toFixed(1), y: (h - bh).toFixed(1), width: (barW - 2).toFixed(1), height: Math.max(bh, 1).toFixed(1), fill: 'url(#' + prefix + ci + ')', stroke: '#5b6571', 'data-value': v, 'data-column': column }, svg('title', { text })),
        drillFor(panel, column, row),
        text));
      g.appendChild(svg('text', { x: (x + barW / 2 - 1).toFixed(1), y: (h - bh - 3).toFixed(1), 'text-anchor': 'middle', text: fmt(column, v) }));
    });
    chart.appendChild(g);
  });
  rows.forEach((row, i) => {
    chart.appendChild(svg('text', { x: (10 + i * band + band / 2).toFixed(1), y: h + 14, 'text-anchor': 'middle', text: dateText(row[panel.chart.x]).slice(5) }));
  });
  body.appendChild(el('div', { class: 'table-wrap' }, chart));
  body.appendChild(legend(prefix, cols));
}
function drawStacked(panel, body) {
  const row = panel.rows[0];
  const cols = panel.chart.y;
  const values = cols.map((c) => (row && isNumber(row[c]) ? row[c] : 0));
  const total = values.reduce((a, b) => a + b, 0);
  if (!row || total === 0) {
    body.appendChild(el('p', { class: 'empty', text: 'No changes with stage times in this window.' }));
    return;
  }
  const w = 600;
  const h = 46;
  const prefix = 'pat-' + panel.id + '-';
  const chart = svg('svg', { viewBox: '0 0 ' + w + ' ' + h, width: w, height: h, role: 'img', 'aria-label': cols.map((c, i) => label(c) + ' ' + fmt(c, values[i])).join(', ') }, patterns(prefix, cols.length));
  let x = 0;
  cols.forEach((column, i) => {
    const width = (w * values[i]) / total;
    chart.appendChild(
      svg('g', { class: 'series', 'data-series': column, 'data-points': 1 },
        svg('rect', { class: 'point', x: x.toFixed(1), y: 4, width: width.toFixed(1), height: h - 8, fill: 'url(#' + prefix + i + ')', stroke: '#1d232b', 'data-value': values[i] },
          svg('title', { text: label(column) + ': ' + fmt(column, values[i]) })),
        width > 70 ? svg('text', { x: (x + 6).toFixed(1), y: h / 2 + 4, style: 'fill:#1d232b;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px', text: label(column) }) : null)
    );
    x += width;
  });
  body.appendChild(chart);
  body.appendChild(legend(prefix, cols, cols.map((c, i) => el('span', {}, label(c) + ' ', numberNode(panel, c, row)))));
  if (isNumber(row.changes)) body.appendChild(el('p', { class: 'totals' }, 'Medians over ', numberNode(panel, 'changes', row), ' changes; total of the medians ' + plain(total) + ' h.'));
}
function truthy(v) {
  return v === true || (typeof v === 'string' && v.trim() !== '') || (Array.isArray(v) && v.length > 0);
}
function drawTimeline(panel, body, page) {
  const rows = panel.rows;
  const marked = page && panel.chart.marks ? (page.panels.find((p) => p.id === panel.chart.marks) || { rows: [] }).rows : [];
  if (!rows.length && !marked.length) {
    body.appendChild(el('p', { class: 'empty', text: 'No deployments in this window.' }));
    return;
  }
  const xColumn = panel.chart.x;
  const time = (v) => (toDate(v) || new Date(0)).getTime();
  const times = rows.map((r) => time(r[xColumn]));
  const events = marked.map((r) => [time(r.created_at), r.resolved_at ? time(r.resolved_at) : null, r]);
  const all = times.concat(events.map((e) => e[0]), events.filter((e) => e[1] !== null).map((e) => e[1]));
  const min = Math.min(...all);
  const max = Math.max(...all);
  const w = 900;
  const lanes = ['deployments'].concat(panel.chart.y, panel.chart.marks ? ['incidents'] : []);
  const laneH = 26;
  const h = lanes.length * laneH + 24;
  const left = 150;
  const x = (t) => left + ((w - left - 12) * (t - min)) / (max - min || 1);
  const chart = svg('svg', { class: 'timeline', viewBox: '0 0 ' + w + ' ' + h, width: w, height: h, role: 'img', 'aria-label': panel.title });
  const shape = (lane, cx, cy, v) => {
    const cls = lane === 'deployments' ? 'ok' : lane;
    if (lane === 'failed') return svg('path', { class: 'point ' + cls, d: 'M' + cx + ' ' + (cy - 6) + 'L' + (cx + 6) + ' ' + (cy + 5) + 'L' + (cx - 6) + ' ' + (cy + 5) + 'Z', 'data-value': v });
    if (lane === 'rolled_back') return svg('rect', { class: 'point ' + cls, x: cx - 5, y: cy - 5, width: 10, height: 10, 'data-value': v });
    if (lane === 'incident_ids') return svg('path', { class: 'point ' + cls, d: 'M' + cx + ' ' + (cy - 6) + 'L' + (cx + 6) + ' ' + cy + 'L' + cx + ' ' + (cy + 6) + 'L' + (cx - 6) + ' ' + cy + 'Z', 'data-value': v });
    if (lane === 'suspect') return svg('circle', { class: 'point ' + cls, cx, cy, r: 6, 'data-value': v });
    return svg('circle', { class: 'point ' + cls, cx, cy, r: 4, 'data-value': v });
  };
  const counts = {};
  lanes.forEach((lane, li) => {
    const cy = 12 + li * laneH;
    const g = svg('g', { class: 'series', 'data-series': lane });
    g.appendChild(svg('line', { class: 'axis', x1: left, y1: cy, x2: w - 12, y2: cy }));
    g.appendChild(svg('text', { x: 0, y: cy + 4, text: lane === 'deployments' ? 'All deployments' : lane === 'incidents' ? 'Incidents' : label(lane) }));
    let n = 0;
    if (lane === 'incidents') {
      // An incident: a diamond where it opened, a bar to its restore.
      for (const [start, end, row] of events) {
        n += 1;
        const x0 = Math.round(x(start) * 10) / 10;
        const diamond = shape('incident_ids', x0, cy, '');
        diamond.setAttribute('class', 'incident_ids');
        const mark = svg('g', { class: 'point incident', 'data-value': row.incident_id },
          end === null ? null : svg('line', { x1: x0, y1: cy, x2: Math.round(x(end) * 10) / 10, y2: cy, stroke: '#a86400', 'stroke-width': 4 }),
          diamond,
          svg('title', { text: dateText(row.created_at, true) + ' ' + row.incident_id + ' ' + (row.title || '') + (end === null ? ' — not resolved' : ' — restored in ' + duration((end - start) / 1000)) }));
        g.appendChild(mark);
      }
      g.setAttribute('data-points', n);
      counts[lane] = n;
      chart.appendChild(g);
      return;
    }
    rows.forEach((row, i) => {
      const v = lane === 'deployments' ? row.deployment_id : row[lane];
      if (lane !== 'deployments' && !truthy(v)) return;
      n += 1;
      const mark = shape(lane, Math.round(x(times[i]) * 10) / 10, cy, String(v));
      mark.appendChild(svg('title', { text: dateText(row[xColumn], true) + ' ' + row.deployment_id + (lane === 'deployments' ? '' : ' — ' + label(lane) + (lane === 'incident_ids' ? ': ' + v : '')) + (isNumber(row.recovery_seconds) ? ', recovered in ' + duration(row.recovery_seconds) : '') }));
      g.appendChild(mark);
    });
    g.setAttribute('data-points', n);
    counts[lane] = n;
    chart.appendChild(g);
  });
  chart.appendChild(svg('text', { x: left, y: h - 4, text: dateText(new Date(min).toISOString()) }));
  chart.appendChild(svg('text', { x: w - 12, y: h - 4, 'text-anchor': 'end', text: dateText(new Date(max).toISOString()) }));
  body.appendChild(el('div', { class: 'table-wrap' }, chart));
  const drill = panel.drill;
  body.appendChild(
    el('p', { class: 'totals' },
      drill ? el('a', { class: 'num', href: drill, onclick: (event) => navigate(event), 'data-column': 'deployments', 'data-value': rows.length, text: String(rows.length) }) : String(rows.length),
      ' deployments (●), ' + counts.failed + ' failed (▲), ' + (counts.rolled_back || 0) + ' rolled back (■), ' + (counts.incident_ids || 0) + ' linked to incidents (◆)' + (counts.suspect === undefined ? '' : ', ' + counts.suspect + ' suspect (○)') + (panel.chart.marks ? '; ' + (counts.incidents || 0) + ' incidents (◆, a bar to their restore).' : '.'))
  );
}
function sortValue(v) {
  if (v === null || v === undefined || v === '') return null;
  if (TIER_RANK[v] !== undefined) return TIER_RANK[v];
  return v;
}
// Tables on a dashboard show their first rows (the rest one click
// away); the rows page shows everything.
const TABLE_ROWS = 15;
export function drawTable(panel, body, page, showAll) {
  const rows = panel.rows.slice();
  let expanded = Boolean(showAll) || rows.length <= TABLE_ROWS;
  if (!rows.length) {
    body.appendChild(el('p', { class: 'empty', text: 'Nothing to show.' }));
    return;
  }
  const cols = (panel.chart.x ? [panel.chart.x] : []).concat(panel.chart.y);
  const numeric = cols.map((c) => rows.some((r) => isNumber(r[c])));
  const table = el('table', { 'data-rows': rows.length }, el('caption', { class: 'sr', text: panel.title + ': ' + rows.length + ' rows' }));
  const tbody = el('tbody');
  const state = { column: null, dir: 1 };
  const head = el('tr');
  cols.forEach((column, ci) => {
    const th = el('th', { scope: 'col', class: numeric[ci] ? 'number' : null, 'aria-sort': 'none' });
    th.appendChild(
      el('button', {
        type: 'button',
        text: label(column),
        onclick: () => {
          state.dir = state.column === column ? -state.dir : 1;
          state.column = column;
          for (const other of head.children) other.setAttribute('aria-sort', 'none');
          th.setAttribute('aria-sort', state.dir === 1 ? 'ascending' : 'descending');
          rows.sort((a, b) => {
            const x = sortValue(a[column]);
            const y = sortValue(b[column]);
            if (x === null) return y === null ? 0 : 1;
            if (y === null) return -1;
            return (x < y ? -1 : x > y ? 1 : 0) * state.dir;
          });
          fill();
        },
      })
    );
    head.appendChild(th);
  });
  table.appendChild(el('thead', {}, head));
  table.appendChild(tbody);
  const more = el('button', { type: 'button', class: 'more', text: 'Show all ' + rows.length + ' rows' });
  more.addEventListener('click', () => {
    expanded = true;
    fill();
  });
  function fill() {
    more.hidden = expanded;
    tbody.replaceChildren(
      ...(expanded ? rows : rows.slice(0, TABLE_ROWS)).map((row) =>
        el('tr', { 'data-key': row[cols[0]] },
          cols.map((column, ci) => {
            const v = row[column];
            const td = el('td', { class: numeric[ci] ? 'number' : null });
            if (column.endsWith('_tier')) td.appendChild(tierBadge(v));
            else if (numeric[ci] || (panel.drills && panel.drills[column])) td.appendChild(numberNode(panel, column, row));
            else td.appendChild(el('span', { 'data-column': column, 'data-value': v === null || v === undefined ? '' : String(v), text: fmt(column, v) }));
            if (TIER_OF[column] && row[TIER_OF[column]] !== undefined) td.appendChild(tierBadge(row[TIER_OF[column]]));
            return td;
          }))
      )
    );
  }
  fill();
  body.appendChild(el('div', { class: 'table-wrap' }, table));
  body.appendChild(more);
}
function drawRanking(panel, body) {
  const rows = panel.rows.slice();
  if (!rows.length) {
    body.appendChild(el('p', { class: 'empty', text: 'No team deployed in this window.' }));
    return;
  }
  const rank = (r) => TIER_RANK[r.overall_tier] || 0;
  rows.sort((a, b) => rank(b) - rank(a) || (b.deployments_per_week || 0) - (a.deployments_per_week || 0) || String(a.team).localeCompare(String(b.team)));
  const n = Math.min(3, Math.ceil(rows.length / 2));
  const best = rows.slice(0, n);
  const worst = rows.slice(n).slice(-n).reverse();
  const list = (title, cls, items) =>
    el('div', { class: 'series', 'data-series': cls, 'data-points': items.length },
      el('h3', { text: title }),
      items.length
        ? el('ol', {}, items.map((row) =>
            el('li', { class: 'point', 'data-team': row.team },
              el('a', { href: drillFor(panel, 'team', row), onclick: (event) => navigate(event), text: String(row.team).replace(/^group:default\//, '') }),
              tierBadge(row.overall_tier), ' ', fmt('deployments_per_week', row.deployments_per_week))))
        : el('p', { class: 'empty', text: 'Every team is listed above.' }));
  body.appendChild(el('div', { class: 'ranking' }, list('Best', 'best', best), list('Worst', 'worst', worst)));
}
// Small multiples, one per `group`: the band (lower to upper) as an area,
// the expected value dashed, the actual value as a line, anomalous days
// as marked points — so an anomaly reads against what was expected.
function drawBands(panel, body) {
  const [value, expected, lower, upper] = panel.chart.y;
  const xColumn = panel.chart.x;
  const groups = new Map();
  for (const row of panel.rows) {
    const key = row[panel.chart.group];
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(row);
  }
  if (!groups.size) {
    body.appendChild(el('p', { class: 'empty', text: 'No anomalies in this window.' }));
    return;
  }
  const smalls = el('div', { class: 'smalls bands-chart' });
  // One series (a scope's daily cost) gets the panel's width; several
  // are small multiples.
  const single = groups.size === 1;
  for (const [name, rows] of groups) {
    const w = single ? 600 : 300;
    const h = single ? 180 : 120;
    const pad = 8;
    const all = rows.flatMap((r) => [r[value], r[expected], r[lower], r[upper]]);
    const y = scale(all, h, pad);
    const step = rows.length > 1 ? (w - 2 * pad) / (rows.length - 1) : 0;
    const x = (i) => pad + i * step;
    const path = (column) => {
      let d = '';
      let pen = false;
      rows.forEach((r, i) => {
        if (!isNumber(r[column])) {
          pen = false;
          return;
        }
        d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(r[column]).toFixed(1);
        pen = true;
      });
      return d;
    };
    // The band: along the upper edge, back along the lower one (days
    // without a baseline leave it open).
    const banded = rows.map((r, i) => [i, r]).filter(([, r]) => isNumber(r[lower]) && isNumber(r[upper]));
    const area = banded.length
      ? 'M' + banded.map(([i, r]) => x(i).toFixed(1) + ' ' + y(r[upper]).toFixed(1)).join('L') +
        'L' + banded.slice().reverse().map(([i, r]) => x(i).toFixed(1) + ' ' + y(r[lower]).toFixed(1)).join('L') + 'Z'
      : '';
    const marks = [];
    rows.forEach((r, i) => {
      if (r.anomalous !== true || !isNumber(r[value])) return;
      const text = dateText(r[xColumn]) + ': ' + fmt(value, r[value]) + (isNumber(r[expected]) ? ', expected ' + fmt(expected, r[expected]) : '');
      marks.push(svg('circle', { class: 'point anomalous', cx: x(i).toFixed(1), cy: y(r[value]).toFixed(1), r: 3.5, 'data-value': r[value] }, svg('title', { text })));
    });
    const flagged = rows.filter((r) => r.anomalous === true).map((r) => dateText(r[xColumn]));
    const chart = svg('svg', { viewBox: '0 0 ' + w + ' ' + (h + 18), width: w, height: h + 18, style: 'max-width:100%;height:auto', role: 'img', 'aria-label': name + ': anomalous on ' + (flagged.join(', ') || 'no day') },
      svg('path', { class: 'band', d: area }),
      svg('path', { class: 'line expected', d: path(expected) }),
      svg('g', { class: 'series', 'data-series': value, 'data-points': marks.length }, svg('path', { class: 'line', d: path(value) }), marks),
      svg('text', { x: pad, y: h + 12, text: dateText(rows[0][xColumn]) }),
      svg('text', { x: w - pad, y: h + 12, 'text-anchor': 'end', text: dateText(rows[rows.length - 1][xColumn]) }));
    smalls.appendChild(el('figure', { 'data-group': name }, el('figcaption', { text: name }), chart));
  }
  body.appendChild(smalls);
}
// Points on log–log axes, one per row named by the group column, each
// with its reference (e.g. its peers' median) as a short bar at the same x;
// rows without a positive x and y cannot sit on a log axis and are left
// out (the table beside it lists them).
function drawScatter(panel, body) {
  const xColumn = panel.chart.x;
  const [value, reference] = panel.chart.y;
  const positive = (v) => isNumber(v) && v > 0;
  const rows = panel.rows.filter((r) => positive(r[xColumn]) && positive(r[value]));
  if (!rows.length) {
    body.appendChild(el('p', { class: 'empty', text: 'Nothing to place in this window.' }));
    return;
  }
  const w = 600;
  const h = 260;
  const pad = 40;
  const log = Math.log10;
  const xs = rows.map((r) => log(r[xColumn]));
  const ys = rows.flatMap((r) => [r[value], reference ? r[reference] : null]).filter(positive).map(log);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const X = (v) => pad + (w - 2 * pad) * ((log(v) - x0) / (x1 - x0 || 1));
  const Y = (v) => h - pad - (h - 2 * pad) * ((log(v) - y0) / (y1 - y0 || 1));
  const points = svg('g', { class: 'series', 'data-series': value, 'data-points': rows.length });
  const references = svg('g', { class: 'series reference', 'data-series': reference || '' });
  for (const r of rows) {
    const name = fmt(panel.chart.group, r[panel.chart.group]);
    const text = name + ': ' + label(xColumn) + ' ' + fmt(xColumn, r[xColumn]) + ', ' + label(value) + ' ' + fmt(value, r[value]) + (reference && isNumber(r[reference]) ? ', ' + label(reference) + ' ' + fmt(reference, r[reference]) : '');
    points.appendChild(svg('circle', { class: 'point', cx: X(r[xColumn]).toFixed(1), cy: Y(r[value]).toFixed(1), r: 4, 'data-value': r[value] }, svg('title', { text })));
    if (reference && positive(r[reference])) {
      const x = X(r[xColumn]);
      references.appendChild(svg('line', { x1: (x - 7).toFixed(1), x2: (x + 7).toFixed(1), y1: Y(r[reference]).toFixed(1), y2: Y(r[reference]).toFixed(1) }));
    }
  }
  const chart = svg('svg', { viewBox: '0 0 ' + w + ' ' + h, width: w, height: h, style: 'max-width:100%;height:auto', role: 'img', 'aria-label': panel.title },
    svg('line', { class: 'axis', x1: pad, y1: h - pad, x2: w - pad, y2: h - pad }),
    svg('line', { class: 'axis', x1: pad, y1: pad, x2: pad, y2: h - pad }),
    references,
    points,
    svg('text', { x: pad, y: h - pad + 16, text: fmt(xColumn, 10 ** x0) }),
    svg('text', { x: w - pad, y: h - pad + 16, 'text-anchor': 'end', text: fmt(xColumn, 10 ** x1) + ' ' + label(xColumn).toLowerCase() }),
    svg('text', { x: 4, y: h - pad, text: fmt(value, 10 ** y0) }),
    svg('text', { x: 4, y: pad - 6, text: fmt(value, 10 ** y1) + ' ' + label(value).toLowerCase() }));
  body.appendChild(el('div', { class: 'scatter-chart' }, chart));
  body.appendChild(el('p', { class: 'totals', text: 'Log scales. ● ' + label(value) + (reference ? '; — ' + label(reference) : '') + '.' }));
}
export const DRAW = { tiles: drawTiles, line: drawLine, bar: drawBar, stacked_bar: drawStacked, table: drawTable, timeline: drawTimeline, ranking: drawRanking, bands: drawBands, scatter: drawScatter };
