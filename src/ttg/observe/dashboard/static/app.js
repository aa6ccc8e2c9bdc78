// TTG dashboard: polls the JSON endpoints and draws. No framework, no build step.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("ttg-token") || "";
if (token) sessionStorage.setItem("ttg-token", token);

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["X-TTG-Token"] = token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
function rate(r) { return r === null || r === undefined ? "–" : (r >= 100 ? Math.round(r).toLocaleString("en-US") : r.toFixed(1)); }
function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}
function ago(t, now) { return t === null ? "before this page first looked" : duration(Math.max(0, now - t)) + " ago"; }

function problem(error) {
  const p = document.getElementById("problem");
  p.hidden = !error;
  p.textContent = error ? String(error.message || error) : "";
}

function progressBar(s, big) {
  const pct = s.total ? (100 * s.done) / s.total : 0;
  const bar = el("div", { class: big ? "bar big" : "bar" });
  bar.append(el("div", { style: `width:${pct.toFixed(2)}%` }));
  if (s.failed) bar.append(el("div", { class: "failed", style: `width:${((100 * s.failed) / s.total).toFixed(2)}%` }));
  bar.append(el("span", { class: "done", text: `${num(s.done)} / ${num(s.total)} (${pct.toFixed(1)}%)` }));
  return bar;
}

function tick() { document.getElementById("clock").textContent = new Date().toLocaleTimeString(); }

// -- the list of sweeps ------------------------------------------------------------------

