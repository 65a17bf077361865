// Models side by side: pick them (best first, filtered by sweep or study), then which is best and by
// how much, accuracy per epoch (train, validation, test toggled) and loss per epoch (and smoothed per
// step) on common axes, the hyperparameters that differ (all on a toggle), per-class accuracy, the
// confusion matrices on one colour scale and the difference of two.
import * as api from "../api.js";
import { $$, digits, fill, gapPoints, h, pct, pText } from "../dom.js";
import { PALETTE, accuracyAxis, ema, lineChart, lossAxis, plotText } from "../charts.js";
import { go, reload, withParams } from "../router.js";
import { shortLabel, shortPart, showValue, trainSpecSchema, unused, variedInGroups } from "../spec.js";
import { chanceMark, confusionGrid, matrixScale, problemView, tint } from "../widgets.js";
import { chanceLevel, epochNote } from "./job.js";

const SPLITS = { train: "dot", validation: "solid", test: "dash" }; // each split's line dash

export async function comparePage(ctx, root) {
  const ids = ctx.params.get("ids") || "";
  const from = { sweep: ctx.params.get("sweep") || "", study: ctx.params.get("study") || "" };
  const chosen = new Set(ids.split(",").map(digits).filter((n) => n != null));
  const [models, schema] = await Promise.all([api.models({ limit: 100 }), trainSpecSchema()]);
  if (!ctx.live) return;
  const accChart = h("div", { class: "chart", id: "compare-accuracy", role: "img", "aria-label": "accuracy by epoch of the compared models" });
  const lossChart = h("div", { class: "chart", id: "compare-loss", role: "img", "aria-label": "loss by epoch of the compared models" });
  const toggles = h("div", { class: "toggles", id: "split-toggles" }, Object.keys(SPLITS).map((s) =>
    h("label", null, h("input", { type: "checkbox", value: s, checked: s !== "train", dataset: { split: s } }), ` ${s} `)));
  fill(root, h("h1", null, "Compare"),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Pick models"), picker(models, chosen, from, schema),
        h("div", { class: "actions" }, h("button", { type: "button", id: "compare", onclick: () => {
          go(withParams({ ids: $$("input[data-pick]:checked", root).map((c) => c.value).join(",") }));
        } }, "Compare selected"))),
      h("section", { class: "card", id: "compare-best" }, h("h2", null, "Best, and by how much"), h("p", { class: "muted" }, "Pick two or more models."))),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Accuracy by epoch"), toggles, accChart,
        h("p", { class: "muted" }, "A legend entry a model, toggling its curves: solid validation, dashed test, dotted train; the thick one is the best."), epochNote()),
      h("section", { class: "card" }, h("h2", null, "Loss by epoch, and as recorded (smoothed)"), lossChart,
        h("p", { class: "muted" }, "A legend entry a model: solid validation and dotted train, each epoch's mean; thin, the recorded losses (each the mean since the one before) smoothed."))),
    h("section", { class: "card" }, h("h2", null, "Hyperparameters and accuracy"),
      h("label", null, h("input", { type: "checkbox", id: "show-all" }), " every hyperparameter, not only those that differ"),
      h("div", { class: "scroll", id: "table" })),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Recall per class (test), the best F1 marked"), h("div", { class: "scroll", id: "per-class" }),
        // beside the table, not its caption: a caption is the table's width, cut mid-word in a narrow scroller
        h("p", { class: "muted", id: "per-class-note" }, PER_CLASS_NOTE)),
      h("section", { class: "card" }, h("h2", null, "Confusion matrices: the difference (test)"), h("div", { class: "scroll", id: "difference" }))),
    h("section", { class: "card" }, h("h2", null, "Confusion matrices (test)"), h("div", { class: "grid", id: "matrices" })));
  const tokens = ids.split(",").filter(Boolean);
  if (tokens.length < 2 && tokens.every((t) => digits(t) != null)) return; // nothing to compare yet; anything else is for the API to refuse
  let cmp;
  try { cmp = await api.compare(ids); } catch (err) { if (ctx.live) fill(root.querySelector("#table"), problemView(err, reload)); return; }
  if (!ctx.live) return;
  const cms = await Promise.all(cmp.data.map((m) => api.confusion(m.id, "test")));
  if (!ctx.live) return;
  const rank = ranking(cmp.data);
  const names = legendNames(cmp, schema, rank.crown);
  const showTable = () => fill(root.querySelector("#table"), hyperparameters(cmp, rank, root.querySelector("#show-all").checked, schema));
  root.querySelector("#show-all").addEventListener("change", showTable);
  showTable();
  fill(root.querySelector("#compare-best"), h("h2", null, "Best, and by how much"), bestSummary(rank), confounded(cmp.differing));
  fill(root.querySelector("#per-class"), perClass(cmp.data, cms, rank.crown));
  // a column a model: past four, half the page hid the last ones behind a scroll; the difference beside it
  // then sat alone in half a row, its last columns behind a scroll: each gets the row
  if (cmp.data.length > 4) for (const id of ["#per-class", "#difference"]) root.querySelector(id).closest("section").style.gridColumn = "1 / -1";
  fill(root.querySelector("#difference"), difference(cmp.data, cms, rank));
  fill(root.querySelector("#matrices"), matrices(cmp.data, cms, rank.crown));
  const drawAccuracy = () => accuracyChart(accChart, cmp.data, names, rank.crown, $$("input[data-split]:checked", toggles).map((c) => c.value), ctx.signal);
  toggles.addEventListener("change", () => drawAccuracy());
  await Promise.all([drawAccuracy(), lossChartOf(lossChart, cmp.data, names, cms[0].classes.length, ctx.signal)]);
}

