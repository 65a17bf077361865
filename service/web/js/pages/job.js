// One job: its status, live progress and loss curve (over Server-Sent Events), its error, its spec,
// and once it has succeeded, the way to its model.
import * as api from "../api.js";
import { duration, fill, h, pct, seconds, timeCell } from "../dom.js";
import { accuracyAxis, extend, lineChart, lossAxis, redrawTrace } from "../charts.js";
import { reload } from "../router.js";
import { CORE_FIELDS, shortLabel, showValue, trainSpecSchema, unused } from "../spec.js";
import { etaSeconds, problemView, progressBar, statusBadge, warningView } from "../widgets.js";

const RETRY_MS = 3000;

export async function jobPage(ctx, root) {
  const id = ctx.args[0];
  const [job, spec, losses, epochs, datasets] = await Promise.all([api.job(id), trainSpecSchema(), api.lossCurve(id), api.epochs(id), api.datasets()]);
  // a model: which epoch's weights it kept (early stopping's may be neither the last trained nor asked for)
  const model = job.status === "succeeded" ? await api.model(id).catch(() => null) : null;
  const classes = api.classesOf(datasets, job.spec.dataset).length;
  if (!ctx.live) return;
  const lossChart = h("div", { class: "chart", id: "loss-chart", role: "img", "aria-label": "loss against training step" });
  const accChart = h("div", { class: "chart", id: "accuracy-chart", role: "img", "aria-label": "train and test accuracy by epoch" });
  const progress = h("div", { id: "job-progress" }, progressBar(job));
  // ended before its first epoch (diverged at step 4, say): an empty chart on an axis of -1 to 6 said nothing
  const noEpoch = !inFlight(job) && !epochs.length;
  fill(root,
    h("h1", null, `Job ${job.id} `, statusBadge(job.status)),
    h("p", { class: "subtitle", title: job.name }, shortLabel(job.spec, spec, CORE_FIELDS)),
    job.error ? h("div", { class: "problem", role: "alert", id: "job-error" }, h("strong", null, "Error: "), job.error) : null,
    warningView(job),
    prunedNote(job, epochs),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Progress"), progress, facts(job, model),
        h("div", { class: "actions", id: "job-actions" }, actions(job))),
      h("section", { class: "card" }, h("h2", null, "Loss"), lossChart),
      h("section", { class: "card" }, h("h2", null, "Accuracy by epoch"), noEpoch
        ? h("p", { class: "muted", id: "no-epoch" }, `No epoch ended before the job ${job.status === "cancelled" ? "was cancelled" : job.status}: there is no accuracy to draw.`)
        : [accChart, epochNote()]),
      h("section", { class: "card" }, h("h2", null, "Spec"), specTable(job.spec, spec))));
  await Promise.all([
    drawLossChart(lossChart, job, losses, epochs, classes, ctx.signal),
    noEpoch ? null : lineChart(accChart, accuracyTraces(epochs), { x: { title: { text: "epoch" }, dtick: 1 }, y: accuracyAxis(accuracyValues(epochs)), signal: ctx.signal,
      marks: model && model.best_epoch < model.stopped_epoch ? [{ x: model.best_epoch, text: " kept" }] : [] }),
  ]);
  if (inFlight(job)) follow(ctx, root, job, epochs, { lossChart, accChart, progress });
}

const lossTrace = (losses, name = "mean loss since the previous point") =>
  ({ name, x: losses.map((p) => p.step), y: losses.map((p) => p.loss), hovertemplate: "%{y:.4f}" });

// train, validation (what every "best" is chosen on), test (the final, unbiased figure): the same order
// in the charts, the live stream's extend() and the tables.
const ACCURACIES = [["train", "train_accuracy"], ["validation", "validation_accuracy"], ["test", "test_accuracy"]];
// What an epoch's figures are measured on (service/ml/evaluation.py): said under each chart and table of them.
export const epochNote = () => h("p", { class: "muted epoch-note" }, "Open markers: train and test accuracy of an epoch before the last trained, on fixed samples of their images; filled: on every image, as the last epoch's and validation at every epoch.");

// a figure on a sample of the images (epochNote) an open marker, one on every image a filled one
export const accuracyTraces = (epochs) => ACCURACIES.map(([name, key]) =>
  ({ name, x: epochs.map((e) => e.epoch), y: epochs.map((e) => e[key]), mode: "lines+markers",
    marker: { symbol: epochs.map((e) => (e.sampled && key !== "validation_accuracy" ? "circle-open" : "circle")) } }));

export const accuracyValues = (epochs) => epochs.flatMap((e) => ACCURACIES.map(([, key]) => e[key]));

