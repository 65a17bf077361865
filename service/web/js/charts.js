// Charts with plotly.js, served by the API from the installed `plotly` package and loaded on first
// use. One look for every chart: hover values, a legend whose entries toggle their curve, margins
// that fit the tick labels.

const PLOTLY_URL = "/static/vendor/plotly.min.js";
// plotly.js bundles maplibre, which injects its stylesheet at load unless an element with this id
// exists; the CSP refuses that stylesheet, and mlplab draws no maps.
const MAPLIBRE_STYLE_ID = "9f215cf04c5486422605d13261cb87401f4e7763b6296af81e98efbc0130da53";

// 20 colours, as many as a comparison holds: the eleventh model drew in the first one's
export const PALETTE = ["#2456c7", "#c7452a", "#1c7c3c", "#8e44ad", "#d18a00", "#128a8a", "#b03a74", "#555555", "#6b8e23", "#8c564b",
  "#86a8ee", "#ee9a84", "#73c08c", "#c39bd8", "#f0c35c", "#6fcaca", "#e596bd", "#a6a6a6", "#b5cf73", "#c9a08f"];

let loading = null;
export function plotly() {
  loading ??= new Promise((resolve, reject) => {
    if (!document.getElementById(MAPLIBRE_STYLE_ID)) {
      const placeholder = document.createElement("meta");
      placeholder.id = MAPLIBRE_STYLE_ID;
      document.head.append(placeholder);
    }
    const script = document.createElement("script");
    script.src = PLOTLY_URL;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { loading = null; reject(new Error(`could not load ${PLOTLY_URL}`)); };
    document.head.append(script);
  });
  return loading;
}

const FONT = { family: "system-ui, -apple-system, 'Segoe UI', sans-serif", size: 12, color: "#1d2430" };

/** Text for plotly, which reads a subset of HTML in names and titles (<a href>, <br>, <b>): data is
 * shown as written, never as markup; long names break at ", " so that a legend entry fits the chart. */
export function plotText(text, width = Infinity) {
  const escaped = (part) => String(part).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const lines = [];
  for (const piece of String(text).split(", ")) {
    const last = lines.length - 1;
    if (last >= 0 && lines[last].length + piece.length + 2 <= width) lines[last] += `, ${piece}`;
    else lines.push(piece);
  }
  return lines.map(escaped).join(",<br>");
}

const MANTISSAS = [[1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]];
const MAX_LOG_TICKS = 12; // labels on a log axis at most

/** A log axis labelled with whole values at the first of `mantissas` of each decade that gives three
 * labels or more (e.g. 0.2, 0.5, 1 at 1, 2 and 5; 0.001, 0.01, 0.1 at 1), from the one at or below the
 * lowest value to the one at or above the highest: both ends labelled. */
export function logAxis(values, title, mantissas = MANTISSAS) {
  const positive = values.filter((v) => v > 0);
  const axis = { title: { text: `${title} (log scale)` }, type: "log", tickformat: "~g" };
  if (!positive.length) return axis;
  const lo = positive.reduce((a, b) => Math.min(a, b)), hi = positive.reduce((a, b) => Math.max(a, b));
  const enclosing = (each) => {
    const all = [];
    for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of each) all.push(Number((m * 10 ** e).toPrecision(3)));
    }
    // past a double's range (a study's bound of 5e-324) a tick is 0 or Infinity: none there
    const ticks = all.filter((v) => v > 0 && Number.isFinite(v));
    const first = Math.max(ticks.findLastIndex((v) => v <= lo), 0), last = ticks.findIndex((v) => v >= hi);
    return ticks.slice(first, last < 0 ? ticks.length : last + 1);
  };
  const ticks = mantissas.map(enclosing).find((t) => t.length >= 3) ?? enclosing(MANTISSAS.at(-1));
  // a fixed range (log10 units): plotly's autorangeoptions.include mixes up log units in plotly.js 4.1
  const [a, b] = [Math.log10(ticks[0]), Math.log10(ticks.at(-1))], pad = 0.04 * (b - a);
  // a space of 300 decades (1e-300 to 10) had a label at each: every step-th, and the last, the step-th
  // before it left out when it would crowd it (closer than half a step)
  const step = Math.ceil((ticks.length - 1) / (MAX_LOG_TICKS - 1)), end = ticks.length - 1;
  const crowded = end % step !== 0 && end % step < step / 2 ? end - (end % step) : -1;
  const tickvals = ticks.filter((_, i) => (i % step === 0 && i !== crowded) || i === end);
  return { ...axis, tickvals, range: [a - pad, b + pad] };
}

