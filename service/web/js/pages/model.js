// A trained model: curves, the confusion matrix (a cell opens its images, any image its
// probabilities), precision/recall/F1 per class, the mistakes it is surest of and the most frequent
// ones, a pad to draw a digit (or an image to upload) with the 28x28 input the model saw.
import * as api from "../api.js";
import { $, digits, duration, fill, h, pct } from "../dom.js";
import { accuracyAxis, lineChart } from "../charts.js";
import { reload } from "../router.js";
import { CORE_FIELDS, shortLabel, trainSpecSchema } from "../spec.js";
import { confusionGrid, probabilityBars, problemView, thumb, warningView } from "../widgets.js";
import { accuracyLine, accuracyTraces, accuracyValues, epochNote, drawLossChart, specTable } from "./job.js";

const CELL_IMAGES = 60;
const MISTAKE_CELLS = 6, MISTAKES_PER_CELL = 5; // the most frequent confusions, a few images of each
const SUREST_MISTAKES = 24;

export async function modelPage(ctx, root) {
  // An alias is resolved once: the whole page shows that model, even if the alias moves meanwhile.
  let model;
  try { model = await api.model(ctx.args[0]); } catch (err) {
    // a job with no model (failed, running): the way to it, where its status and error are
    if (err.status !== 409 || digits(ctx.args[0]) == null) throw err;
    fill(root, h("h1", null, `Model ${ctx.args[0]}`), problemView(err, reload), h("p", null, h("a", { id: "its-job", href: `#/jobs/${ctx.args[0]}` }, `Job ${ctx.args[0]}`), ": its status, progress and error."));
    return;
  }
  const id = model.id;
  const [job, spec, losses, epochs] = await Promise.all([api.job(id), trainSpecSchema(), api.lossCurve(id), api.epochs(id)]);
  if (!ctx.live) return;
  const classes = api.classesOf(await api.datasets(), model.dataset);
  const lossChart = h("div", { class: "chart", id: "loss-chart", role: "img", "aria-label": "loss against training step" });
  const accChart = h("div", { class: "chart", id: "accuracy-chart", role: "img", "aria-label": "train and test accuracy by epoch" });
  // validation, the images that ranked it, when it held some out; ?split= picks one
  const splits = ["test", ...(model.validation_size ? ["validation"] : []), "train"];
  const asked = ctx.params.get("split");
  const split = h("select", { id: "cm-split" }, splits.map((s) => h("option", { value: s, selected: s === asked }, s)));
  const detail = h("div", { id: "image-detail", class: "image-detail", "aria-live": "polite" },
    h("p", { class: "muted" }, "Click an image (a mistake, or one of a confusion-matrix cell) to see the ten probabilities the model gave it."));
  const show = (s, index) => showImage(detail, { id, dataset: model.dataset, split: s, index, classes });
  fill(root,
    h("h1", null, `Model ${model.id}`, model.aliases.map((name) => [" ", h("a", { class: ["status", "alias"], href: `#/models/${name}`, title: `alias ${name}`, dataset: { alias: name } }, name)])),
    h("p", { class: "subtitle", title: model.name }, shortLabel(job.spec, spec, CORE_FIELDS), " · ", h("a", { href: `#/jobs/${model.id}` }, "its job"),
      job.sweep_id ? [" · ", h("a", { id: "its-sweep", href: `#/sweeps/${encodeURIComponent(job.sweep_id)}` }, `sweep ${job.sweep_id}`)] : null,
      job.study_id != null ? [" · ", h("a", { id: "its-study", href: `#/studies/${job.study_id}` }, `study ${job.study_id}, trial ${job.trial_number}`)] : null),
    warningView(model),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Loss"), lossChart),
      h("section", { class: "card" }, h("h2", null, "Accuracy by epoch"), accChart, epochNote(), epochTable(epochs)),
      h("section", { class: "card", id: "confusion" }, h("h2", null, "Confusion matrix"),
        h("label", { for: "cm-split" }, "split "), split, h("div", { id: "cm", class: "heatmap-scroll" }), h("div", { id: "cell" })),
      h("section", { class: "card" }, h("h2", null, "Precision, recall, F1"), h("div", { id: "scores", class: "scroll" })),
      h("section", { class: "card" }, h("h2", null, "Surest mistakes"), h("div", { id: "surest" })),
      h("section", { class: "card" }, h("h2", null, "Most frequent mistakes"), h("div", { id: "mistakes" })),
      h("section", { class: "card" }, h("h2", null, "An image"), detail),
      drawSection(id, classes),
      h("section", { class: "card" }, h("h2", null, "Hyperparameters"), specTable(job.spec, spec),
        h("p", { id: "model-accuracy" }, `${accuracyLine(model)} · training time ${duration(model.seconds)}`),
        h("p", { class: "muted", id: "model-epochs" }, stoppedNote(model)),
        model.validation_note ? h("p", { class: "muted", id: "validation-note" }, `Its rank: ${model.validation_note}.`) : null,
        h("div", { class: "actions" }, h("a", { class: "button", href: api.weightsUrl(id), download: "" }, "Download weights (.npz)"),
          h("a", { class: ["button", "secondary"], href: api.onnxUrl(id), download: "", id: "download-onnx" }, "ONNX"),
          h("a", { class: ["button", "secondary"], href: `#/compare?ids=${model.id}` }, "Compare…"))),
      provenanceSection(job)));
  const showMatrix = async () => {
    const asked = split.value;
    const current = () => ctx.live && split.value === asked; // a slower answer for an earlier choice is dropped
    const cm = await api.confusion(id, asked);
    if (!current()) return;
    fill($("#cell", root));
    fill($("#cm", root), confusionGrid(cm.matrix, cm.classes, (i, j, n, button) => showCell($("#cell", root), { id, dataset: model.dataset, split: cm.split, label: i, predicted: j, n, classes: cm.classes, show })));
    fill($("#scores", root), scoresTable(cm));
    for (const panel of ["#surest", "#mistakes"]) fill($(panel, root), h("p", { class: "muted", dataset: { loading: "" } }, `Loading the ${cm.split} split's mistakes…`));
    const [surest, frequent] = await Promise.all([surestMistakes({ id, dataset: model.dataset, cm, show }), mistakes({ id, dataset: model.dataset, cm, show })]);
    if (!current()) return;
    fill($("#surest", root), surest);
    fill($("#mistakes", root), frequent);
  };
  const redrawMatrix = () => showMatrix().catch((err) => fill($("#cm", root), problemView(err, redrawMatrix)));
  split.addEventListener("change", redrawMatrix);
  await Promise.all([
    drawLossChart(lossChart, job, losses, epochs, classes.length, ctx.signal),
    lineChart(accChart, accuracyTraces(epochs), { x: { title: { text: "epoch" }, dtick: 1 }, y: accuracyAxis(accuracyValues(epochs)), signal: ctx.signal,
      marks: model.best_epoch < model.stopped_epoch ? [{ x: model.best_epoch, text: " kept" }] : [] }),
    showMatrix(),
  ]);
}