export const epochAccuracies = (ep) => ACCURACIES.map(([, key]) => [ep[key]]);

/** "train / validation / test accuracy" for a job or a model; validation "–" without a split. */
export const accuracyLine = (m) => `train / validation / test (final) accuracy ${ACCURACIES.map(([, key]) => pct(m[key])).join(" / ")}`;

/** "kept epoch 7 of 9 trained (10 asked for: early stopping)", or the epochs asked for, all trained and the last kept. */
const keptText = (model) => (model.best_epoch === model.stopped_epoch && model.stopped_epoch === model.epochs
  ? String(model.epochs)
  : `kept epoch ${model.best_epoch} of ${model.stopped_epoch} trained (${model.epochs} asked for${model.stopped_epoch < model.epochs ? ": early stopping ended it" : ""})`);

/** Why a pruned trial has no accuracies: where its study's pruner stopped it, and what it had reached. */
function prunedNote(job, epochs) {
  if (job.status !== "pruned" || !epochs.length) return null;
  const last = epochs.at(-1);
  return h("p", { class: "muted", id: "pruned-note" }, `Pruned: its study's pruner stopped it after epoch ${last.epoch} of ${job.spec.epochs}, `,
    `its validation accuracy then (${pct(last.validation_accuracy)}) not among the best of the study's trials at that epoch. `,
    "A pruned trial frees its worker for the next; it has no model, and so no final accuracies.");
}

function facts(job, model = null) {
  const row = (k, ...v) => h("tr", null, h("th", null, k), h("td", null, ...v));
  const ended = job.finished_at ?? null;
  return h("table", { class: "facts" }, h("tbody", null,
    row("created", timeCell(job.created_at)),
    row("started", timeCell(job.started_at)),
    row("finished", timeCell(ended)),
    row("duration", job.started_at ? duration(seconds(job.started_at, ended ?? Date.now())) : "–"),
    job.status === "running" ? row("ETA", duration(etaSeconds(job))) : null,
    model ? row("epochs", keptText(model)) : null,
    row("attempts", job.attempts),
    job.sweep_id ? row("sweep", h("a", { href: `#/sweeps/${encodeURIComponent(job.sweep_id)}` }, job.sweep_id)) : null,
    job.study_id != null ? row("study", h("a", { href: `#/studies/${job.study_id}` }, `study ${job.study_id}, trial ${job.trial_number}`)) : null,
    row("train / validation / test (final) accuracy", ACCURACIES.map(([, key]) => pct(job[key])).join(" / "))));
}

function actions(job) {
  if (job.status === "succeeded") return h("a", { class: "button", href: `#/models/${job.id}`, id: "open-model" }, "Open the model");
  if (!inFlight(job)) return null;
  const problem = h("div");
  const request = async () => {
    cancel.disabled = true;
    try { await api.cancelJob(job.id); fill(problem, "Cancel requested."); } catch (err) { fill(problem, problemView(err, request)); }
  };
  const cancel = h("button", { type: "button", class: "secondary", id: "cancel", onclick: request }, "Cancel");
  return [cancel, problem];
}

const inFlight = (job) => job.status === "queued" || job.status === "running";

// Steps an epoch takes, where an epoch's mean loss is drawn at its end (0: unknown, an old job's).
const stepsPerEpoch = (job) => (job.progress.steps || 0) / (job.spec.epochs || 1);

// An epoch's mean training loss and its validation loss, drawn at the step where the epoch ended: one
// logged step an epoch hid a diverging epoch's 68, and where the two part the network overfits.
const EPOCH_LOSSES = [
  ["mean loss per epoch", "loss", { size: 8 }],
  ["validation loss per epoch", "validation_loss", { size: 9, symbol: "diamond-open" }],
];

function epochLossTraces(job, epochs) {
  const perEpoch = stepsPerEpoch(job);
  return EPOCH_LOSSES.map(([name, key, marker]) => {
    const style = { name, mode: "markers", marker, hovertemplate: "%{y:.4f}" };
    const shown = key !== "validation_loss" || job.spec.validation_size > 0;
    // steps not known yet (queued: the live stream draws its points) or ever (an old job: no legend)
    if (!perEpoch) return { ...style, x: [], y: [], showlegend: shown && inFlight(job) };
    return { ...style, x: epochs.map((e) => e.epoch * perEpoch), y: epochs.map((e) => e[key] ?? null), showlegend: shown };
  });
}

