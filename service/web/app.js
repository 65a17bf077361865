// mlplab dashboard: plain JavaScript, no build step, no CDN. Every figure comes from the API.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $("#view");
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const pct = (x) => (x == null ? "–" : (100 * x).toFixed(2) + " %");
const streams = new Set(); // open EventSources of the current page, closed when it changes

class Problem extends Error {
  constructor(body, status) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.body = body; this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Problem(typeof body === "object" ? body : { title: `HTTP ${response.status}`, detail: body }, response.status);
  return body;
}

function problemHtml(err) {
  const b = err.body || { title: "Error", detail: String(err) };
  const params = (b.invalid_params || []).map((p) => `<li><code>${esc(p.name)}</code>: ${esc(p.reason)}</li>`).join("");
  return `<div class="problem" role="alert"><strong>${esc(b.title)}</strong> (${esc(b.status ?? "")}): ${esc(b.detail)}${params ? `<ul>${params}</ul>` : ""}</div>`;
}

// ---------------------------------------------------------------- charts (canvas)

const PALETTE = ["#2456c7", "#c7452a", "#1c7c3c", "#8e44ad", "#d18a00", "#128a8a", "#b03a74", "#555", "#6b8e23", "#1f77b4"];

function lineChart(canvas, series, { xLabel = "", yLabel = "", logY = false } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 260;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]) && (!logY || p[1] > 0));
  if (!pts.length) { ctx.fillStyle = "#5b6573"; ctx.fillText("no data yet", 10, 20); return; }
  const fy = logY ? Math.log10 : (v) => v;
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => fy(p[1]))), Math.max(...pts.map((p) => fy(p[1])))];
  if (x0 === x1) x1 = x0 + 1; if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const m = { l: 52, r: 10, t: 10, b: 34 };
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (w - m.l - m.r);
  const Y = (y) => h - m.b - ((fy(y) - y0) / (y1 - y0)) * (h - m.t - m.b);
  ctx.strokeStyle = "#d8dde4"; ctx.fillStyle = "#5b6573"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + (i / 4) * (y1 - y0), yy = Y(logY ? 10 ** yv : yv);
    ctx.beginPath(); ctx.moveTo(m.l, yy); ctx.lineTo(w - m.r, yy); ctx.stroke();
    ctx.fillText((logY ? 10 ** yv : yv).toPrecision(3), 4, yy + 4);
  }
  // x ticks: every integer for short ranges (epochs), else five evenly spaced values
  const span = x1 - x0;
  const xs = span <= 10 ? Array.from({ length: Math.floor(span) + 1 }, (_, i) => Math.ceil(x0) + i)
    : [0, 1, 2, 3, 4].map((i) => Math.round(x0 + (i / 4) * span));
  xs.forEach((xv) => ctx.fillText(xv.toLocaleString(), X(xv) - 8, h - m.b + 14));
  ctx.fillText(xLabel, w / 2 - 30, h - 4);
  if (yLabel) ctx.fillText(yLabel, m.l + 4, m.t + 10);
  series.forEach((s, i) => {
    ctx.strokeStyle = s.color || PALETTE[i % PALETTE.length]; ctx.lineWidth = 1.6; ctx.beginPath();
    s.points.filter((p) => Number.isFinite(p[1]) && (!logY || p[1] > 0))
      .forEach((p, j) => (j ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
  });
}

function legend(series) {
  return `<div class="muted" style="font-size:.8rem">${series.map((s, i) =>
    `<span style="color:${s.color || PALETTE[i % PALETTE.length]}">■</span> ${esc(s.label)}`).join(" &nbsp; ")}</div>`;
}

function heatmap(matrix, classes, onCell) {
  const max = Math.max(...matrix.flat().filter((_, k) => k % (matrix.length + 1) !== 0), 1);
  const diagMax = Math.max(...matrix.map((r, i) => r[i]), 1);
  const n = matrix.length;
  const el = document.createElement("div");
  el.className = "heatmap"; el.style.gridTemplateColumns = `3.5rem repeat(${n}, minmax(1.9rem, 1fr))`;
  el.setAttribute("role", "grid"); el.setAttribute("aria-label", "Confusion matrix: rows true class, columns predicted");
  el.innerHTML = `<div class="head">true↓ pred→</div>` + classes.map((c) => `<div class="head" title="${esc(c)}">${esc(String(c).slice(0, 4))}</div>`).join("");
  matrix.forEach((row, i) => {
    el.insertAdjacentHTML("beforeend", `<div class="head" title="${esc(classes[i])}">${esc(String(classes[i]).slice(0, 6))}</div>`);
    row.forEach((v, j) => {
      const b = document.createElement("button");
      b.className = "cell"; b.type = "button"; b.textContent = v;
      const a = i === j ? 0.15 + 0.6 * (v / diagMax) : Math.min(1, v / max);
      b.style.background = i === j ? `rgba(28,124,60,${a})` : `rgba(179,38,30,${v ? 0.08 + 0.8 * a : 0})`;
      b.setAttribute("aria-label", `true ${classes[i]}, predicted ${classes[j]}: ${v} images`);
      b.dataset.label = i; b.dataset.predicted = j;
      b.addEventListener("click", () => onCell(i, j, v));
      el.appendChild(b);
    });
  });
  return el;
}

function progressBar(job) {
  const p = job.progress || {};
  const frac = job.status === "succeeded" ? 1 : p.steps ? (p.step || 0) / p.steps : 0;
  const label = job.status === "queued" ? "queued: waiting for a worker" : job.status === "running"
    ? `epoch ${p.epoch ?? "–"}/${p.epochs} · step ${p.step ?? 0}/${p.steps ?? "?"} · loss ${p.loss == null ? "–" : p.loss.toFixed(4)}`
    : job.status;
  return `<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${Math.round(100 * frac)}" aria-label="progress of job ${job.id}"><span style="width:${(100 * frac).toFixed(1)}%"></span></div>
    <div class="bar-label" data-progress-label>${esc(label)} · ${Math.round(100 * frac)} %</div>`;
}

// ---------------------------------------------------------------- the spec form, built from the OpenAPI schema

let specSchema = null;
async function trainSpecSchema() {
  if (!specSchema) specSchema = (await api("/openapi.json")).components.schemas.TrainSpec;
  return specSchema;
}

function fieldKind(prop) {
  const variants = prop.anyOf || [prop];
  const main = variants.find((v) => v.type !== "null") || prop;
  return { main, nullable: variants.some((v) => v.type === "null") };
}

function limitsText(main) {
  const parts = [];
  if (main.enum) return "one of " + main.enum.join(", ");
  if (main.type === "array") return `${main.minItems}–${main.maxItems} layers of ${main.items.minimum}–${main.items.maximum} units, comma-separated`;
  if (main.exclusiveMinimum != null) parts.push(`> ${main.exclusiveMinimum}`);
  if (main.minimum != null) parts.push(`≥ ${main.minimum}`);
  if (main.exclusiveMaximum != null) parts.push(`< ${main.exclusiveMaximum}`);
  if (main.maximum != null) parts.push(`≤ ${main.maximum}`);
  return parts.join(", ");
}

function specForm(schema, { idPrefix = "spec" } = {}) {
  const form = document.createElement("form");
  form.className = "spec"; form.noValidate = true;
  for (const [name, prop] of Object.entries(schema.properties)) {
    const { main, nullable } = fieldKind(prop);
    const id = `${idPrefix}-${name}`;
    const def = prop.default ?? (name === "hidden_layers" ? [500, 250, 100] : "");
    let input;
    if (main.enum) {
      input = `<select id="${id}" name="${name}">${main.enum.map((v) => `<option ${v === def ? "selected" : ""}>${esc(v)}</option>`).join("")}</select>`;
    } else {
      const value = Array.isArray(def) ? def.join(",") : def ?? "";
      const type = main.type === "array" ? "text" : "number";
      const step = main.type === "integer" ? "1" : "any";
      input = `<input id="${id}" name="${name}" type="${type}" ${type === "number" ? `step="${step}"` : ""} value="${esc(value)}" ${nullable ? 'placeholder="all"' : ""} aria-describedby="${id}-hint ${id}-err">`;
    }
    const hint = `${prop.default !== undefined && prop.default !== null ? `default ${Array.isArray(prop.default) ? prop.default.join(",") : prop.default}; ` : nullable ? "optional; " : "required; "}${limitsText(main)}`;
    form.insertAdjacentHTML("beforeend", `<div class="field" data-field="${name}"><label for="${id}">${esc(name.replace(/_/g, " "))}</label>${input}
      <div class="hint" id="${id}-hint">${esc(hint)}</div><div class="err" id="${id}-err" aria-live="polite"></div></div>`);
  }
  return form;
}

function checkValue(name, prop, raw) {
  const { main, nullable } = fieldKind(prop);
  if (raw === "" || raw == null) return nullable ? { value: null } : prop.default !== undefined ? { skip: true } : { error: "required" };
  if (main.enum) return main.enum.includes(raw) ? { value: raw } : { error: `must be one of ${main.enum.join(", ")}` };
  if (main.type === "array") {
    const items = String(raw).split(",").map((s) => s.trim()).filter(Boolean);
    const nums = items.map(Number);
    if (nums.some((n) => !Number.isInteger(n))) return { error: "whole numbers separated by commas" };
    if (nums.length < main.minItems || nums.length > main.maxItems) return { error: `${main.minItems}–${main.maxItems} layers, got ${nums.length}` };
    const bad = nums.find((n) => n < main.items.minimum || n > main.items.maximum);
    if (bad !== undefined) return { error: `${bad} units: each layer needs ${main.items.minimum}–${main.items.maximum}` };
    return { value: nums };
  }
  const n = Number(raw);
  if (!Number.isFinite(n)) return { error: "must be a number" };
  if (main.type === "integer" && !Number.isInteger(n)) return { error: "must be a whole number" };
  if (main.minimum != null && n < main.minimum) return { error: `must be ≥ ${main.minimum}` };
  if (main.exclusiveMinimum != null && n <= main.exclusiveMinimum) return { error: `must be > ${main.exclusiveMinimum}` };
  if (main.maximum != null && n > main.maximum) return { error: `must be ≤ ${main.maximum}` };
  if (main.exclusiveMaximum != null && n >= main.exclusiveMaximum) return { error: `must be < ${main.exclusiveMaximum}` };
  return { value: n };
}

function readSpec(form, schema) {
  const spec = {}; let ok = true;
  for (const [name, prop] of Object.entries(schema.properties)) {
    const field = form.querySelector(`[data-field="${name}"]`);
    const r = checkValue(name, prop, form.elements[name].value.trim());
    field.classList.toggle("invalid", !!r.error);
    field.querySelector(".err").textContent = r.error ? `${name}: ${r.error}` : "";
    if (r.error) ok = false; else if (!r.skip) spec[name] = r.value;
  }
  return ok ? spec : null;
}

function showServerErrors(form, err) {
  for (const p of err.body?.invalid_params || []) {
    const name = p.name.replace(/^body\./, "").split(".")[0];
    const field = form.querySelector(`[data-field="${name}"]`);
    if (field) { field.classList.add("invalid"); field.querySelector(".err").textContent = `${name}: ${p.reason}`; }
  }
}

// ---------------------------------------------------------------- pages

async function jobsPage() {
  const schema = await trainSpecSchema();
  view().innerHTML = `<h1>Jobs</h1>
    <div class="grid">
      <section class="card" aria-labelledby="submit-h"><h2 id="submit-h">Train a network</h2><div id="form-slot"></div>
        <div class="actions"><button id="submit" type="button">Submit job</button><span class="muted" id="submit-note"></span></div>
        <div id="submit-problem"></div>
        <details style="margin-top:.8rem"><summary>Sweep a grid of values over this spec</summary>
          <label for="grid" class="muted">Grid (JSON: spec field → values; one job per combination)</label>
          <textarea id="grid" rows="3">{"init": ["random", "glorot"], "learning_rate": [0.01, 0.05, 0.1, 0.3]}</textarea>
          <div class="actions"><button id="sweep" type="button" class="secondary">Submit sweep</button></div>
          <div id="sweep-problem"></div></details>
      </section>
      <section class="card" aria-labelledby="sweeps-h"><h2 id="sweeps-h">Sweeps</h2><div id="sweeps"><p class="muted">No sweeps yet: open "Sweep a grid" below the form.</p></div></section>
    </div>
    <section class="card" style="margin-top:1rem" aria-labelledby="jobs-h"><h2 id="jobs-h">All jobs</h2><div class="scroll" id="jobs"></div></section>`;
  const form = specForm(schema);
  $("#form-slot").appendChild(form);
  form.addEventListener("input", () => readSpec(form, schema));
  $("#submit").addEventListener("click", async () => {
    $("#submit-problem").innerHTML = "";
    const spec = readSpec(form, schema);
    if (!spec) { $("#submit-note").textContent = "Fix the fields marked in red."; return; }
    try {
      const job = await api("/jobs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(spec) });
      $("#submit-note").textContent = `Job ${job.id} queued.`;
      await renderJobs();
    } catch (err) { $("#submit-problem").innerHTML = problemHtml(err); showServerErrors(form, err); }
  });
  $("#sweep").addEventListener("click", async () => {
    $("#sweep-problem").innerHTML = "";
    const base = readSpec(form, schema);
    let grid;
    try { grid = JSON.parse($("#grid").value); } catch { $("#sweep-problem").innerHTML = problemHtml({ body: { title: "Invalid grid", detail: "the grid is not valid JSON" } }); return; }
    if (!base) return;
    for (const k of Object.keys(grid)) delete base[k];
    try {
      await api("/sweeps", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ base, grid }) });
      await Promise.all([renderSweeps(), renderJobs()]);
    } catch (err) { $("#sweep-problem").innerHTML = problemHtml(err); }
  });
  await Promise.all([renderJobs(), renderSweeps()]);
  const timer = setInterval(() => (location.hash === "" || location.hash === "#/"
    ? Promise.all([renderJobs(false), renderSweeps()]).catch(() => {}) : clearInterval(timer)), 4000);
}