/** Best first, as the API ranks (service/selection.py rank_key, the store's BEST_FIRST): by validation
 * accuracy; those without one after, by test; equals, the newer job (never test: that would select on
 * the test set). `by`: what ranked the best;
 * `tied`: the models level with the first on it, when more than one is (none of them is then `crown`ed). */
export function ranking(models) {
  const key = (m) => [m.validation_accuracy == null, -(m.validation_accuracy ?? m.test_accuracy ?? -1), -m.id];
  const order = [...models].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const i = x.findIndex((v, k) => v !== y[k]);
    return i < 0 ? 0 : x[i] < y[i] ? -1 : 1;
  });
  const by = order[0]?.validation_accuracy != null ? "validation_accuracy" : "test_accuracy";
  const level = order.filter((m) => m[by] != null && m[by] === order[0][by]);
  const tied = level.length > 1 ? level : [];
  // accuracies on two tasks rank nothing against each other: no one is crowned across datasets
  const datasets = [...new Set(models.map((m) => m.spec?.dataset))];
  const mixed = datasets.length > 1 ? datasets : [];
  return { by, order, best: order[0], tied, mixed, crown: tied.length || mixed.length ? null : order[0] };
}

const short = (m) => `#${m.id}`;
const star = (m, crown) => (m.id === crown?.id ? " ★" : ""); // a tie crowns no one
const LEGEND_CHARS = 28; // a legend entry's text before "…": the full label is in the hover

/** Each model's legend entry, "#12 glorot, lr=0.3 ★": its id and the differing fields, short; and
 * its full label, for the hover. */
function legendNames(cmp, schema, crown) {
  // the field that tells most models apart first: twelve entries cut before their seeds read alike
  const distinct = (f) => new Set(cmp.data.map((m) => JSON.stringify(m.spec[f]))).size;
  const fields = [...cmp.differing].sort((a, b) => distinct(b) - distinct(a));
  return new Map(cmp.data.map((m) => {
    let text = short(m);
    for (const [k, part] of fields.map((f) => shortPart(f, m.spec[f], schema, "=")).entries()) {
      const longer = `${text}${k ? ", " : " "}${part}`;
      if (longer.length > LEGEND_CHARS) { text += k ? ", …" : " …"; break; } // whole fields only
      text = longer;
    }
    return [m.id, { legend: text + star(m, crown), full: m.label + star(m, crown) }];
  }));
}

/** A model's curves: one legend entry for them all (its first curve's, short), which toggles them
 * together; each curve's part (validation, test, ...) in `meta`, and its hover the full label. */
const curves = (m, names, format, parts) => parts.filter(Boolean).map(([part, rest], k) => ({
  name: names.get(m.id).legend, meta: part, legendgroup: `model-${m.id}`, showlegend: k === 0,
  hovertemplate: `${plotText(names.get(m.id).full)} · ${part}: %{y:${format}}<extra></extra>`, ...rest,
}));

