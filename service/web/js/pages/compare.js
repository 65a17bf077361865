// Models side by side: pick them (best first), then their loss and accuracy curves on common axes,
// the hyperparameters that differ, and their confusion matrices.
import * as api from "../api.js";
import { $$, digits, fill, h, pct } from "../dom.js";
import { accuracyAxis, lineChart, lossAxis } from "../charts.js";
import { go } from "../router.js";
import { problemView } from "../widgets.js";

export async function comparePage(ctx, root) {
  const ids = ctx.params.get("ids") || "";
  const chosen = new Set(ids.split(",").map(digits).filter((n) => n != null));
  const models = await api.models({ limit: 100 });
  if (!ctx.live) return;
  const lossChart = h("div", { class: "chart", id: "compare-loss", role: "img", "aria-label": "loss curves of the compared models" });
  const accChart = h("div", { class: "chart", id: "compare-accuracy", role: "img", "aria-label": "test accuracy by epoch of the compared models" });
  fill(root, h("h1", null, "Compare"),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Pick models"), picker(models, chosen),
        h("div", { class: "actions" }, h("button", { type: "button", id: "compare", onclick: () => {
          go(`#/compare?ids=${$$("input[data-pick]:checked", root).map((c) => c.value).join(",")}`);
        } }, "Compare selected"))),
      h("section", { class: "card" }, h("h2", null, "Loss"), lossChart),
      h("section", { class: "card" }, h("h2", null, "Accuracy by epoch"), accChart)),
    h("section", { class: "card" }, h("h2", null, "Hyperparameters and accuracy"), h("div", { class: "scroll", id: "table" }, h("p", { class: "muted" }, "Pick two or more models."))),
    h("section", { class: "card" }, h("h2", null, "Confusion matrices (test)"), h("div", { class: "grid", id: "matrices" })));
  const tokens = ids.split(",").filter(Boolean);
  if (tokens.length < 2 && tokens.every((t) => digits(t) != null)) return; // nothing to compare yet; anything else is for the API to refuse
  let cmp;
  try { cmp = await api.compare(ids); } catch (err) { if (ctx.live) fill(root.querySelector("#table"), problemView(err)); return; }
  if (!ctx.live) return;
  const best = Math.max(...cmp.data.map((m) => m.test_accuracy));
  const name = (m) => `${m.label}${m.test_accuracy === best ? " ★" : ""}`;
  await Promise.all([
    lineChart(lossChart, cmp.data.map((m) => ({ name: name(m), x: m.losses.map((p) => p.samples), y: m.losses.map((p) => p.loss), hovertemplate: "%{y:.4f}" })),
      { x: { title: { text: "training images seen" } }, y: lossAxis(cmp.data.flatMap((m) => m.losses.map((p) => p.loss))), signal: ctx.signal }),
    lineChart(accChart, cmp.data.map((m) => ({ name: name(m), x: m.epochs.map((e) => e.epoch), y: m.epochs.map((e) => e.test_accuracy), mode: "lines+markers" })),
      { x: { title: { text: "epoch" }, dtick: 1 }, y: accuracyAxis(cmp.data.flatMap((m) => m.epochs.map((e) => e.test_accuracy)), "test accuracy"), signal: ctx.signal }),
  ]);
  fill(root.querySelector("#table"), hyperparameters(cmp, best),
    h("p", { class: "muted" }, "Highlighted rows differ between the models; ★ marks the best test accuracy."));
  fill(root.querySelector("#matrices"), cmp.data.map((m) => h("figure", null,
    h("img", { class: "plot", src: api.confusionPngUrl(m.id, "test"), alt: `confusion matrix of model ${m.id}` }),
    h("figcaption", { class: "muted" }, `model ${m.id}: ${m.label}`))));
}

function picker(models, chosen) {
  if (!models.count) return h("p", { class: "muted" }, "No trained models yet.");
  const more = models.count > models.data.length
    ? h("p", { class: "muted" }, `The best ${models.data.length} of ${models.count.toLocaleString()} models; others by id in the address: #/compare?ids=3,7`)
    : null;
  return h("div", null, more, h("div", { class: "scroll picker" }, h("table", null,
    h("thead", null, h("tr", null, h("th"), h("th", null, "model (best first)"), h("th", { class: "right" }, "test"))),
    h("tbody", null, models.data.map((m) => h("tr", null,
      h("td", null, h("input", { type: "checkbox", id: `pick-${m.id}`, value: m.id, checked: chosen.has(m.id), dataset: { pick: "" } })),
      h("td", { class: "label" }, h("label", { for: `pick-${m.id}` }, `${m.id}: ${m.name}`)),
      h("td", { class: ["right", "nowrap"] }, pct(m.test_accuracy))))))));
}

function hyperparameters(cmp, best) {
  const cell = (v) => h("td", null, Array.isArray(v) ? v.join(",") : v ?? "all");
  return h("table", null,
    h("thead", null, h("tr", null, h("th", null, "field"), cmp.data.map((m) => h("th", null, h("a", { href: `#/models/${m.id}` }, `model ${m.id}`))))),
    h("tbody", null,
      Object.entries(cmp.hyperparameters).map(([field, values]) =>
        h("tr", { class: cmp.differing.includes(field) ? "diff" : null }, h("th", null, field), values.map(cell))),
      h("tr", null, h("th", null, "train accuracy"), cmp.data.map((m) => h("td", null, pct(m.train_accuracy)))),
      h("tr", null, h("th", null, "test accuracy"), cmp.data.map((m) => h("td", { class: m.test_accuracy === best ? "best" : null }, h("strong", null, pct(m.test_accuracy)))))));
}