async function renderSweeps() {
  const sweeps = (await api("/sweeps?limit=5")).data;
  if (!sweeps.length) return;
  $("#sweeps").innerHTML = sweeps.map((s) => `<div style="margin-bottom:.8rem"><strong>Sweep ${esc(s.id.slice(0, 8))}</strong>
    <span class="muted">${s.count} jobs · ${Object.entries(s.status).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ")}</span>
    <div><a href="#/compare?ids=${s.jobs.filter((j) => j.status === "succeeded").map((j) => j.id).join(",")}">compare its models</a></div>
    <table><thead><tr><th>job</th><th>varies</th><th>status</th><th class="right">test</th></tr></thead><tbody>
    ${s.jobs.map((j) => `<tr><td><a href="#/models/${j.id}">${j.id}</a></td><td>${esc(Object.keys(s.grid).map((k) => `${k}=${j.spec[k]}`).join(", "))}</td>
      <td><span class="status ${j.status}">${j.status}</span></td><td class="right">${pct(j.test_accuracy)}</td></tr>`).join("")}</tbody></table></div>`).join("");
}

async function renderJobs(resetStreams = true) {
  const jobs = await api("/jobs?limit=50");
  const el = $("#jobs");
  if (!el) return;
  if (!jobs.count) { el.innerHTML = `<p class="muted">No jobs yet: submit one.</p>`; return; }
  el.innerHTML = `<table><thead><tr><th>id</th><th class="hide-small">name</th><th>status</th><th style="width:30%">progress</th><th class="right">test</th><th></th></tr></thead><tbody>
    ${jobs.data.map((j) => `<tr data-job="${j.id}"><td>${j.id}</td><td class="hide-small" style="word-break:break-all">${esc(j.name)}${j.error ? `<div class="problem">${esc(j.error)}</div>` : ""}</td>
      <td><span class="status ${j.status}" data-status>${j.status}</span></td><td data-progress>${progressBar(j)}</td>
      <td class="right" data-test>${pct(j.test_accuracy)}</td>
      <td>${j.status === "queued" || j.status === "running" ? `<button type="button" class="secondary" data-cancel="${j.id}" aria-label="Cancel job ${j.id}">Cancel</button>` : ""}
          ${j.status === "succeeded" ? `<a class="button secondary" href="#/models/${j.id}" aria-label="Open model ${j.id}">Open</a>` : ""}</td></tr>`).join("")}
    </tbody></table>`;
  el.querySelectorAll("[data-cancel]").forEach((b) => b.addEventListener("click", async () => {
    try { await api(`/jobs/${b.dataset.cancel}/cancel`, { method: "POST" }); } catch (err) { alert(err.message); }
    renderJobs();
  }));
  if (resetStreams) closeStreams();
  // Browsers hold ~6 connections per host: live streams for running jobs only, a few at most.
  const live = new Set([...streams].map((s) => s.jobId));
  jobs.data.filter((j) => j.status === "running" && !live.has(j.id)).slice(0, 3).forEach(followJob);
}

