// One study: its progress (trials by status, pruned ones apart, an ETA), its best trial (validation
// accuracy, test as the final figure) a click from its model, each trial's validation accuracy against
// its number with the best so far, each searched parameter against validation accuracy, parallel
// coordinates of its succeeded trials, the parameters' importance, and every trial.
import * as api from "../api.js";
import { counted, duration, fill, h, pct, seconds } from "../dom.js";
import { PALETTE, PARALLEL_NOTE, accuracyAxis, decadeAxis, lineChart, parallelChart } from "../charts.js";
import { reload } from "../router.js";
import { fieldText, showValue, trainSpecSchema } from "../spec.js";
import { chanceMark, statusBadge, warningView } from "../widgets.js";

const REFRESH_MS = 3000;
const ENDED = ["succeeded", "pruned", "failed", "cancelled"];
const PRUNED_COLOR = "#9aa3ae";

export async function studyPage(ctx, root) {
  const [study, importance, spec] = await Promise.all([api.study(ctx.args[0]), api.studyImportance(ctx.args[0]), trainSpecSchema()]);
  if (!ctx.live) return;
  const epochsEach = study.config.base.epochs ?? spec.properties.epochs.default;
  const fields = Object.keys(study.config.space);
  const box = (id, label) => h("div", { class: "chart", id, role: "img", "aria-label": label });
  const history = box("study-history", "validation accuracy of each trial against its number, and the best so far");
  const bars = box("study-importance", "each searched parameter's importance for validation accuracy");
  const charts = fields.map((f) => box(`study-by-${f}`, `validation accuracy against ${f}`));
  const parcoords = box("study-parcoords", "parallel coordinates of the succeeded trials");
  fill(root,
    h("h1", null, `Study ${study.id}`),
    h("p", { class: "subtitle" }, `${study.status} · ${study.config.sampler} sampler · ${study.config.pruner === "none" ? "no" : study.config.pruner} pruner · `,
      `searches ${fields.join(", ")} · ranked by validation accuracy`),
    study.sampler_note ? h("p", { class: "muted", id: "sampler-note" }, `${study.sampler_note}.`) : null,
    h("div", { class: "grid" },
      h("section", { class: "card", id: "study-progress" }, h("h2", null, "Progress"), progressView(study, epochsEach)),
      h("section", { class: "card", id: "study-best" }, h("h2", null, "Best trial"), bestView(study, spec))),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Validation accuracy by trial"), history),
      h("section", { class: "card" }, h("h2", null, "Parameter importance"), bars)),
    h("div", { class: "grid" }, fields.map((f, i) => h("section", { class: "card" }, h("h2", null, `Validation accuracy by ${f}`), charts[i]))),
    h("section", { class: "card" }, h("h2", null, "Parallel coordinates"), parcoords, h("p", { class: "muted" }, PARALLEL_NOTE)),
    h("section", { class: "card" }, h("h2", null, "Trials"), h("div", { class: "scroll" }, trialsTable(study, spec))));
  if (study.status === "running") {
    const timer = setTimeout(() => ctx.live && reload(), REFRESH_MS);
    ctx.onLeave(() => clearTimeout(timer));
  }
  await Promise.all([
    historyChart(history, study, ctx.signal),
    importanceChart(bars, importance, fields.length, ctx.signal),
    ...fields.map((f, i) => fieldChart(charts[i], study, f, spec, ctx.signal)),
    trialsParcoords(parcoords, study, fields, spec, ctx.signal),
  ]);
}

/** Seconds until the study ends, at the pace its epochs have been trained so far: the epochs its
 * unfinished and unstarted trials have left (each `epochsEach`; a pruned one ends sooner) over the
 * epochs trained per second since it was created; null before the first epoch. */
export function studyEta(study, epochsEach, now = Date.now()) {
  if (study.status !== "running" || !study.epochs_trained) return null;
  const open = study.trials.filter((t) => !ENDED.includes(t.status));
  const left = open.reduce((n, t) => n + Math.max(0, epochsEach - t.epochs), 0) + (study.config.trials - study.trials.length) * epochsEach;
  return left / (study.epochs_trained / seconds(study.created_at, now));
}


function progressView(study, epochsEach) {
  const c = study.counts;
  const ended = ENDED.reduce((n, s) => n + c[s], 0);
  const total = study.config.trials;
  const percent = Math.round((100 * ended) / Math.max(total, 1));
  const toCome = study.status === "running" ? total - study.trials.length : 0;
  const more = (n, what) => (n ? ` · ${n} ${what}` : "");
  return [
    h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent, "aria-label": "trials of the study ended" },
      h("span", { style: { width: `${percent}%` } })),
    h("p", { id: "study-counts" }, `${ended} of ${total} trials ended · ${c.succeeded} succeeded · ${c.pruned} pruned`,
      more(c.failed, "failed"), more(c.cancelled, "cancelled"), ` · ${c.running} running · ${c.queued} queued`, more(toCome, "to come"),
      study.status === "running" ? ` · ETA ${duration(studyEta(study, epochsEach))}` : ""),
    h("p", { class: "muted" }, `${counted(study.epochs_trained, "epoch")} trained, ${counted(study.config.parallelism, "trial")} at once`),
  ];
}