function bestSummary({ by, order, tied, mixed }) {
  const [best, next] = order;
  const split = by === "validation_accuracy" ? "validation" : "test";
  if (mixed.length) return h("p", { id: "best-line" }, `These models were trained on different datasets (${mixed.join(", ")}): their accuracies rank nothing against each other, so none is marked best.`);
  if (tied.length) return tieSummary(tied, by, split);
  const verb = h("span", { id: "best-verb" }, "is best");
  const line = [h("p", { id: "best-line" }, "★ ", h("a", { href: `#/models/${best.id}` }, h("strong", null, `model ${best.id}`)), ` (${best.label.replace(/^#\d+ /, "")}) `, verb, ` on ${split} accuracy: `,
    h("strong", { id: "best-figure" }, pct(best[by])))];
  if (!next) return line;
  const onTest = `on test, the final figure: ${pct(best.test_accuracy)} against ${pct(next.test_accuracy)}`;
  // weighed on the test images: validation picked each model's epoch, a sweep's best seed and this order,
  // so a lead there is partly that choice's luck (a seed picked as best of three "beat" a sibling at p < 1e-8)
  const evidence = h("p", { id: "best-evidence", class: "muted" });
  if (next[by] != null) api.disagreements(best.id, next.id, "test").then((d) => evidenceOf(evidence, verb, d, best, next, by)).catch(() => {});
  return [
    ...line,
    // a gap only between figures of one split: a runner-up without a validation split was ranked on test
    h("p", { id: "best-gap" }, next[by] == null
      ? `Ranked on different splits: ${short(next)} has no validation split (it ranks after every model with one, on test), so no gap; ${onTest}.`
      : [`${gapPoints(best[by] - next[by])} points ahead of ${short(next)} (${pct(next[by])})`,
        by === "validation_accuracy" ? `; ${onTest}` : " (no validation split: ranked on test, so the first's test figure is no longer an unbiased estimate)"]),
    next[by] != null ? evidence : null,
    imageByImage(best, next),
  ];
}

/** The way to two models' disagreements: the page that shows them, each image marked by who was right. */
const imageByImage = (a, b) => h("p", null, h("a", { id: "image-by-image", href: `#/compare/disagreements?a=${a.id}&b=${b.id}` }, `${short(a)} and ${short(b)} image by image`),
  " (which images each gets right that the other misses, McNemar's test, per class)");

// Settings that give a model more to learn from: a gap beside them may be theirs, whatever else differs.
const MORE_TRAINING = ["train_limit", "epochs"];
const listed = (words) => (words.length < 2 ? words.join("") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`);

/** Why the ranking cannot say which setting made the gap, when several differ at once. */
function confounded(differing) {
  if (differing.length < 2) return null;
  const more = differing.filter((f) => MORE_TRAINING.includes(f));
  return h("p", { id: "best-why", class: "muted" },
    `These models differ in ${differing.length} settings at once (${differing.join(", ")}): the gap is theirs together, and this comparison cannot say which of them made it. `,
    more.length ? `${listed(more)} change${more.length === 1 ? "s" : ""} how much they trained on, which alone moves accuracy. ` : "",
    differing.includes("validation_size") ? "validation_size changes both the images they trained on and those that ranked them. " : "",
    "To see one setting's effect, sweep it with the others fixed (and several seeds).");
}

/** What the test images say of the first two's gap: how many each gets right that the other misses, and
 * whether chance alone splits two equally accurate models so (McNemar); a lead chance explains is no longer
 * called best. The test images chose nothing: `by` (validation, or test without it) ranked them. */
function evidenceOf(el, verb, d, best, next, by) {
  const [a, b] = [d.a_right_b_wrong, d.b_right_a_wrong];
  // two-sided: the runner-up may be the clear one on images that chose nothing
  const clear = d.beyond_chance && a > b, reversed = d.beyond_chance && b > a;
  const ranked = by === "validation_accuracy" ? "validation" : "test";
  if (!clear) fill(verb, reversed ? `ranks first on ${ranked}, but ${short(next)} does better on the test images,` : "ranks first, without a clear lead,");
  fill(el, `Of the ${d.images.toLocaleString()} test images${by === "validation_accuracy" ? " (which, unlike the validation images, chose neither epoch, seed nor this order)" : ""}, ${a.toLocaleString()} go to ${short(best)} alone and ${b.toLocaleString()} to ${short(next)} alone (McNemar ${pText(d.p_value)}): `,
    clear ? "unlikely if the two models were equally accurate"
      : reversed ? `${short(next)}'s lead there is unlikely if the two were equally accurate`
        : "chance alone splits two equally accurate models so unevenly often, so neither is shown better",
    // as service/selection.py's MODELS_NOT_SETTINGS
    ". McNemar weighs these two trained models, not the settings behind them: another seed trains another model (to tell settings apart, compare a sweep's replicates).");
}