async function refreshIndex() {
  try {
    const ws = await api("/api/workers");
    const alive = ws.workers.filter(w => w.status === "alive").length;
    const stale = ws.workers.filter(w => w.status === "stale").length;
    document.getElementById("alive").textContent = `${alive} worker${alive === 1 ? "" : "s"} alive` + (stale ? `, ${stale} stale` : "");
    const sweeps = await api("/api/sweeps");
    const body = document.querySelector("#sweeps tbody");
    body.replaceChildren();
    if (!sweeps.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted", text: "no sweeps yet; start one with ttg run or ttg submit" })));
    for (const s of sweeps) {
      const link = el("a", { href: withToken("/sweeps/" + encodeURIComponent(s.id)), text: s.id });
      body.append(el("tr", { "data-sweep": s.id },
        el("td", {}, link), el("td", { text: s.function.split("/").pop() }),
        el("td", { class: "state-" + s.state, text: s.state }), el("td", {}, progressBar(s, false)),
        el("td", { text: num(s.failed) }), el("td", { text: `${num(s.queued)} + ${num(s.leased)}` }),
        el("td", { text: num(s.dead) }), el("td", { text: rate(s.throughput) }), el("td", { text: duration(s.eta) })));
    }
    problem(null);
  } catch (e) { problem(e); }
  tick();
}

// -- one sweep ----------------------------------------------------------------------------

const sweepId = decodeURIComponent(location.pathname.replace(/^\/sweeps\//, ""));
let plotChoice = { x: params.get("x"), y: params.get("y"), value: params.get("value") };

async function refreshSweep() {
  try {
    const d = await api("/api/sweeps/" + encodeURIComponent(sweepId));
    const s = d.sweep;
    document.getElementById("name").textContent = s.id;
    document.title = "TTG " + s.id;
    const bar = progressBar(s, true);
    document.querySelector(".bar.big").replaceWith(bar);
    const facts = [["state", s.state], ["function", s.function], ["space", `${s.kind}, ${num(s.total)} points`],
      ["ok", num(s.by_status.ok)], ["error", num(s.by_status.error)], ["crashed", num(s.by_status.crashed)],
      ["timeout", num(s.by_status.timeout)], ["queued", num(s.queued)], ["leased", num(s.leased)],
      ["dead-lettered", num(s.dead)], ["points/s", rate(s.throughput)], ["ETA", duration(s.eta)]];
    document.getElementById("facts").replaceChildren(...facts.map(([k, v]) =>
      el("div", {}, el("dt", { text: k }), el("dd", { class: k === "state" ? "state-" + v : "", text: v }))));
    drawThroughput(d.throughput, d.now, d.sweep.state);
    drawWorkers(d.presence, d.now);
    document.getElementById("errcount").textContent = s.failed ? `(${num(s.failed)} failed points${s.failed > d.errors.length ? ", first " + d.errors.length + " shown" : ""})` : "(none)";
    document.querySelector("#errors tbody").replaceChildren(...d.errors.map(e => el("tr", { "data-index": e.index },
      el("td", { text: e.index }), el("td", { text: e.status }),
      el("td", {}, el("details", {}, el("summary", { text: `${e.type}: ${e.message}` }), el("pre", { text: e.traceback || "(no traceback)" }))),
      el("td", {}, el("code", { text: JSON.stringify(e.point) })))));
    const leaving = d.presence.filter(w => w.status === "alive" && w.refusing && w.refusing[s.id]);
    const other = leaving.filter(w => w.refusing[s.id].includes("other code"));
    document.getElementById("dead").replaceChildren(
      ...(other.length ? [el("p", { class: "problem", "data-problem": "other-code",
        text: `${other.length} worker${other.length > 1 ? "s have" : " has"} other code for this sweep: ${other[0].refusing[s.id]}` })] : []),
      ...leaving.filter(w => !other.includes(w)).map(w => el("p", { class: "problem", "data-problem": "refusing",
        text: `worker ${w.worker} leaves this sweep to others: ${w.refusing[s.id]}` })),
      ...d.dead.map(x => el("p", { class: "problem", text: `dead-lettered chunk ${x.chunk}: ${x.reason}` })));
    problem(null);
  } catch (e) { problem(e); }
  tick();
}

function holds(w) {
  if (!w.leases.length) return w.status === "alive" ? "idle" : "–";
  const shown = w.leases.slice(0, 3).map(x => `${x.sweep} [${num(x.start)}, ${num(x.stop)})`).join(", ");
  return w.leases.length > 3 ? `${shown} and ${w.leases.length - 3} more` : shown;
}

function drawWorkers(workers, now) {
  document.querySelector("#workers tbody").replaceChildren(...(workers.length ? workers.map(w =>
    el("tr", { "data-worker": w.worker, "data-status": w.status },
      el("td", { text: w.worker }), el("td", { text: w.host || "–" }),
      el("td", { class: "status-" + w.status, text: w.status + (w.state === "stopping" ? " (stopping)" : "") }),
      el("td", { class: "heartbeat", text: w.age === null ? "none" : duration(w.age) + " ago" }),
      el("td", { text: num(w.children) }), el("td", { text: num(w.chunks_done) }), el("td", { text: holds(w) }),
      el("td", { text: w.chunks ? `${num(w.points)} in ${num(w.chunks)} chunks` : "–" }),
      el("td", { text: w.chunks ? ago(w.last_commit, now) : "–" }))) :
    [el("tr", {}, el("td", { colspan: 9, class: "muted", text: "no worker holds or has committed any of its chunks yet" }))]));
}

function drawThroughput(series, now, state) {
  const svg = document.getElementById("throughput");
  const W = 600, H = 220, L = 48, B = 22, T = 8;
  const ns = "http://www.w3.org/2000/svg";
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  svg.replaceChildren();
  if (series.length < 2) {
    const text = state === "done" ? "finished before this dashboard followed it (points/s: its average)" : "measuring…";
    svg.append(node("text", { x: 20, y: 110, fill: "#6b7385" }, text));
    return;
  }
  const t0 = series[0][0], t1 = Math.max(series[series.length - 1][0], t0 + 1);
  const top = Math.max(...series.map(p => p[1]), 1e-9) * 1.1;
  const x = t => L + ((t - t0) / (t1 - t0)) * (W - L - 8), y = v => H - B - (v / top) * (H - B - T);
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    svg.append(node("line", { x1: L, x2: W - 8, y1: y(v), y2: y(v), stroke: "#e4e7ec" }));
    svg.append(node("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7385" }, rate(v)));
  }
  svg.append(node("text", { x: L, y: H - 5, "font-size": 11, fill: "#6b7385" }, `${duration(now - t0)} ago`));
  svg.append(node("text", { x: W - 8, y: H - 5, "text-anchor": "end", "font-size": 11, fill: "#6b7385" }, "now"));
  const pts = series.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
  svg.append(node("polyline", { points: pts, fill: "none", stroke: "#2f6fdb", "stroke-width": 2 }));
}

// viridis, sampled at 5 stops
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function color(f) {
  const t = Math.min(Math.max(f, 0), 1) * (VIRIDIS.length - 1), k = Math.min(Math.floor(t), VIRIDIS.length - 2), u = t - k;
  const c = VIRIDIS[k].map((a, i) => Math.round(a + (VIRIDIS[k + 1][i] - a) * u));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function fillSelect(id, fields, chosen, allowNone) {
  const select = document.getElementById(id);
  const options = (allowNone ? [""] : []).concat(fields);
  if (select.options.length !== options.length) {
    select.replaceChildren(...options.map(f => el("option", { value: f, text: f || "(none: a line)" })));
  }
  select.value = chosen || "";
}

async function refreshPlot() {
  const q = new URLSearchParams();
  for (const k of ["x", "y", "value"]) if (plotChoice[k]) q.set(k, plotChoice[k]);
  if (plotChoice.x && !plotChoice.y) q.set("y", "");
  try {
    const p = await api(`/api/sweeps/${encodeURIComponent(sweepId)}/plot?${q}`);
    const box = document.getElementById("plot");
    if (!p.kind) { box.textContent = "no results yet"; return; }
    fillSelect("px", p.fields, p.x, false); fillSelect("py", p.fields, p.y, true); fillSelect("pv", p.fields, p.value, false);
    document.getElementById("plotinfo").textContent = `${num(p.count)} of ${num(p.points)} points`;
    const canvas = box.querySelector("canvas") || box.appendChild(el("canvas", { width: 640, height: 400 }));
    if (p.kind === "heatmap") drawHeatmap(canvas, p); else drawLine(canvas, p);
    canvas.dataset.kind = p.kind;
    canvas.dataset.drawn = String(p.count);
  } catch (e) { problem(e); }
}

function axisLabels(ctx, labels, along, from, to, fixed) {
  const n = labels.length, step = Math.max(1, Math.ceil(n / 8));
  for (let k = 0; k < n; k += step) {
    const pos = from + ((k + 0.5) / n) * (to - from);
    if (along === "x") ctx.fillText(labels[k], pos, fixed); else ctx.fillText(labels[k], fixed, pos);
  }
}

function drawHeatmap(canvas, p) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 70, B = 40, R = 70, T = 10;
  ctx.clearRect(0, 0, W, H);
  const nx = p.xlabels.length, ny = p.ylabels.length, cw = (W - L - R) / nx, ch = (H - B - T) / ny;
  const lo = p.min, hi = p.max === p.min ? p.min + 1 : p.max;
  for (let r = 0; r < ny; r++) for (let c = 0; c < nx; c++) {
    const v = p.cells[r][c];
    ctx.fillStyle = v === null ? "#eef0f3" : color((v - lo) / (hi - lo));
    ctx.fillRect(L + c * cw, H - B - (r + 1) * ch, Math.ceil(cw), Math.ceil(ch));
  }
  ctx.fillStyle = "#1d2330"; ctx.font = "11px system-ui"; ctx.textAlign = "center";
  axisLabels(ctx, p.xlabels, "x", L, W - R, H - B + 14);
  ctx.fillText(p.x, L + (W - L - R) / 2, H - 6);
  ctx.textAlign = "right";
  axisLabels(ctx, p.ylabels.slice().reverse(), "y", T, H - B, L - 6);
  ctx.save(); ctx.translate(12, T + (H - B - T) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.fillText(p.y, 0, 0); ctx.restore();
  for (let k = 0; k < 50; k++) { ctx.fillStyle = color(k / 49); ctx.fillRect(W - R + 16, H - B - ((k + 1) * (H - B - T)) / 50, 14, (H - B - T) / 50 + 1); }
  ctx.fillStyle = "#1d2330"; ctx.textAlign = "left";
  if (p.max !== null) { ctx.fillText(Number(p.max).toPrecision(3), W - R + 34, T + 8); ctx.fillText(Number(p.min).toPrecision(3), W - R + 34, H - B); }
  ctx.fillText(p.value, W - R + 10, H - 6);
}

function drawLine(canvas, p) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 64, B = 40, R = 16, T = 12;
  ctx.clearRect(0, 0, W, H);
  const vals = p.values.filter(v => v !== null);
  if (!vals.length) return;
  const lo = Math.min(...vals), hi = Math.max(...vals) === lo ? lo + 1 : Math.max(...vals), n = p.values.length;
  const x = k => L + ((k + 0.5) / n) * (W - L - R), y = v => H - B - ((v - lo) / (hi - lo)) * (H - B - T);
  ctx.strokeStyle = "#e4e7ec"; ctx.fillStyle = "#1d2330"; ctx.font = "11px system-ui"; ctx.textAlign = "right";
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - R, y(v)); ctx.stroke();
    ctx.fillText(Number(v).toPrecision(3), L - 6, y(v) + 4);
  }
  ctx.strokeStyle = "#2f6fdb"; ctx.lineWidth = 2; ctx.beginPath();
  let pen = false;
  p.values.forEach((v, k) => { if (v === null) { pen = false; return; } if (pen) ctx.lineTo(x(k), y(v)); else ctx.moveTo(x(k), y(v)); pen = true; });
  ctx.stroke(); ctx.lineWidth = 1;
  ctx.textAlign = "center"; axisLabels(ctx, p.xlabels, "x", L, W - R, H - B + 14);
  ctx.fillText(p.x, L + (W - L - R) / 2, H - 6);
  ctx.save(); ctx.translate(12, T + (H - B - T) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(p.value, 0, 0); ctx.restore();
}

