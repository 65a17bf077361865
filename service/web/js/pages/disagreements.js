// Two models image by image (GET /compare/disagreements): how many images each gets right that the other
// misses and McNemar's test on them, each class's accuracy under both, and the images they disagree on,
// each marked by which model was right. State in the hash: #/compare/disagreements?a=3&b=5&split=test&only=a_right.
import * as api from "../api.js";
import { $, counted, digits, fill, h, pct, pText } from "../dom.js";
import { lineChart } from "../charts.js";
import { go, reload, withParams } from "../router.js";
import { problemView, thumb } from "../widgets.js";

const PAGE = 100;
// which images a page shows (the API's `only`), and the mark each disagreement gets
const ONLY = { "": "every disagreement", a_right: "A right, B wrong", b_right: "B right, A wrong", both_wrong: "both wrong, differently" };
const verdict = (d) => (d.a === d.label ? "a-right" : d.b === d.label ? "b-right" : "both-wrong");

export async function disagreementsPage(ctx, root) {
  const a = ctx.params.get("a") || "", b = ctx.params.get("b") || "";
  const split = ctx.params.get("split") || "test", only = ctx.params.get("only") || "";
  const rawOffset = ctx.params.get("offset") || "", offset = digits(rawOffset) ?? 0; // the API judges the raw one
  const change = (changes) => go(withParams(changes));
  const option = (value, text, selected) => h("option", { value, selected }, text);
  fill(root, h("h1", null, "Two models, image by image"), h("div", { id: "dis-problem" }));
  let d, ma, mb, datasets;
  try {
    // the API checks a, b, split, only and offset: what it refuses is shown as its problem
    [d, ma, mb, datasets] = await Promise.all([
      api.disagreements(a, b, split, { only: only || null, offset: rawOffset, limit: PAGE }),
      api.model(a), api.model(b), api.datasets()]);
  } catch (err) {
    if (ctx.live) fill($("#dis-problem", root), problemView(err, reload));
    return;
  }
  if (!ctx.live) return;
  const classes = api.classesOf(datasets, ma.dataset);
  const splits = ["test", ...(ma.validation_size && mb.validation_size ? ["validation"] : []), "train"];
  const name = (m, letter) => h("a", { href: `#/models/${m.id}` }, `${letter}: model ${m.id}`);
  const chart = h("div", { class: "chart", id: "dis-per-class", role: "img", "aria-label": "each class's accuracy under A less under B" });
  fill(root,
    h("h1", null, `Model ${ma.id} and model ${mb.id}, image by image`),
    h("p", { class: "subtitle" }, name(ma, "A"), ` ${ma.name} · `, name(mb, "B"), ` ${mb.name} · `,
      h("a", { href: `#/compare?ids=${ma.id},${mb.id}` }, "compare them")),
    h("div", { class: "pager" },
      h("label", { for: "dis-split" }, "split"),
      h("select", { id: "dis-split", onchange: (e) => change({ split: e.target.value, offset: null }) }, splits.map((s) => option(s, s, s === split))),
      h("label", { for: "dis-only" }, "images"),
      h("select", { id: "dis-only", onchange: (e) => change({ only: e.target.value || null, offset: null }) },
        Object.entries(ONLY).map(([value, text]) => option(value, text, value === only)))),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Who gets which right"), outcomeTable(d), mcnemar(d)),
      h("section", { class: "card" }, h("h2", null, "Accuracy per class, A less B"), chart,
        h("p", { class: "muted" }, `Of each class's ${d.split} images, the share A gets right less the share B does, in points: above zero A does better on the class. Hover for both.`))),
    h("section", { class: "card" }, h("h2", null, `The images they disagree on (${ONLY[only] ?? only})`),
      h("p", { class: "muted", id: "dis-legend" }, h("span", { class: "thumb-key a-right" }, "A right"), " ", h("span", { class: "thumb-key b-right" }, "B right"), " ",
        h("span", { class: "thumb-key both-wrong" }, "both wrong, differently"), `: each caption is the label, then A's and B's answers.`),
      h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", id: "prev", disabled: offset === 0, onclick: () => change({ offset: Math.max(0, offset - PAGE) || null }) }, "◀ Previous"),
        h("button", { type: "button", class: "secondary", id: "next", disabled: offset + PAGE >= d.count, onclick: () => change({ offset: offset + PAGE }) }, "Next ▶"),
        h("span", { class: "muted", id: "range" }, d.count ? `${offset + 1}–${offset + d.data.length} of ${counted(d.count, "image")}` : "none")),
      h("div", { class: "thumbs", id: "dis-images" }, d.data.map((x) => {
        const el = thumb({
          src: api.imageUrl(ma.dataset, d.split === "validation" ? "train" : d.split, x.index), alt: `${d.split} image ${x.index}: a ${classes[x.label]}, A says ${classes[x.a]}, B ${classes[x.b]}`,
          caption: `${classes[x.label]}: ${classes[x.a]} · ${classes[x.b]}`,
        });
        el.classList.add(verdict(x));
        el.dataset.index = x.index;
        return el;
      })),
      h("p", null, h("a", { href: api.linked(api.path("/compare/disagreements", { a: ma.id, b: mb.id, split })) }, "as JSON"), " · ",
        h("a", { href: api.linked(api.path("/compare/disagreements.png", { a: ma.id, b: mb.id, split })) }, "as a PNG"))));
  await perClassChart(chart, d, ctx.signal);
}