function followJob(job) {
  const source = new EventSource(`/jobs/${job.id}/events`);
  source.jobId = job.id; streams.add(source);
  const row = () => document.querySelector(`tr[data-job="${job.id}"]`);
  const state = { ...job, progress: { ...job.progress } };
  source.addEventListener("progress", (e) => {
    Object.assign(state.progress, JSON.parse(e.data)); state.status = "running";
    const r = row(); if (r) r.querySelector("[data-progress]").innerHTML = progressBar(state);
  });
  source.addEventListener("end", (e) => {
    source.close(); streams.delete(source);
    const final = JSON.parse(e.data);
    const r = row();
    if (r) { r.querySelector("[data-progress]").innerHTML = progressBar(final); r.querySelector("[data-status]").textContent = final.status;
      r.querySelector("[data-status]").className = `status ${final.status}`; r.querySelector("[data-test]").textContent = pct(final.test_accuracy); }
    renderJobs(false).catch(() => {});
  });
  source.onerror = () => { source.close(); streams.delete(source); };
}

function closeStreams() { streams.forEach((s) => s.close()); streams.clear(); }

async function modelPage(id) {
  const [model, losses, epochs] = await Promise.all([api(`/models/${id}`), api(`/jobs/${id}/losses`), api(`/jobs/${id}/epochs`)]);
  const job = await api(`/jobs/${id}`);
  view().innerHTML = `<h1>Model ${id} <span class="muted" style="font-size:.9rem;word-break:break-all">${esc(model.name)}</span></h1>
    <div class="grid">
      <section class="card"><h2>Loss</h2><canvas class="chart" id="loss" aria-label="loss against steps"></canvas></section>
      <section class="card"><h2>Accuracy by epoch</h2><canvas class="chart" id="acc" aria-label="train and test accuracy by epoch"></canvas>
        ${legend([{ label: "train" }, { label: "test" }])}
        <table><thead><tr><th>epoch</th><th class="right">loss</th><th class="right">train</th><th class="right">test</th><th class="right">s</th></tr></thead>
        <tbody>${epochs.map((e) => `<tr><td>${e.epoch}</td><td class="right">${e.loss.toFixed(4)}</td><td class="right">${pct(e.train_accuracy)}</td><td class="right">${pct(e.test_accuracy)}</td><td class="right">${e.seconds.toFixed(1)}</td></tr>`).join("")}</tbody></table></section>
      <section class="card"><h2>Confusion matrix</h2>
        <label for="cm-split">split</label> <select id="cm-split"><option>test</option><option>train</option></select>
        <div id="cm" style="margin-top:.5rem"></div><div id="cell"></div></section>
      <section class="card"><h2>Draw a digit</h2><div class="draw">
        <div><canvas id="pad" width="224" height="224" aria-label="drawing pad: draw a digit with the mouse or a finger"></canvas>
          <div class="actions"><button type="button" id="predict">Predict</button><button type="button" class="secondary" id="clear">Clear</button></div></div>
        <div class="probs" id="probs" aria-live="polite"><p class="muted">Draw a digit, then Predict: the drawing is sent as a PNG and made to look like MNIST by the API.</p></div></div></section>
      <section class="card"><h2>Hyperparameters</h2><table><tbody>
        ${Object.entries(job.spec).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(Array.isArray(v) ? v.join(", ") : v ?? "all")}</td></tr>`).join("")}
        <tr><th>train / test accuracy</th><td>${pct(model.train_accuracy)} / ${pct(model.test_accuracy)}</td></tr>
        <tr><th>training time</th><td>${model.seconds.toFixed(1)} s</td></tr></tbody></table>
        <div class="actions"><a class="button" href="/models/${id}/weights" download>Download weights (.npz)</a>
          <a class="button secondary" href="#/compare?ids=${id}">Compare…</a></div></section>
      <section class="card"><h2>Mistakes</h2><img class="plot" alt="grid of misclassified test images, each captioned true → predicted" src="/models/${id}/mistakes.png?split=test&limit=36"></section>
    </div>`;
  lineChart($("#loss"), [{ label: "loss", points: losses.map((p) => [p.step, p.loss]) }], { xLabel: "step", logY: true });
  lineChart($("#acc"), [{ label: "train", points: epochs.map((e) => [e.epoch, e.train_accuracy]) },
                        { label: "test", points: epochs.map((e) => [e.epoch, e.test_accuracy]) }], { xLabel: "epoch" });
  const showMatrix = async () => {
    const split = $("#cm-split").value;
    const cm = await api(`/models/${id}/confusion-matrix?split=${split}`);
    $("#cm").replaceChildren(heatmap(cm.matrix, cm.classes, (i, j, n) => showCell(id, split, i, j, n, cm.classes, model.dataset)));
  };
  $("#cm-split").addEventListener("change", showMatrix);
  await showMatrix();
  drawingPad(id);
}

async function showCell(id, split, label, predicted, n, classes, dataset) {
  const cell = $("#cell");
  cell.innerHTML = `<p class="muted">Loading the ${n} images…</p>`;
  const page = await api(`/models/${id}/predictions/${split}?label=${label}&predicted=${predicted}&limit=60`);
  cell.innerHTML = `<h3 style="font-size:.95rem;margin:.8rem 0 .2rem">True ${esc(classes[label])}, predicted ${esc(classes[predicted])}: ${page.count} images${page.count > page.data.length ? ` (first ${page.data.length})` : ""}</h3>
    <div class="thumbs" data-cell-images>${page.data.map((o) => `<div class="thumb ${o.label === o.predicted ? "" : "wrong"}">
      <img src="/datasets/${dataset}/${split}/${o.index}.png?scale=2" alt="${split} image ${o.index}, label ${esc(classes[o.label])}">#${o.index}</div>`).join("")}</div>`;
}

function drawingPad(id) {
  const pad = $("#pad"), ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let drawing = false;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
  pad.addEventListener("pointerdown", (e) => { drawing = true; pad.setPointerCapture(e.pointerId); ctx.beginPath(); ctx.moveTo(...at(e)); });
  pad.addEventListener("pointermove", (e) => { if (!drawing) return; ctx.lineTo(...at(e)); ctx.strokeStyle = "#fff"; ctx.lineWidth = 16; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.stroke(); });
  pad.addEventListener("pointerup", () => { drawing = false; });
  $("#clear").addEventListener("click", () => { clear(); $("#probs").innerHTML = ""; });
  $("#predict").addEventListener("click", async () => {
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const body = new FormData(); body.append("file", blob, "drawing.png");
    try {
      const p = await api(`/models/${id}/predict`, { method: "POST", body });
      $("#probs").innerHTML = `<p><strong>Predicted: <span id="predicted">${p.predicted}</span></strong></p>` + p.probabilities.map((v, k) =>
        `<div class="prob ${k === p.predicted ? "top" : ""}"><span>${k}</span><div class="bar"><span style="width:${(100 * v).toFixed(1)}%"></span></div><span class="right">${(100 * v).toFixed(1)}%</span></div>`).join("");
    } catch (err) { $("#probs").innerHTML = problemHtml(err); }
  });
}

async function comparePage(params) {
  const models = await api("/models?sort=created_at");
  const chosen = new Set((params.get("ids") || "").split(",").filter(Boolean).map(Number));
  view().innerHTML = `<h1>Compare</h1><div class="grid"><section class="card"><h2>Pick models</h2>
    ${models.count ? `<div class="scroll" style="max-height:320px"><table><tbody>${models.data.map((m) => `<tr><td><input type="checkbox" id="pick-${m.id}" value="${m.id}" ${chosen.has(m.id) ? "checked" : ""}></td>
      <td><label for="pick-${m.id}">${m.id}: ${esc(m.name)}</label></td><td class="right">${pct(m.test_accuracy)}</td></tr>`).join("")}</tbody></table></div>` : `<p class="muted">No trained models yet.</p>`}
    <div class="actions"><button type="button" id="compare">Compare selected</button></div></section>
    <section class="card"><h2>Loss curves</h2><canvas class="chart" id="curves" aria-label="loss curves of the compared models"></canvas><div id="legend"></div></section></div>
    <section class="card" style="margin-top:1rem"><h2>Hyperparameters and accuracy</h2><div class="scroll" id="table"><p class="muted">Pick two or more models.</p></div></section>
    <section class="card" style="margin-top:1rem"><h2>Confusion matrices (test)</h2><div class="grid" id="matrices"></div></section>`;
  $("#compare").addEventListener("click", () => {
    const ids = [...document.querySelectorAll("input[id^=pick-]:checked")].map((c) => c.value);
    location.hash = `#/compare?ids=${ids.join(",")}`;
  });
  if (chosen.size < 2) return;
  let cmp;
  try { cmp = await api(`/compare?ids=${[...chosen].join(",")}`); } catch (err) { $("#table").innerHTML = problemHtml(err); return; }
  const series = cmp.data.map((m) => ({ label: `${m.id}: ${m.label}`, points: m.losses.map((p) => [p.samples, p.loss]) }));
  lineChart($("#curves"), series, { xLabel: "training images seen", logY: true });
  $("#legend").innerHTML = legend(series);
  const fields = Object.keys(cmp.hyperparameters);
  $("#table").innerHTML = `<table><thead><tr><th>field</th>${cmp.data.map((m) => `<th>model ${m.id}</th>`).join("")}</tr></thead><tbody>
    ${fields.map((f) => `<tr class="${cmp.differing.includes(f) ? "diff" : ""}"><th>${esc(f)}</th>${cmp.hyperparameters[f].map((v) => `<td>${esc(Array.isArray(v) ? v.join(",") : v ?? "all")}</td>`).join("")}</tr>`).join("")}
    <tr><th>train accuracy</th>${cmp.data.map((m) => `<td>${pct(m.train_accuracy)}</td>`).join("")}</tr>
    <tr><th>test accuracy</th>${cmp.data.map((m) => `<td><strong>${pct(m.test_accuracy)}</strong></td>`).join("")}</tr></tbody></table>
    <p class="muted">Highlighted rows differ between the models.</p>`;
  $("#matrices").innerHTML = cmp.data.map((m) => `<figure style="margin:0"><img class="plot" src="/models/${m.id}/confusion-matrix.png?split=test" alt="confusion matrix of model ${m.id}"><figcaption class="muted">model ${m.id}: ${esc(m.label)}</figcaption></figure>`).join("");
}