/** Models level on the figure that ranks them: no winner is crowned by a tie-break the user cannot see. */
function tieSummary(tied, by, split) {
  const [a, b] = tied;
  return [
    h("p", { id: "best-line" }, `Tied on ${split} accuracy: `,
      tied.map((m, k) => [k ? (k === tied.length - 1 ? " and " : ", ") : "", h("a", { href: `#/models/${m.id}` }, h("strong", null, `model ${m.id}`))]),
      `, ${tied.length === 2 ? "both" : "all"} at `, h("strong", { id: "best-figure" }, pct(a[by])), tied.length === 2 ? ": neither is best." : ": none of them is best."),
    by === "validation_accuracy"
      ? h("p", { id: "best-gap" }, `On test, the final figure: ${tied.map((m) => `${short(m)} ${pct(m.test_accuracy)}`).join(", ")}.`) : null,
    imageByImage(a, b),
  ];
}

function accuracyChart(el, models, names, crown, splits, signal) {
  const key = { train: "train_accuracy", validation: "validation_accuracy", test: "test_accuracy" };
  const shown = ["validation", "test", "train"].filter((s) => splits.includes(s)); // a solid line first: the legend's
  const traces = models.flatMap((m, i) => curves(m, names, ".2%", shown.filter((s) => m.epochs.some((e) => e[key[s]] != null)).map((s) => [s, {
    x: m.epochs.map((e) => e.epoch), y: m.epochs.map((e) => e[key[s]]), mode: "lines+markers",
    line: { color: PALETTE[i % PALETTE.length], dash: SPLITS[s], width: m.id === crown?.id ? 3 : 1.8 },
  }])));
  const values = traces.flatMap((t) => t.y).filter((v) => v != null);
  return lineChart(el, traces, { x: { title: { text: "epoch" }, dtick: 1 }, y: accuracyAxis(values, "accuracy"), signal, height: 360 });
}

/** The per-step losses smoothed (an EMA over about a twentieth of the curve), x in epochs: a loss is
 * recorded at each epoch's last step, so the last step over the last epoch is the steps per epoch. */
export function smoothedLoss(losses) {
  if (losses.length < 2) return null;
  const last = losses.at(-1), perEpoch = last.step / last.epoch;
  return { x: losses.map((p) => p.step / perEpoch), y: ema(losses.map((p) => p.loss), Math.max(2, Math.round(losses.length / 20))) };
}

function lossChartOf(el, models, names, classes, signal) {
  const traces = models.flatMap((m, i) => {
    const color = PALETTE[i % PALETTE.length], smooth = smoothedLoss(m.losses), epochs = m.epochs.map((e) => e.epoch);
    return curves(m, names, ".4f", [
      m.epochs.some((e) => e.validation_loss != null)
        ? ["validation", { x: epochs, y: m.epochs.map((e) => e.validation_loss), mode: "lines+markers", line: { color } }]
        : null,
      ["train", { x: epochs, y: m.epochs.map((e) => e.loss), mode: "lines+markers", line: { color, dash: "dot" } }],
      smooth ? ["recorded, smoothed", { ...smooth, mode: "lines", opacity: 0.55, line: { color, width: 1 } }] : null,
    ]);
  });
  const level = chanceLevel(classes);
  return lineChart(el, traces, { x: { title: { text: "epoch" }, dtick: 1 }, y: lossAxis([...traces.flatMap((t) => t.y).filter((v) => v != null), level.y], "loss"), levels: [level], signal, height: 360 });
}