/** The split's images in four: both right, A alone, B alone, both wrong (alike or not). */
function outcomeTable(d) {
  const cell = (n, id) => h("td", { class: "right", id }, n.toLocaleString());
  return [
    h("table", { id: "dis-outcomes" },
      h("thead", null, h("tr", null, h("th"), h("th", { class: "right" }, "B right"), h("th", { class: "right" }, "B wrong"))),
      h("tbody", null,
        h("tr", null, h("th", null, "A right"), cell(d.both_right, "both-right"), cell(d.a_right_b_wrong, "a-right")),
        h("tr", null, h("th", null, "A wrong"), cell(d.b_right_a_wrong, "b-right"), cell(d.both_wrong, "both-wrong")))),
    h("p", { class: "muted" }, `Of ${counted(d.images, `${d.split} image`)}; both wrong counts the images they get wrong alike too: `,
      `${d.both_wrong_alike.toLocaleString()} alike, the rest with two different answers.`),
  ];
}

function mcnemar(d) {
  const [a, b] = [d.a_right_b_wrong, d.b_right_a_wrong];
  const leader = a > b ? "A" : "B";
  return h("p", { id: "dis-mcnemar" }, `McNemar's exact test on the ${(a + b).toLocaleString()} images one of them alone gets right: ${pText(d.p_value)}. `,
    a === b ? "An even split: neither does better on these images."
      : d.beyond_chance ? `So uneven a split is unlikely if the two models were equally accurate: ${leader} does better on these images.`
        : "Chance alone splits two equally accurate models so unevenly often: neither is shown better.",
    " It weighs these two trained models, not the settings behind them: another seed trains another model.");
}

function perClassChart(el, d, signal) {
  const rows = d.per_class.filter((c) => c.difference != null);
  const bar = {
    type: "bar", name: "A less B", x: rows.map((c) => c.name), y: rows.map((c) => 100 * c.difference),
    marker: { color: rows.map((c) => (c.difference >= 0 ? "#2456c7" : "#c7452a")) },
    customdata: rows.map((c) => [pct(c.a_accuracy), pct(c.b_accuracy), c.images]),
    hovertemplate: "%{x}: A %{customdata[0]}, B %{customdata[1]} of %{customdata[2]} images<extra></extra>", showlegend: false,
  };
  return lineChart(el, [bar], { x: { type: "category", title: { text: "class" } }, y: { title: { text: "A less B, points" }, zeroline: true }, signal });
}