/** The y axis of a loss chart: log scale, labelled at 1, 2 and 5 of each decade (or closer). */
export const lossAxis = (values, title = "loss") => logAxis(values, title);

/** The axis of a searched parameter on a log scale (a learning rate): labelled at decades when it
 * spans two or more (0.001, 0.01, 0.1), closer otherwise. */
export const decadeAxis = (values, title) => logAxis(values, title, [[1], ...MANTISSAS]);

/** An exponential moving average of a noisy curve, bias-corrected so that it starts at the first
 * value; it weighs about the last `span` points. */
export function ema(values, span) {
  const beta = 1 - 2 / (Math.max(span, 1) + 1);
  let mean = 0;
  return values.map((v, t) => (mean = beta * mean + (1 - beta) * v) / (1 - beta ** (t + 1)));
}

/** The y axis of an accuracy chart: from a round floor below every value up to 100 %, the floor
 * stated in the axis title, so that a 1-point difference is never drawn as a chasm. */
export function accuracyAxis(values, title = "accuracy") {
  const finite = values.filter(Number.isFinite);
  const lowest = finite.length ? Math.min(...finite) : 0;
  const floor = [0.9, 0.8, 0.5, 0].find((f) => f <= lowest - 0.005) ?? 0;
  return {
    title: { text: `${title}, axis from ${Math.round(100 * floor)} %` },
    range: [floor, 1.0005],
    tickformat: ".0%",
    hoverformat: ".2%",
    fixedrange: false,
  };
}

/** The legend's height in pixels under a chart `width` wide: its entries laid out in rows as plotly
 * lays them (swatch and text), each line of a name 19 px. */
function legendHeight(names, width) {
  let rows = 0, used = Infinity, tallest = 0;
  for (const name of names) {
    const lines = name.split("<br>");
    const w = 46 + 6.8 * Math.max(...lines.map((l) => l.replace(/&#\d+;/g, "x").length));
    if (used + w > width) { rows += tallest; used = 0; tallest = 0; }
    used += w;
    tallest = Math.max(tallest, lines.length);
  }
  return 19 * (rows + tallest) + 10;
}

/** Draw line traces [{name, x, y, ...plotly trace options}] into el; purged when `signal` aborts. The
 * chart grows with its legend, so that many curves never squeeze the plot nor scroll the legend. */
export async function lineChart(el, traces, { x = {}, y = {}, signal, height = 300, marks = [], levels = [] } = {}) {
  const Plotly = await plotly();
  if (signal?.aborted) return null;
  const width = el.clientWidth || 600;
  const perLine = Math.max(24, Math.floor(width / 7.5)); // characters of a legend line
  const data = traces.map((t, i) => ({
    type: "scatter", mode: t.x.length > 1 ? "lines" : "lines+markers",
    ...t, line: { color: PALETTE[i % PALETTE.length], width: 1.8, ...t.line }, name: plotText(t.name, perLine),
  }));
  const legend = legendHeight(data.filter((t) => t.showlegend !== false).map((t) => t.name), width - 16);
  const title = (axis, width) => (axis.title ? { ...axis, title: { ...axis.title, text: plotText(axis.title.text, width) } } : axis);
  const layout = {
    height: height + Math.max(0, legend - 40), font: FONT, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff",
    margin: { l: 8, r: 8, t: 8, b: 8 },
    xaxis: { automargin: true, zeroline: false, gridcolor: "#e7ebf0", ...title(x, perLine) },
    yaxis: { automargin: true, zeroline: false, gridcolor: "#e7ebf0", ...title(y, Math.floor((height - 90) / 7.5)) },
    hovermode: "x unified",
    // under the plot, clear of the mode bar that hovers over its top right corner
    legend: { orientation: "h", x: 0, xanchor: "left", yref: "container", y: 0, yanchor: "bottom", itemclick: "toggle", itemdoubleclick: "toggleothers", maxheight: legend + 40 },
    showlegend: true,
    // marks: [{x, text}], a dotted vertical line each, labelled at its top (a model's kept epoch)
    shapes: [...marks.map((m) => ({ type: "line", x0: m.x, x1: m.x, yref: "paper", y0: 0, y1: 1, line: { color: "#555", width: 1, dash: "dot" } })),
      // levels: [{y, text}], a dashed horizontal line each across the plot, labelled at its right end
      ...levels.map((l) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: l.y, y1: l.y, line: { color: "#8a929c", width: 1, dash: "dash" },
        label: { text: plotText(l.text), textposition: "end", yanchor: "bottom", font: { ...FONT, size: 11, color: "#5b6470" } } }))],
    annotations: marks.map((m) => ({ x: m.x, yref: "paper", y: 1, text: plotText(m.text), showarrow: false, xanchor: "left", yanchor: "top", font: { ...FONT, size: 11 } })),
  };
  await Plotly.newPlot(el, data, layout, { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] });
  signal?.addEventListener("abort", () => Plotly.purge(el));
  return el;
}