// A sampled number to 3 digits; the rest as the job table shows them (early_stopping "off", layers "64-32").
const rounded = (v) => (typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(3)) : v);
const params = (trial, spec) => Object.entries(trial.params).map(([k, v]) => fieldText(spec, k, rounded(v))).join(", ");

function bestView(study, spec) {
  const best = study.best;
  if (!best) return h("p", { class: "muted" }, "No trial has succeeded yet.");
  return [
    h("p", { id: "best-trial" }, `Trial ${best.number}: `, h("strong", null, params(best, spec))),
    h("p", null, "validation accuracy ", h("strong", { id: "best-accuracy" }, pct(best.validation_accuracy)),
      best.best_epoch ? ` (the epoch its model kept, ${best.best_epoch} of ${best.epochs}: the best by validation loss with early stopping, else the last)` : ""),
    h("p", null, `test accuracy (final, unbiased): ${pct(best.test_accuracy)}`),
    study.best_note ? h("p", { class: "muted", id: "best-note" }, `${study.best_note[0].toUpperCase()}${study.best_note.slice(1)}.`) : null,
    warningView(best),
    h("div", { class: "actions" }, h("a", { class: "button", id: "best-model", href: `#/models/${best.job_id}` }, `Open its model (${best.job_id})`)),
  ];
}

/** Its validation accuracy; a pruned trial's where the pruner stopped it ("87.10 % at epoch 1"), as the CLI says it. */
const validationText = (t) => (t.validation_accuracy == null && t.status === "pruned" && t.validation_curve.length
  ? `${pct(t.validation_curve.at(-1))} at epoch ${t.validation_curve.length}` : pct(t.validation_accuracy));

function trialsTable(study, spec) {
  const th = (t, cls) => h("th", { class: cls }, t);
  return h("table", { id: "trials" },
    h("thead", null, h("tr", null, th("#"), th("status"), th("parameters"), th("epochs", "right"), th("kept epoch", "right"),
      th("validation", "right"), th("test (final)", "right"), th("job"))),
    h("tbody", null, study.trials.map((t) => h("tr", { class: t.number === study.best?.number ? "best" : null, dataset: { trial: t.number } },
      // a failed trial's reason (a diverged learning rate) was only on its job's page
      h("td", null, t.number), h("td", null, statusBadge(t.status), t.error ? h("div", { class: "problem" }, t.error) : null), h("td", null, params(t, spec)),
      h("td", { class: "right" }, t.epochs), h("td", { class: "right" }, t.best_epoch ?? "–"),
      h("td", { class: ["right", "nowrap"], dataset: { validation: "" } }, validationText(t)), h("td", { class: ["right", "nowrap"] }, pct(t.test_accuracy), chanceMark(t)),
      h("td", null, t.status === "succeeded" ? h("a", { href: `#/models/${t.job_id}` }, `model ${t.job_id}`) : h("a", { href: `#/jobs/${t.job_id}` }, `job ${t.job_id}`))))));
}

/** The trials a chart can place: succeeded ones at their validation accuracy, pruned ones at their
 * last epoch's (where the pruner stopped them). */
function placed(study) {
  const succeeded = study.trials.filter((t) => t.status === "succeeded" && t.validation_accuracy != null)
    .map((t) => ({ trial: t, y: t.validation_accuracy }));
  const pruned = study.trials.filter((t) => t.status === "pruned" && t.validation_curve.length)
    .map((t) => ({ trial: t, y: t.validation_curve.at(-1) }));
  return { succeeded, pruned };
}

const markers = (name, points, x, color) => ({
  name, mode: "markers", x: points.map((p) => x(p.trial)), y: points.map((p) => p.y),
  marker: { color, size: 8 }, text: points.map((p) => `trial ${p.trial.number}`), hovertemplate: "%{text}: %{y:.2%}<extra></extra>",
});

function pointTraces(study, x) {
  const { succeeded, pruned } = placed(study);
  return [markers("trial", succeeded, x, PALETTE[0]), pruned.length ? markers("pruned (at its last epoch)", pruned, x, PRUNED_COLOR) : null].filter(Boolean);
}

const nothingYet = (el) => { fill(el, h("p", { class: "muted" }, "No trial has finished yet.")); return null; };