function picker(models, chosen, from, schema) {
  if (!models.count) return h("p", { class: "muted" }, "No trained models yet.");
  const groups = (key) => [...new Set(models.data.map((m) => m[key]).filter((v) => v != null))].map(String);
  const option = (key, value, text) => h("option", { value: `${key}:${value}`, selected: from[key] === value }, text);
  const filter = h("select", { id: "pick-from", onchange: (e) => {
    const [key, value] = e.target.value ? e.target.value.split(/:(.*)/) : [];
    go(withParams({ sweep: key === "sweep" ? value : null, study: key === "study" ? value : null }));
  } },
  h("option", { value: "" }, "every model"),
  groups("sweep_id").map((s) => option("sweep", s, `sweep ${s}`)),
  groups("study_id").map((s) => option("study", s, `study ${s}`)));
  const shown = models.data.filter((m) => (!from.sweep || m.sweep_id === from.sweep) && (!from.study || String(m.study_id) === from.study));
  const varied = variedInGroups(shown, (m) => m, schema);
  const more = models.count > models.data.length
    ? h("p", { class: "muted" }, `The best ${models.data.length} of ${models.count.toLocaleString()} models; others by id or alias in the address: #/compare?ids=3,champion`)
    : null;
  // on a phone, only the accuracy that ranks them
  const ranked = models.ranked_by.startsWith("validation") ? "validation" : "test";
  const column = (split) => ["right", "nowrap", split === ranked ? null : "hide-small"];
  return [
    h("label", { for: "pick-from" }, "show "), filter, more,
    h("div", { class: "scroll picker" }, h("table", null,
      h("thead", null, h("tr", null, h("th"), h("th", null, `model (best first, by ${models.ranked_by.replaceAll("_", " ")})`),
        h("th", { class: column("validation") }, "validation"), h("th", { class: column("test") }, "test"))),
      h("tbody", null, shown.map((m) => h("tr", { dataset: { model: m.id } },
        h("td", null, h("input", { type: "checkbox", id: `pick-${m.id}`, value: m.id, checked: chosen.has(m.id), dataset: { pick: "" } })),
        h("td", { class: "label" }, h("label", { for: `pick-${m.id}`, title: m.name }, `${m.id}: ${shortLabel(m, schema, varied(m))}`, m.aliases.length ? ` (${m.aliases.join(", ")})` : "")),
        h("td", { class: column("validation") }, pct(m.validation_accuracy),
          // a rank from a few validation images is luck as much as skill (GET /models' validation_note)
          m.validation_note ? h("span", { class: "validation-mark", title: m.validation_note, "aria-label": m.validation_note }, " ?") : null),
        h("td", { class: column("test") }, pct(m.test_accuracy))))))),
  ];
}

function hyperparameters(cmp, { by, best, crown, mixed }, all, schema) {
  // as the job page's spec table says it
  const cell = (field) => (v, k) => h("td", null, unused(field, cmp.data[k].spec)
    ? h("span", { class: "muted" }, "– (unused)") : showValue(v, schema.properties[field]));
  const fields = Object.entries(cmp.hyperparameters).filter(([field]) => all || cmp.differing.includes(field));
  const top = (m) => m[by] != null && m[by] === best[by]; // the best's figure, or those tied at it
  const accuracy = (label, key) => h("tr", null, h("th", null, label), cmp.data.map((m) =>
    h("td", { class: key === by && top(m) ? "best" : null }, key === by ? h("strong", null, pct(m[key])) : pct(m[key]),
      key === "test_accuracy" ? chanceMark(m) : null)));
  return [
    h("table", { id: "hyperparameters" },
      h("thead", null, h("tr", null, h("th", null, "field"), cmp.data.map((m) => h("th", null, h("a", { href: `#/models/${m.id}` }, `model ${m.id}${star(m, crown)}`))))),
      h("tbody", null,
        fields.map(([field, values]) => h("tr", { class: cmp.differing.includes(field) ? "diff" : null, dataset: { field } }, h("th", null, field), values.map(cell(field)))),
        accuracy("train accuracy", "train_accuracy"), accuracy("validation accuracy", "validation_accuracy"), accuracy("test accuracy (final)", "test_accuracy"))),
    h("p", { class: "muted" }, all ? "Highlighted rows differ between the models. " : `${fields.length} hyperparameter${fields.length === 1 ? "" : "s"} differ${fields.length === 1 ? "s" : ""}; the others are equal. `,
      crown ? `★ marks the best ${by.replace("_", " ")}.` : mixed.length ? "None is marked best: the models were trained on different datasets." : `None is marked best: the top models are tied on ${by.replace("_", " ")}.`),
  ];
}