/** Under a parallelChart: its axes are categories, so their spacing says nothing of the values. */
export const PARALLEL_NOTE = "Each axis lists its values in order, evenly spaced whatever their distance: a path's height shows rank, not size.";

/** Parallel coordinates of runs, one path per run across `dimensions` [{label, values, order?, show?}] and an
 * accuracy axis (rounded to the point), coloured by that accuracy. plotly's parallel categories, drawn in
 * SVG: its `parcoords` draws with WebGL shaders compiled by eval, which the page's CSP refuses. */
export async function parallelChart(el, dimensions, accuracy, { signal, height = 380 } = {}) {
  const Plotly = await plotly();
  if (signal?.aborted) return null;
  const narrow = (el.clientWidth || 600) < 500; // a phone: the axis titles need the side margins' room
  const show = (v) => (Array.isArray(v) ? v.join("-") : String(v));
  // categories by their text: equal objects (early_stopping settings) are one category, as parcats needs
  const axis = (label, values, order, text = show) => ({ label: plotText(label), values: values.map(text), categoryorder: "array", categoryarray: [...new Set(order.map(text))] });
  const sorted = (values) => [...new Set(values)].sort((a, b) => (typeof a === "number" && typeof b === "number" ? a - b : 0));
  const points = accuracy.values.map((v) => `${(100 * v).toFixed(0)} %`);
  const dims = [...dimensions.map((d) => axis(d.label, d.values, d.order ?? sorted(d.values), d.show)),
    // highest first: parcats draws its first category at the top, where every other chart has its best
    { label: plotText(accuracy.label), values: points, categoryorder: "array", categoryarray: sorted(accuracy.values.map((v) => Math.round(100 * v))).reverse().map((v) => `${v} %`) }];
  const data = [{
    type: "parcats", dimensions: dims, arrangement: "freeform", hoveron: "color", labelfont: narrow ? { ...FONT, size: 10 } : FONT,
    // no colour bar: plotly clears its rects with a style attribute, which the CSP refuses; the
    // accuracy axis names the colours
    line: { color: accuracy.values, colorscale: "Viridis", shape: "hspline" },
  }];
  // the titles start below the mode bar, which hovers over the top right corner
  const margin = narrow ? { l: 8, r: 24, t: 50, b: 20 } : { l: 50, r: 80, t: 50, b: 20 };
  await Plotly.newPlot(el, data, { height, font: FONT, paper_bgcolor: "rgba(0,0,0,0)", margin }, { responsive: true, displaylogo: false });
  signal?.addEventListener("abort", () => Plotly.purge(el));
  return el;
}

/** Add points to a chart's traces as they arrive: extend(el, [[x...], ...], [[y...], ...]) to its first
 * traces, or to those `traces` names; a loss axis is labelled anew when a point falls outside it. */
export async function extend(el, xs, ys, traces = xs.map((_, i) => i)) {
  const Plotly = await plotly();
  if (!el.data) return;
  Plotly.extendTraces(el, { x: xs, y: ys }, traces);
  fitLossAxis(Plotly, el, ys.flat());
}

/** Draw one of a chart's traces anew with the points x, y: where they lie was learnt after they came. */
export async function redrawTrace(el, trace, x, y) {
  const Plotly = await plotly();
  if (!el.data) return;
  Plotly.restyle(el, { x: [x], y: [y] }, [trace]);
  fitLossAxis(Plotly, el, y);
}

function fitLossAxis(Plotly, el, ys) {
  const axis = el.layout.yaxis;
  const outside = (y) => y > 0 && (Math.log10(y) < axis.range[0] || Math.log10(y) > axis.range[1]);
  if (axis.type === "log" && axis.tickvals && ys.some(outside)) {
    const levels = el.layout.shapes.filter((s) => s.xref === "paper").map((s) => s.y0);
    const { tickvals, range } = lossAxis([...el.data.flatMap((t) => t.y), ...levels]);
    Plotly.relayout(el, { "yaxis.tickvals": tickvals, "yaxis.range": range });
  }
}