async function act(name) {
  const what = name === "cancel" ? "drop its queued chunks (results so far stay; running it again resumes)"
    : "delete its failed records and queue those indices again";
  if (!window.confirm(`${name === "cancel" ? "Cancel" : "Retry"} sweep ${sweepId}? This will ${what}.`)) return;
  try {
    const r = await api(`/api/sweeps/${encodeURIComponent(sweepId)}/${name}`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-TTG-Action": name },
      body: JSON.stringify({ confirm: sweepId }) });
    document.getElementById("actionresult").textContent = name === "cancel"
      ? `cancelled: ${r.dropped_chunks} chunks dropped` : `retrying ${r.requeued_points} points`;
    refreshSweep();
  } catch (e) { problem(e); }
}

function every(ms, fn) { fn(); setInterval(fn, ms); }

for (const a of document.querySelectorAll("a[data-link]")) a.href = withToken(a.getAttribute("href"));
if (document.body.dataset.page === "index") {
  every(1000, refreshIndex);
} else {
  document.getElementById("cancel").onclick = () => act("cancel");
  document.getElementById("retry").onclick = () => act("retry");
  for (const id of ["px", "py", "pv"]) {
    document.getElementById(id).onchange = () => {
      plotChoice = { x: document.getElementById("px").value, y: document.getElementById("py").value,
                     value: document.getElementById("pv").value };
      refreshPlot();
    };
  }
  every(1000, refreshSweep);
  every(2000, refreshPlot);
}
