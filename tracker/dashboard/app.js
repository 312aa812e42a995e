// rackswarm dashboard: renders the head's snapshots (tracker/dashboard-snapshot.ts), pushed once per interval over
// Server-Sent Events (GET /api/events). Plain browser JavaScript, no build step; uPlot is served by the head.

const STAGES = ['announced', 'fetching', 'verifying', 'done', 'seeding', 'failed'];
const $ = (id) => document.getElementById(id);
let plot = null;
let last = null;

function esc(v) {
  return String(v ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

const rate = (n) => `${bytes(Math.round(n))}/s`;
const pct = (x) => `${Math.floor(x * 1000) / 10}%`;

function seconds(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function connect() {
  const es = new EventSource('/api/events');
  es.onopen = () => setConn('live', 'live');
  es.onerror = () => setConn('lost', 'reconnecting…');
  es.onmessage = (ev) => {
    const t0 = performance.now();
    last = JSON.parse(ev.data);
    render(last);
    // How long one update took here (parse + render): bench/dashboard.ts reads it at 1,000 and 5,000 nodes.
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    document.body.dataset.eventBytes = String(ev.data.length);
    document.body.dataset.updates = String(Number(document.body.dataset.updates ?? 0) + 1);
  };
}

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
}

function render(s) {
  $('clock').textContent = new Date(s.time).toLocaleTimeString();
  let nodes = 0;
  let done = 0;
  for (const w of s.swarms) {
    nodes += w.summary.peers;
    done += w.summary.done;
  }
  $('head-egress').textContent = rate(s.head.egressRate);
  $('head-served').textContent = bytes(s.head.bytesServed);
  $('head-offload').textContent = s.head.offload === null ? '–' : pct(s.head.offload);
  $('head-nodes').textContent = `${done} / ${nodes} done`;
  renderChart(s.history);
  $('swarms').innerHTML = s.swarms.length
    ? s.swarms.map(swarmHtml).join('')
    : '<section class="panel"><h2>Swarm</h2><p class="muted">no node has announced yet</p></section>';
  for (const w of s.swarms) if (w.availability) drawHeat(w);
  $('images').innerHTML = s.images
    .map(
      (r) =>
        `<tr data-image-id="${esc(r.id)}"><td>${esc(r.name)}</td><td>${r.version}</td>` +
        `<td><code>${esc(r.id.slice(0, 16))}</code></td><td>${esc(r.format)}</td><td>${bytes(r.size)}</td>` +
        `<td>${r.chunks}</td><td>${esc(r.publishedAt.replace(/\.\d+Z$/, 'Z'))}</td></tr>`,
    )
    .join('');
  $('images-more').textContent = s.imagesOmitted ? `and ${s.imagesOmitted} older versions` : '';
  document.body.dataset.nodes = String(nodes);
  document.body.dataset.done = String(done);
}

function swarmHtml(w) {
  const sum = w.summary;
  const title = w.name ? `${esc(w.name)} v${w.version}` : 'unregistered image';
  const chips = STAGES.filter((st) => sum.byStage[st] > 0)
    .map((st) => `<span class="stage ${st}" data-stage="${st}">${st} ${sum.byStage[st]}</span>`)
    .join('');
  const t = w.wave;
  const waveText =
    t.tMinSeconds === null
      ? seconds(t.elapsedSeconds)
      : `${seconds(t.elapsedSeconds)} / T<sub>min</sub> ${seconds(t.tMinSeconds)}` +
        (t.tMinSeconds > 0 ? ` (${(t.elapsedSeconds / t.tMinSeconds).toFixed(1)}×)` : '');
  const card = (label, value, cls = '', attrs = '') =>
    `<div class="card ${cls}"${attrs}><div class="label">${label}</div><div class="value">${value}</div></div>`;
  return `<section class="panel swarm" data-image-id="${esc(w.imageId)}" data-peers="${sum.peers}" data-done="${sum.done}">
  <h2>${title} <span class="muted">${esc(w.imageId.slice(0, 16))} · ${w.size === null ? '' : bytes(w.size)} · ${
    w.chunks ?? '?'
  } chunks</span></h2>
  <div class="cards">
    ${card('done', `<span class="done-count">${sum.done}/${sum.peers}</span>`)}
    ${card('mean progress', `<span class="mean-progress">${pct(sum.meanProgress)}</span>`)}
    ${card('stuck', `<span class="stuck-count">${sum.stuck}</span>`, sum.stuck ? 'warn' : '')}
    ${card('failed', `<span class="failed-count">${sum.byStage.failed}</span>`, sum.byStage.failed ? 'alert' : '')}
    ${card('down / up', `${rate(sum.downRate)} / ${rate(sum.upRate)}`)}
    ${card(
      'from peers / from head',
      `<span class="from-peers" data-value="${sum.bytesFromPeers}">${bytes(sum.bytesFromPeers)}</span> / ` +
        `<span class="from-seeder" data-value="${sum.bytesFromSeeder}">${bytes(sum.bytesFromSeeder)}</span>`,
    )}
    ${card('offload', w.offload === null ? '–' : pct(w.offload))}
    ${card(t.completedAt ? 'wave took' : 'elapsed', `<span class="wave">${waveText}</span>`)}
  </div>
  <div class="chips">${chips}</div>
  <div class="grid2">
    <div>${heatHtml(w)}</div>
    <div><h3 class="muted">racks</h3><div class="racks">${w.racks.map(rackHtml).join('')}</div></div>
  </div>
  ${rowsHtml(w)}
</section>`;
}

function heatHtml(w) {
  const a = w.availability;
  if (!a) return '<p class="muted">chunk availability: unknown (image not registered here)</p>';
  const per =
    a.buckets === a.chunks
      ? 'one cell per chunk'
      : `${a.buckets} cells of ~${Math.round(a.chunks / a.buckets)} chunks`;
  return `<h3 class="muted">chunk availability <small>(${per}; nodes holding each, head not counted)</small></h3>
  <canvas class="heat" id="heat-${esc(w.imageId)}"></canvas>
  <div class="legend"><span>rarest: <b class="heat-min">${a.min}</b> nodes</span>
  <span>${a.reporting} working nodes reporting, ${a.complete} complete</span>
  <span>most: <b class="heat-max">${a.max}</b></span></div>`;
}

function drawHeat(w) {
  const a = w.availability;
  const canvas = document.getElementById(`heat-${w.imageId}`);
  if (!canvas) return;
  const cols = Math.min(a.buckets, 64);
  const rows = Math.max(1, Math.ceil(a.buckets / cols));
  canvas.width = cols;
  canvas.height = rows;
  canvas.style.aspectRatio = `${cols} / ${Math.max(rows, cols / 8)}`;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#e3e6ec'; // past the last chunk
  ctx.fillRect(0, 0, cols, rows);
  const top = Math.max(1, w.summary.peers);
  for (let b = 0; b < a.buckets; b++) {
    // Red where few nodes hold a chunk, green where every node does.
    const f = Math.min(1, a.holders[b] / top);
    ctx.fillStyle = `hsl(${Math.round(f * 130)}, 65%, ${a.holders[b] === 0 ? 35 : 48}%)`;
    ctx.fillRect(b % cols, Math.floor(b / cols), 1, 1);
  }
}

function rackHtml(r) {
  const cls = r.byStage.failed ? 'has-failed' : r.stuck ? 'has-stuck' : '';
  const tiles = r.tiles
    ? r.tiles
        .map(
          ([st, permille, stuck, label]) =>
            `<span class="tile s${st}${stuck ? ' stuck' : ''}" title="${esc(label)}: ${STAGES[st]} ${permille / 10}%">` +
            `<i style="height:${STAGES[st] === 'failed' ? 0 : Math.max(8, permille / 10)}%"></i></span>`,
        )
        .join('')
    : '';
  return `<div class="rack ${cls}" data-rack="${esc(r.rack ?? '')}">
    <div class="name"><span>${esc(r.rack ?? '(no rack)')}</span><span class="muted">${r.byStage.done + r.byStage.seeding}/${r.nodes} · ${pct(r.meanProgress)}</span></div>
    <div class="muted">${rate(r.downRate)} down${r.stuck ? ` · <b>${r.stuck} stuck</b>` : ''}${r.byStage.failed ? ` · <b>${r.byStage.failed} failed</b>` : ''}</div>
    <div class="tiles">${tiles}</div>
  </div>`;
}

function rowsHtml(w) {
  if (w.rows.length === 0) return '';
  const now = last ? last.time : Date.now();
  const title =
    w.rowsMode === 'all'
      ? 'nodes'
      : `nodes needing attention <small>(${w.rows.length} of ${w.summary.peers}: failed, stuck, then the least advanced)</small>`;
  let rack;
  const body = [];
  for (const r of w.rows) {
    if (r.rack !== rack) {
      rack = r.rack;
      body.push(`<tr class="rack-head"><td colspan="9">${esc(rack ?? '(no rack)')}</td></tr>`);
    }
    const cls = r.stage === 'failed' ? 'failed' : r.stuck ? 'stuck' : '';
    body.push(
      `<tr class="node ${cls}" data-peer-id="${esc(r.peerId)}" data-stage="${r.stage}" data-progress="${r.progress}">` +
        `<td>${esc(r.host ?? r.peerId.slice(-12))}</td>` +
        `<td><span class="stage ${r.stage}">${r.stage}</span>${r.stuck ? ' <b>stuck</b>' : ''}</td>` +
        `<td><span class="bar"><i style="width:${r.progress * 100}%"></i></span> <span class="progress">${pct(r.progress)}</span></td>` +
        `<td>${rate(r.downRate)}</td><td>${rate(r.upRate)}</td>` +
        `<td class="from-peers" data-value="${r.bytesFromPeers}">${bytes(r.bytesFromPeers)}</td>` +
        `<td class="from-seeder" data-value="${r.bytesFromSeeder}">${bytes(r.bytesFromSeeder)}</td>` +
        `<td>${seconds(Math.max(0, (now - r.lastSeen) / 1000))} ago</td>` +
        `<td class="muted">${esc(r.error ?? '')}</td></tr>`,
    );
  }
  return `<h3 class="muted">${title}</h3><table class="nodes"><thead><tr><th>node</th><th>stage</th><th>progress</th>
    <th>down</th><th>up</th><th>from peers</th><th>from head</th><th>last seen</th><th></th></tr></thead>
    <tbody>${body.join('')}</tbody></table>`;
}

function renderChart(h) {
  const data = [h.t, h.egress.map((v) => v / 2 ** 20), h.down.map((v) => v / 2 ** 20)];
  const el = $('chart');
  const width = el.clientWidth || 800;
  if (!plot) {
    plot = new uPlot(
      {
        width,
        height: 220,
        series: [
          {},
          { label: 'head egress MiB/s', stroke: '#d6743b', width: 2 },
          { label: 'nodes download MiB/s', stroke: '#3d7be0', width: 2 },
        ],
        // The history's span, at least 30 s and at most five minutes (one sample alone would stretch it to years).
        scales: {
          x: { time: true, range: (_u, min, max) => [Math.min(Math.max(min, max - 300), max - 30), max] },
        },
        axes: [{}, { label: 'MiB/s', size: 70 }],
      },
      data,
      el,
    );
    window.addEventListener('resize', () => plot.setSize({ width: el.clientWidth, height: 220 }));
  } else plot.setData(data);
}

connect();