// A class's accuracy is its recall; the best of a class is the best F1 of it, which a model that calls
// most images that class (recall 100 %, precision 10 %) does not have.
const PER_CLASS_NOTE = "Of each class's test images, the share a model called that class (its recall). Marked: the best F1 of the class, not always the best recall: F1 weighs recall and precision (of the images it called that class, the share that are) together: a model that calls most images one class has a high recall there and a low precision. A cell's tooltip has all three.";

function perClass(models, cms, crown) {
  const num = (x) => (x == null ? "–" : x.toFixed(3));
  return h("table", { id: "per-class-table" },
    h("thead", null, h("tr", null, h("th", null, "class"), models.map((m) => h("th", { class: "right" }, `${short(m)}${star(m, crown)}`)))),
    h("tbody", null, cms[0].classes.map((c, k) => {
      const scores = cms.map((cm) => cm.per_class[k]);
      const top = Math.max(...scores.map((s) => s.f1 ?? 0));
      return h("tr", null, h("th", null, c), scores.map((s) => h("td", {
        class: ["right", top > 0 && s.f1 === top ? "best" : null], title: `recall ${pct(s.recall)}, precision ${pct(s.precision)}, F1 ${num(s.f1)}`,
      }, pct(s.recall))));
    })));
}

/** Each model's test confusion matrix on one colour scale: the same count, the same shade. */
function matrices(models, cms, crown) {
  const scale = matrixScale(cms.map((cm) => cm.matrix));
  return models.map((m, k) => h("figure", { dataset: { model: m.id } },
    confusionGrid(cms[k].matrix, cms[k].classes, null, scale),
    h("figcaption", { class: "muted" }, m.label, star(m, crown))));
}

/** The best model's confusion matrix less the runner-up's, coloured by which of them does better in
 * each cell: more images on the diagonal is better, fewer off it. */
function difference(models, cms, { best, order, crown, mixed }) {
  if (mixed.length) return h("p", { class: "muted" }, "No difference of confusion matrices: the models were trained on different datasets.");
  const next = order[1];
  const a = cms[models.indexOf(best)], b = cms[models.indexOf(next)];
  const diff = a.matrix.map((row, i) => row.map((v, j) => v - b.matrix[i][j]));
  const max = Math.max(1, ...diff.flat().map(Math.abs));
  const verdict = (v, i, j) => (v === 0 ? null : (i === j) === (v > 0) ? "better" : "worse");
  const COLOURS = { better: "--ok", worse: "--bad" };
  const shade = (v, i, j) => (v === 0 ? null : { background: tint(COLOURS[verdict(v, i, j)], (0.15 + 0.85 * Math.abs(v) / max).toFixed(2)) });
  return [
    h("p", { class: "muted" }, `model ${best.id}${crown ? " (★)" : ""} less model ${next.id}: rows the true class, columns the prediction.`),
    h("p", { class: "legend-key", id: "difference-key" },
      h("span", { class: "swatch better" }), ` ${short(best)} does better (more right, or fewer wrong) `,
      h("span", { class: "swatch worse" }), ` ${short(best)} does worse than ${short(next)}`),
    h("table", { id: "difference-matrix", class: "difference" },
      h("thead", null, h("tr", null, h("th", null, "true↓ pred→"), a.classes.map((c) => h("th", null, String(c).slice(0, 4))))),
      h("tbody", null, diff.map((row, i) => h("tr", null, h("th", null, String(a.classes[i]).slice(0, 6)),
        row.map((v, j) => h("td", { class: ["right", i === j ? "diag" : null], style: shade(v, i, j), dataset: { verdict: verdict(v, i, j) } }, v > 0 ? `+${v}` : String(v))))))),
  ];
}