function historyChart(el, study, signal) {
  const traces = pointTraces(study, (t) => t.number);
  if (!traces[0].x.length) return nothingYet(el);
  let best = -Infinity;
  const line = study.trials.filter((t) => t.status === "succeeded" && t.validation_accuracy != null)
    .map((t) => ({ x: t.number, y: (best = Math.max(best, t.validation_accuracy)) }));
  traces.push({ name: "best so far", mode: "lines", x: line.map((p) => p.x), y: line.map((p) => p.y), line: { shape: "hv", color: PALETTE[1] }, hovertemplate: "best so far: %{y:.2%}<extra></extra>" });
  return lineChart(el, traces, {
    x: { title: { text: "trial number" }, tickformat: "d", dtick: study.trials.length <= 20 ? 1 : null },
    y: accuracyAxis(traces.flatMap((t) => t.y), "validation accuracy"),
    signal,
  });
}

function fieldChart(el, study, field, spec, signal) {
  const dimension = study.config.space[field];
  const traces = pointTraces(study, (t) => (dimension.choice ? showValue(t.params[field], spec.properties[field]) : t.params[field]));
  if (!traces[0].x.length) return nothingYet(el);
  const type = dimension.choice ? "category" : dimension.log ? "log" : "linear";
  const bounds = dimension.float ?? dimension.int;
  // choices in the order the study lists them, as a sweep's grid: in the order trials drew them, 64 came before 32
  const order = dimension.choice ? { categoryorder: "array", categoryarray: dimension.choice.map((v) => showValue(v, spec.properties[field])) } : {};
  return lineChart(el, traces, {
    x: type === "log" ? decadeAxis(bounds, field) : { title: { text: field }, type, ...order },
    y: accuracyAxis(traces.flatMap((t) => t.y), "validation accuracy"),
    signal,
  });
}

/** A searched number's values as up to four ranges of its interval (even steps of its log for a log
 * scale), so that parallel categories draw a few bands rather than a category per trial. */
function binned(values, [lo, hi], log) {
  const f = log ? Math.log10 : (v) => v, a = f(lo), b = f(hi), bins = b > a ? 4 : 1; // one range when low = high
  const edge = (k) => { const v = a + (k * (b - a)) / bins; return String(Number((log ? 10 ** v : v).toPrecision(2))); };
  const order = [...Array(bins).keys()].map((k) => `${edge(k)}–${edge(k + 1)}`);
  const bin = (v) => order[Math.min(bins - 1, Math.max(0, Math.floor((bins * (f(v) - a)) / (b - a || 1))))];
  const binnedValues = values.map(bin);
  return { values: binnedValues, order: order.filter((o) => binnedValues.includes(o)) }; // parcats fails on an empty category
}

function trialsParcoords(el, study, fields, spec, signal) {
  const { succeeded } = placed(study);
  if (!succeeded.length) return nothingYet(el);
  const dims = fields.map((f) => {
    const dimension = study.config.space[f], values = succeeded.map((p) => p.trial.params[f]);
    const bounds = dimension.float ?? dimension.int;
    return bounds ? { label: f, ...binned(values, bounds, dimension.log) } : { label: f, values, show: (v) => showValue(v, spec.properties[f]) };
  });
  return parallelChart(el, dims, { label: "validation accuracy", values: succeeded.map((p) => p.y) }, { signal });
}

function importanceChart(el, { importance, not_varied: fixed, trials, warning }, searched, signal) {
  const names = Object.keys(importance);
  const unranked = fixed.length ? ` Not ranked, one value among them: ${fixed.join(", ")}.` : "";
  if (!names.length) {
    const why = warning ? `${warning[0].toUpperCase()}${warning.slice(1)}.`
      : trials >= 2 && fixed.length === searched ? `No searched field took two values among the ${trials} succeeded trials: nothing to rank.` : "Shown once two trials have succeeded with different accuracies.";
    fill(el, h("p", { class: "muted" }, why));
    return null;
  }
  el.before(h("p", { class: "muted", id: "importance-trials" }, `${warning ? `F${warning.slice(1)}` : `From ${trials} succeeded trials`}.${unranked}${names.length === 1 ? ` Only ${names[0]} varied: it has all the credit by definition.` : ""}`));
  // too few trials to say much (the warning): hatched, not drawn as solid as a ranking that holds
  const marker = warning ? { color: "rgba(0,0,0,0)", line: { color: PALETTE[0], width: 1.5 }, pattern: { shape: "/", fgcolor: PALETTE[0] } } : { color: PALETTE[0] };
  const bar = { type: "bar", name: "importance (PED-ANOVA)", x: names, y: names.map((n) => importance[n]), marker, hovertemplate: "%{x}: %{y:.0%}<extra></extra>" };
  return lineChart(el, [bar], { x: { type: "category" }, y: { title: { text: "importance (all sum to 100 %)" }, range: [0, 1], tickformat: ".0%" }, signal });
}
