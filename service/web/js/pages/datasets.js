// The images of a dataset's split, 48 at a time, with a model's predictions if one is chosen.
// State in the hash: #/datasets?name=mnist&split=test&offset=48&model=3.
import * as api from "../api.js";
import { $, digits, fill, h } from "../dom.js";
import { go, reload, withParams } from "../router.js";
import { problemView, thumb } from "../widgets.js";

const PAGE = 48;
const SPLITS = ["test", "train", "validation"];
// a train image's caption says when the model did not train on it (the API's `use`)
const USES = { validation: " (held out)", unused: " (not used)" };

export async function datasetsPage(ctx, root) {
  const name = ctx.params.get("name") || "mnist", split = ctx.params.get("split") || "test";
  const rawOffset = ctx.params.get("offset") || "0", model = ctx.params.get("model") || "";
  // with a model: only the images it gets wrong, and the validation images it was ranked on
  const wrong = Boolean(model) && ctx.params.get("wrong") === "1";
  const offset = digits(rawOffset) ?? 0;
  const [datasets, models] = await Promise.all([api.datasets(), api.models({ limit: 100 })]);
  if (!ctx.live) return;
  const change = (changes) => go(withParams(changes));
  const option = (value, text, selected) => h("option", { value, selected }, text);
  const usable = datasets.data.filter((d) => d.present || d.will_download);
  fill(root, h("h1", null, "Datasets"), h("section", { class: "card" },
    h("div", { class: "pager" },
      h("label", { for: "ds-name" }, "dataset"),
      h("select", { id: "ds-name", onchange: (e) => change({ name: e.target.value, offset: null, model: null }) },
        usable.map((d) => option(d.name, d.name, d.name === name)),
        usable.some((d) => d.name === name) ? null : option(name, name, true)),
      h("label", { for: "ds-split" }, "split"),
      h("select", { id: "ds-split", onchange: (e) => change({ split: e.target.value, offset: null }) },
        SPLITS.map((s) => option(s, s === "validation" ? "validation (held out of train: a model's)" : s, s === split)), SPLITS.includes(split) ? null : option(split, split, true)),
      h("label", { for: "ds-model" }, "predictions of"),
      h("select", { id: "ds-model", onchange: (e) => change({ model: e.target.value }) }, option("", "no model", !model),
        models.data.filter((m) => m.dataset === name).map((m) => option(m.id, `${m.id}: ${m.name}`, String(m.id) === model))),
      h("label", { class: "nowrap" }, h("input", { type: "checkbox", id: "ds-wrong", checked: wrong, disabled: !model,
        onchange: (e) => change({ wrong: e.target.checked ? "1" : null, offset: null }) }), " only its mistakes")),
    h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", id: "prev", disabled: offset === 0, onclick: () => change({ offset: Math.max(0, offset - PAGE) || null }) }, "◀ Previous"),
      h("button", { type: "button", class: "secondary", id: "next", onclick: () => change({ offset: offset + PAGE }) }, "Next ▶"),
      h("span", { class: "muted", id: "range" })),
    h("div", { id: "ds-problem" }), h("div", { class: "thumbs", id: "images" })));
  // The API checks name, split, offset and model: what it refuses is shown as its problem.
  if (split === "validation" || wrong) return outcomesView(ctx, root, { name, split, rawOffset, offset, model, wrong, datasets });
  let labels, preds, chosen;
  try {
    [labels, preds, chosen] = await Promise.all([
      api.labels(name, split, { offset: rawOffset, limit: PAGE }),
      model ? api.outcomes(model, split, { images: "all", offset: rawOffset, limit: PAGE }) : null,
      model ? api.model(model) : null,
    ]);
  } catch (err) {
    if (ctx.live) fill($("#ds-problem", root), problemView(err, reload));
    return;
  }
  if (!ctx.live) return;
  if (chosen && chosen.dataset !== labels.name) { // its predictions are of its own dataset's images
    preds = null;
    fill($("#ds-problem", root), h("div", { class: "problem", role: "alert" },
      `Model ${chosen.id} was trained on ${chosen.dataset}, not ${labels.name}: `,
      h("a", { href: withParams({ name: chosen.dataset, offset: null }) }, `its predictions on ${chosen.dataset}`)));
  } else if (chosen && !models.data.some((m) => m.id === chosen.id)) { // past the 100 listed: named all the same
    $("#ds-model", root).append(option(chosen.id, `${chosen.id}: ${chosen.name}`, true));
  }
  showRange(root, offset, labels.data.length, labels.count, "");
  const predicted = new Map((preds?.data ?? []).map((p) => [p.index, p]));
  fill($("#images", root), labels.data.map((l) => {
    const p = predicted.get(l.index);
    return thumb({
      src: api.imageUrl(labels.name, labels.split, l.index), alt: `${labels.split} image ${l.index}`,
      caption: `#${l.index}: ${labels.classes[l.label]}${p ? ` → ${labels.classes[p.predicted]}${USES[p.use] ?? ""}` : ""}`,
      wrong: p && p.predicted !== l.label,
    });
  }));
}

/** A model's images of a split, as GET /models/{id}/predictions/{split} pages them: only those it gets
 * wrong, or its validation images (held out of the train file, which ranked it). */
/** "48–95 of 10,000", and past the end (an offset typed in the address: "10000–9999 of 10,000" and no
 * image) what there is, with Previous leading to the last page. */
function showRange(root, offset, shown, count, what) {
  const n = (x) => x.toLocaleString();
  fill($("#range", root), shown ? `${n(offset)}–${n(offset + shown - 1)} of ${n(count)}${what}`
    : count ? `none from ${n(offset)}: there are ${n(count)}${what}` : `no${what || " images"}`);
  $("#next", root).disabled = offset + PAGE >= count;
  if (!shown && count) {
    const prev = $("#prev", root);
    prev.disabled = false;
    prev.onclick = () => go(withParams({ offset: Math.floor((count - 1) / PAGE) * PAGE || null }));
  }
}

async function outcomesView(ctx, root, { name, split, rawOffset, offset, model, wrong, datasets }) {
  const problem = $("#ds-problem", root);
  if (!model) {
    fill(problem, h("p", { class: "muted" }, "The validation images are a model's: choose one under \u201cpredictions of\u201d (its validation_size held out of train)."));
    return;
  }
  const file = split === "validation" ? "train" : split;
  let page, chosen;
  try {
    [page, chosen] = await Promise.all([
      api.outcomes(model, file, { images: split === "validation" ? "validation" : "all", correct: wrong ? false : null, offset: rawOffset, limit: PAGE }),
      api.model(model),
    ]);
  } catch (err) {
    if (ctx.live) fill(problem, problemView(err, reload));
    return;
  }
  if (!ctx.live) return;
  const classes = api.classesOf(datasets, chosen.dataset);
  if (chosen.dataset !== name) fill(problem, h("div", { class: "problem", role: "alert" }, `Model ${chosen.id} was trained on ${chosen.dataset}: its images are shown.`));
  const what = `${wrong ? "mistakes" : "images"} of ${split}`;
  showRange(root, offset, page.data.length, page.count, ` ${what}`);
  fill($("#images", root), page.data.map((o) => thumb({
    src: api.imageUrl(chosen.dataset, file, o.index), alt: `${file} image ${o.index}`,
    caption: `#${o.index}: ${classes[o.label]} → ${classes[o.predicted]}${USES[o.use] ?? ""}`, wrong: o.predicted !== o.label,
  })));
}