/** What trained the model (GET /jobs/{id}'s provenance), and how a reproduction compares with its original. */
function provenanceSection(job) {
  const p = job.provenance, r = job.reproduction;
  const rows = p ? Object.entries(p).filter(([, v]) => v != null && !(Array.isArray(v) && !v.length)).map(([k, v]) => [k, k === "threads_changed" ? threadChanges(v) : v]) : [];
  return h("section", { class: "card", id: "provenance" }, h("h2", null, "Provenance"),
    r ? h("p", { id: "reproduction" }, h("a", { href: `#/models/${r.of}` }, `Reproduces model ${r.of}`), ": ", r.summary)
      : job.reproduces ? h("p", null, `Reproduces model ${job.reproduces}.`) : null,
    p ? h("table", { class: "provenance" }, h("tbody", null, rows.map(([k, v]) => h("tr", null, h("th", null, k.replaceAll("_", " ")), h("td", null, String(v))))))
      : h("p", { class: "muted" }, "Not recorded: trained before mlplab kept provenance."));
}

/** [[epoch, threads], ...] as "2 in epoch 3, 1 in epoch 5": the host's other jobs changed its threads. */
function threadChanges(changes) {
  return changes.map(([epoch, threads]) => `${threads} in epoch ${epoch}`).join(", ");
}

/** Which epoch's weights these are, and where early stopping ended training. */
function stoppedNote(model) {
  const stopped = model.stopped_epoch < model.epochs ? `; early stopping ended training after epoch ${model.stopped_epoch} of ${model.epochs}` : "";
  return `The weights of epoch ${model.best_epoch}${model.best_epoch < model.stopped_epoch ? " (the lowest validation loss)" : ""}${stopped}.`;
}