async function datasetsPage(params) {
  const [datasets, models] = await Promise.all([api("/datasets"), api("/models")]);
  const name = params.get("name") || "mnist", split = params.get("split") || "test";
  const offset = Number(params.get("offset") || 0), model = params.get("model") || "";
  const go = (changes) => { const p = new URLSearchParams({ name, split, offset, model, ...changes }); location.hash = `#/datasets?${p}`; };
  view().innerHTML = `<h1>Datasets</h1><section class="card"><div class="pager">
    <label for="ds-name">dataset</label><select id="ds-name">${datasets.data.filter((d) => d.present || d.will_download).map((d) => `<option ${d.name === name ? "selected" : ""}>${d.name}</option>`).join("")}</select>
    <label for="ds-split">split</label><select id="ds-split"><option ${split === "test" ? "selected" : ""}>test</option><option ${split === "train" ? "selected" : ""}>train</option></select>
    <label for="ds-model">predictions of</label><select id="ds-model"><option value="">no model</option>${models.data.filter((m) => m.dataset === name).map((m) => `<option value="${m.id}" ${String(m.id) === model ? "selected" : ""}>${m.id}: ${esc(m.name.slice(0, 50))}</option>`).join("")}</select>
    <button type="button" class="secondary" id="prev" ${offset ? "" : "disabled"}>◀ Previous</button><button type="button" class="secondary" id="next">Next ▶</button>
    <span class="muted" id="range"></span></div><div class="thumbs" id="images"></div></section>`;
  $("#ds-name").addEventListener("change", (e) => go({ name: e.target.value, offset: 0, model: "" }));
  $("#ds-split").addEventListener("change", (e) => go({ split: e.target.value, offset: 0 }));
  $("#ds-model").addEventListener("change", (e) => go({ model: e.target.value }));
  $("#prev").addEventListener("click", () => go({ offset: Math.max(0, offset - 48) }));
  $("#next").addEventListener("click", () => go({ offset: offset + 48 }));
  const labels = await api(`/datasets/${name}/${split}?offset=${offset}&limit=48`);
  const preds = model ? await api(`/models/${model}/predictions/${split}?offset=${offset}&limit=48`) : null;
  $("#range").textContent = `${offset}–${offset + labels.data.length - 1} of ${labels.count.toLocaleString()}`;
  $("#next").disabled = offset + 48 >= labels.count;
  $("#images").innerHTML = labels.data.map((l, k) => {
    const p = preds?.data[k];
    return `<div class="thumb ${p && p.predicted !== l.label ? "wrong" : ""}"><img src="/datasets/${name}/${split}/${l.index}.png?scale=2" alt="${split} image ${l.index}">
      #${l.index} ${esc(labels.classes[l.label])}${p ? ` → ${esc(labels.classes[p.predicted])}` : ""}</div>`;
  }).join("");
}

// ---------------------------------------------------------------- routing

async function route() {
  closeStreams();
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const section = path.split("/")[1] || "jobs";
  document.querySelectorAll("[data-nav]").forEach((a) =>
    a.dataset.nav === section ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current"));
  try {
    if (section === "models" && path.split("/")[2]) await modelPage(Number(path.split("/")[2]));
    else if (section === "compare") await comparePage(params);
    else if (section === "datasets") await datasetsPage(params);
    else await jobsPage();
  } catch (err) {
    view().innerHTML = problemHtml(err instanceof Problem ? err : { body: { title: "Error", detail: String(err) } });
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