/** The loss a network that gives each of `classes` classes the same probability has: ln(classes). */
export const chanceLevel = (classes) => ({ y: Math.log(classes), text: `a uniform guess: ln ${classes} = ${Math.log(classes).toFixed(2)}` });

/** A job's or model's loss chart: the logged means, each epoch's training and validation loss, and
 * the chance level; the axis labelled over them all (an epoch's mean may lie above every logged step). */
export function drawLossChart(el, job, losses, epochs, classes, signal) {
  const traces = [lossTrace(losses), ...epochLossTraces(job, epochs)], level = chanceLevel(classes);
  return lineChart(el, traces, { x: { title: { text: "step" } }, y: lossAxis([...traces.flatMap((t) => t.y), level.y]), levels: [level], signal });
}

export function specTable(values, spec) {
  // momentum is read by the momentum optimizer alone: "0.9" beside sgd read as sgd with momentum
  const shown = (k, v) => (unused(k, values)
    ? h("span", { class: "muted" }, `– (unused by ${values.optimizer})`) : showValue(v, spec.properties[k]));
  return h("table", { class: "spec-table" }, h("tbody", null, Object.entries(values).map(([k, v]) =>
    h("tr", { dataset: { field: k } }, h("th", null, k), h("td", null, shown(k, v))))));
}

function follow(ctx, root, job, epochs, { lossChart, accChart, progress }) {
  const source = new EventSource(api.eventsUrl(job.id));
  ctx.onLeave(() => source.close());
  const state = { ...job, progress: { ...job.progress } };
  const lastStep = () => lossChart.data?.[0]?.x.at(-1) ?? 0;
  // Each epoch's mean at the step where the epoch ended: from the job's step count, or until the page
  // knows it, the step of the progress just before the epoch's event (an epoch's last step is always
  // recorded). Drawn anew as the count becomes known, which can be after an epoch's event.
  const means = epochs.map((e) => ({ epoch: e.epoch, values: e, end: 0 }));
  let placedBy = stepsPerEpoch(job);
  const drawMeans = () => {
    placedBy = stepsPerEpoch(state);
    const placed = means.map((m) => [m.epoch * placedBy || m.end, m.values]).filter(([x]) => x);
    EPOCH_LOSSES.forEach(([, key], k) => redrawTrace(lossChart, 1 + k, placed.map(([x]) => x), placed.map(([, v]) => v[key] ?? null)));
  };
  const placeMeans = () => stepsPerEpoch(state) !== placedBy && drawMeans();
  // the heading's status and the facts (started, duration, ETA, attempts) as the stream tells them
  const redraw = () => {
    root.querySelector("h1 [data-status]")?.replaceWith(statusBadge(state.status));
    root.querySelector("table.facts")?.replaceWith(facts(state));
  };
  source.addEventListener("status", (e) => {
    const { status, attempts } = JSON.parse(e.data);
    // a new attempt trains again from its checkpoint: its curves start over, so the page does
    if (state.attempts >= 1 && attempts > state.attempts) { source.close(); if (ctx.live) reload(); return; }
    if (status === state.status) return;
    api.job(job.id).then((fresh) => { // when it started, and its attempts, as the job row has them
      if (!ctx.live) return;
      // the stream's progress where it is ahead: this answer can come after later events
      const ahead = (state.progress.step ?? 0) > (fresh.progress.step ?? 0);
      Object.assign(state, fresh, { progress: ahead ? state.progress : { ...fresh.progress } });
      redraw();
      placeMeans();
    }).catch(() => {});
  });
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    Object.assign(state.progress, p);
    state.status = "running";
    fill(progress, progressBar(state));
    redraw();
    if (p.step > lastStep()) extend(lossChart, [[p.step]], [[p.loss]]);
    placeMeans();
  });
  source.addEventListener("epoch", (e) => {
    const ep = JSON.parse(e.data);
    if ((accChart.data?.[0]?.x.at(-1) ?? 0) < ep.epoch) extend(accChart, ACCURACIES.map(() => [ep.epoch]), epochAccuracies(ep));
    if (means.some((m) => m.epoch >= ep.epoch)) return;
    means.push({ epoch: ep.epoch, values: ep, end: state.progress.epoch === ep.epoch ? state.progress.step : 0 });
    drawMeans();
  });
  source.addEventListener("end", () => {
    source.close();
    if (ctx.live) reload(); // the finished job, read again
  });
  // A lost stream (the API restarted, a ticket expired): read the job again in a while, which follows anew.
  source.onerror = () => {
    source.close();
    const timer = setTimeout(() => ctx.live && reload(), RETRY_MS);
    ctx.onLeave(() => clearTimeout(timer));
  };
}