function epochTable(epochs) {
  const num = (x) => (x == null ? "–" : x.toFixed(4));
  return h("details", null, h("summary", null, "by epoch, as numbers"), h("table", null,
    h("thead", null, h("tr", null, ["epoch", "loss", "validation loss", "train", "validation", "test", "time"].map((t, k) => h("th", { class: k ? "right" : null }, t)))),
    h("tbody", null, epochs.map((e) => h("tr", null, h("td", null, e.epoch), h("td", { class: "right" }, num(e.loss)), h("td", { class: "right" }, num(e.validation_loss)),
      h("td", { class: "right" }, pct(e.train_accuracy)), h("td", { class: "right" }, pct(e.validation_accuracy)), h("td", { class: "right" }, pct(e.test_accuracy)),
      h("td", { class: "right" }, duration(e.seconds)))))));
}

/** The API's precision, recall and F1 of each class (read from the confusion matrix), and their mean. */
function scoresTable(cm) {
  const num = (x) => (x == null ? "–" : x.toFixed(3));
  const scores = (s) => [num(s.precision), num(s.recall), num(s.f1)].map((v) => h("td", { class: "right" }, v));
  return h("table", { class: "scores", id: "scores-table" },
    h("caption", { class: "muted" }, `${cm.split} split; precision: of the images predicted as the class, how many are; recall: of the class's images, how many were found; mean: over the classes the split has as a label or a prediction, an undefined score (–) as 0`),
    h("thead", null, h("tr", null, ["class", "precision", "recall", "F1", "images"].map((t, k) => h("th", { class: k ? "right" : null }, t)))),
    h("tbody", null, cm.per_class.map((s) => h("tr", null, h("td", null, cm.classes[s.label]), scores(s), h("td", { class: "right" }, s.support.toLocaleString())))),
    h("tfoot", null, h("tr", null, h("th", null, "mean"), scores(cm.macro_average), h("td"))));
}

// The file a split's images are in, and its images' outcomes: validation is held out of the train file.
const fileOf = (split) => (split === "validation" ? "train" : split);
const outcomes = (id, split, query) => api.outcomes(id, fileOf(split), split === "validation" ? { ...query, images: "validation" } : query);

async function showCell(el, { id, dataset, split, label, predicted, n, classes, show }) {
  fill(el, h("p", { class: "muted" }, `Loading the ${n} images…`));
  const page = await outcomes(id, split, { label, predicted, limit: CELL_IMAGES });
  fill(el, h("h3", null, `True ${classes[label]}, predicted ${classes[predicted]}: ${page.count} images`, page.count > page.data.length ? ` (first ${page.data.length})` : ""),
    h("div", { class: "thumbs", dataset: { cellImages: "" } }, page.data.map((o) => thumb({
      src: api.imageUrl(dataset, fileOf(split), o.index), alt: `${split} image ${o.index}, label ${classes[o.label]}`,
      caption: `#${o.index}`, wrong: o.label !== o.predicted, onClick: () => show(fileOf(split), o.index),
    }))));
}

/** A few images of each of the most frequent confusions (true → predicted), largest first. */
async function mistakes({ id, dataset, cm, show }) {
  const cells = cm.matrix.flatMap((row, i) => row.map((n, j) => ({ i, j, n }))).filter((c) => c.i !== c.j && c.n > 0)
    .sort((a, b) => b.n - a.n).slice(0, MISTAKE_CELLS);
  if (!cells.length) return h("p", { class: "muted" }, `No mistakes on the ${cm.split} split.`);
  const pages = await Promise.all(cells.map((c) => outcomes(id, cm.split, { label: c.i, predicted: c.j, limit: MISTAKES_PER_CELL })));
  return h("div", { class: "mistakes" }, cells.map((c, k) => h("div", { class: "mistake-group" },
    h("h3", null, `${cm.classes[c.i]} → ${cm.classes[c.j]}: ${c.n} images`),
    h("div", { class: "thumbs" }, pages[k].data.map((o) => thumb({
      src: api.imageUrl(dataset, fileOf(cm.split), o.index), alt: `${cm.split} image ${o.index}: a ${cm.classes[o.label]} predicted ${cm.classes[o.predicted]}`,
      caption: `#${o.index}`, wrong: true, onClick: () => show(fileOf(cm.split), o.index),
    }))))));
}

/** The images it gets wrong, those it gives its wrong class the highest probability first: confident
 * mistakes are the ones a probability threshold would not catch. */
async function surestMistakes({ id, dataset, cm, show }) {
  const page = await outcomes(id, cm.split, { correct: false, order: "confidence", limit: SUREST_MISTAKES });
  if (!page.count) return h("p", { class: "muted" }, `No mistakes on the ${cm.split} split.`);
  const name = (k) => cm.classes[k];
  return [
    h("p", { class: "muted" }, `${page.count.toLocaleString()} ${cm.split} images wrong; the ${page.data.length} it is surest of, surest first (true → predicted, its probability):`),
    h("div", { class: "thumbs", dataset: { surest: "" } }, page.data.map((o) => thumb({
      src: api.imageUrl(dataset, fileOf(cm.split), o.index), alt: `${cm.split} image ${o.index}: a ${name(o.label)} predicted ${name(o.predicted)} at ${pct(o.probability, 1)}`,
      caption: [`${o.label}→${o.predicted}`, h("br"), pct(o.probability)], wrong: true, onClick: () => show(fileOf(cm.split), o.index),
    }))),
  ];
}

const wrongNote = (p, classes) => (p.correct ? null
  : h("p", { class: "muted" }, `red: the class it predicted; ◂ ${classes[p.label]}, the image's label, at ${pct(p.probabilities[p.label], 1)}`));

async function showImage(el, { id, dataset, split, index, classes }) {
  fill(el, h("p", { class: "muted" }, "Loading…"));
  try {
    const p = await api.imagePrediction(id, split, index);
    fill(el, h("div", { class: "draw" },
      h("figure", null, h("img", { class: "digit-large", src: api.imageUrl(dataset, split, index, 6), alt: `${split} image ${index}`, width: 168, height: 168 }),
        h("figcaption", null, `${split} #${index}: label ${classes[p.label]}, predicted `, h("strong", { class: p.correct ? "ok" : "bad" }, classes[p.predicted]))),
      h("div", { class: "probs" }, probabilityBars(p.probabilities, classes, p.predicted, p.label), wrongNote(p, classes))));
  } catch (err) { fill(el, problemView(err, () => showImage(el, { id, dataset, split, index, classes }))); }
  el.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function drawSection(id, classes) {
  const pad = h("canvas", { id: "pad", width: 224, height: 224, "aria-label": "drawing pad: draw a digit with the mouse or a finger" });
  const probs = h("div", { class: "probs", id: "probs", "aria-live": "polite" },
    h("p", { class: "muted" }, "Draw a digit, then Predict, or upload an image of one: it is made to look like MNIST by the API, which shows the 28×28 image the model saw."));
  const ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let drawing = false;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height]; };
  pad.addEventListener("pointerdown", (e) => { drawing = true; pad.setPointerCapture(e.pointerId); ctx.beginPath(); ctx.moveTo(...at(e)); });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e)); ctx.strokeStyle = "#fff"; ctx.lineWidth = 16; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.stroke();
  });
  pad.addEventListener("pointerup", () => { drawing = false; });
  const send = async (blob) => {
    try { fill(probs, predictionView(await api.predictImage(id, blob), classes)); } catch (err) { fill(probs, problemView(err, () => send(blob))); }
  };
  const predict = async () => send(await new Promise((resolve) => pad.toBlob(resolve, "image/png")));
  const upload = h("input", { type: "file", id: "upload", accept: "image/png,image/jpeg,image/gif,image/bmp,image/webp",
    onchange: (e) => { if (e.target.files[0]) send(e.target.files[0]); } });
  return h("section", { class: "card" }, h("h2", null, "Draw a digit"), h("div", { class: "draw" },
    h("div", null, pad, h("div", { class: "actions" }, h("button", { type: "button", id: "predict", onclick: predict }, "Predict"),
      h("button", { type: "button", class: "secondary", id: "clear", onclick: () => { clear(); probs.replaceChildren(); } }, "Clear")),
      h("label", { class: "upload" }, "or upload an image ", upload)),
    probs));
}

/** The prediction: a warning when the input looks unlike the training images (or the model is
 * unsure), the 28x28 image the model saw, and the ten probabilities. */
function predictionView(p, classes) {
  return [
    p.warning ? h("div", { class: "warning", role: "alert", id: "input-warning", dataset: { outOfDistribution: String(p.out_of_distribution) } }, p.warning) : null,
    h("div", { class: "draw" },
      h("figure", { class: "seen" }, seenCanvas(p.pixels), h("figcaption", { class: "muted" }, "what the model saw")),
      h("div", { class: "probs" }, h("p", null, h("strong", null, "Predicted: ", h("span", { id: "predicted" }, classes[p.predicted]))),
        probabilityBars(p.probabilities, classes, p.predicted))),
  ];
}

/** The API's 784 values (0-255, row by row) as a 28x28 canvas, drawn large by CSS. */
function seenCanvas(pixels) {
  const canvas = h("canvas", { id: "seen", width: 28, height: 28, role: "img", "aria-label": "the 28×28 image the model saw" });
  const g = canvas.getContext("2d");
  const image = g.createImageData(28, 28);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  g.putImageData(image, 0, 0);
  return canvas;
}
