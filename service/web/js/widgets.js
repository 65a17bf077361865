// Pieces several pages show: a problem (with the form for the API's token when that is what it wants),
// a status badge, a progress bar, a confusion matrix, probability bars, thumbnails.
import { keepToken, needsToken, tokenProblem } from "./api.js";
import { fill, h, pct } from "./dom.js";

/** The API's problem (title, status, detail, the fields it names), or any error, as an alert. A refusal
 * for want of the token (MLPLAB_API_TOKEN) comes with a form for it, which keeps it and calls `retry`. */
export function problemView(err, retry) {
  const b = err?.body || { title: "Error", detail: String(err?.message ?? err) };
  // the API's detail quotes up to five of them ("name: reason"), or is the one's reason: listed again only
  // those it leaves out
  const said = String(b.detail ?? "");
  const params = (b.invalid_params || []).filter((p) => !said.includes(`${p.name}: ${p.reason}`) && said !== p.reason);
  return h("div", { class: "problem", role: "alert" },
    h("strong", null, b.title ?? "Error"), b.status ? ` (${b.status})` : "", ": ", b.detail ?? "",
    params.length ? h("ul", null, params.map((p) => h("li", null, h("code", null, p.name), ": ", p.reason))) : null,
    needsToken(err) ? tokenForm(retry) : null);
}

/** A password field for the API's token: kept for this tab (api.js sends it), then `retry` (what failed). */
function tokenForm(retry) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const note = h("span", { class: "muted", "aria-live": "polite" });
  const use = (event) => {
    event.preventDefault(); // the form is never sent anywhere: the token stays in this tab
    const token = input.value.trim();
    if (!token) return;
    const problem = tokenProblem(token);
    if (problem) { fill(note, problem); return; }
    keepToken(token);
    if (retry) retry();
    else fill(note, "Token kept: try again.");
  };
  return h("form", { class: "token-form", onsubmit: use },
    h("p", null, "The API needs its token (MLPLAB_API_TOKEN). This tab keeps it (sessionStorage) and sends it with its requests."),
    h("label", null, "token ", input), " ", h("button", { type: "submit" }, "Use the token"), " ", note);
}

/** The API's warning on a finished job or model (near chance level), or nothing. */
export const warningView = (item) => item?.warning
  ? h("div", { class: "warning", role: "alert", dataset: { nearChance: String(!!item.near_chance) } }, h("strong", null, "Near chance level: "), item.warning)
  : null;

/** A small mark beside an accuracy that is near chance level, its sentence as the tooltip. */
export const chanceMark = (item) => item?.near_chance
  ? h("span", { class: "chance-mark", title: item.warning, "aria-label": "near chance level" }, " ⚠")
  : null;

export const statusBadge = (status) => h("span", { class: ["status", status], dataset: { status: "" } }, status);

/** Fraction done, and what to say about it. */
export function progressOf(job) {
  const p = job.progress || {};
  const fraction = job.status === "succeeded" ? 1 : p.steps ? Math.min(1, (p.step || 0) / p.steps) : 0;
  const label = job.status === "queued" ? "queued: waiting for a worker"
    : job.status === "running"
      ? `epoch ${p.epoch ?? "–"}/${p.epochs} · step ${p.step ?? 0}/${p.steps ?? "?"} · loss ${p.loss == null ? "–" : p.loss.toFixed(4)}`
      : job.status;
  return { fraction, label };
}

export function progressBar(job) {
  const { fraction, label } = progressOf(job);
  const percent = Math.round(100 * fraction);
  return [
    h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent, "aria-label": `progress of job ${job.id}` },
      h("span", { style: { width: `${(100 * fraction).toFixed(1)}%` } })),
    h("div", { class: "bar-label", dataset: { progressLabel: "" } }, `${label} · ${percent} %`),
  ];
}

/** Seconds left for a running job, from the pace of its steps so far; null when unknown. */
export function etaSeconds(job, now = Date.now()) {
  const p = job.progress || {};
  if (job.status !== "running" || !job.started_at || !p.step || !p.steps) return null;
  const elapsed = (now - new Date(job.started_at)) / 1000;
  return (elapsed * (p.steps - p.step)) / p.step;
}

const rgb = new Map();
/** A colour of app.css's (`--ok`, `--bad`: "#rrggbb") at opacity `alpha`, to shade a cell by a count. */
export function tint(name, alpha) {
  if (!rgb.has(name)) {
    const hex = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    rgb.set(name, [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(","));
  }
  return `rgba(${rgb.get(name)},${alpha})`;
}

/** The counts a confusion matrix's colours run up to, on and off the diagonal: one scale for every
 * matrix given, so that the same colour is the same count in each. */
export function matrixScale(matrices) {
  const diagonal = matrices.flatMap((m) => m.map((row, i) => row[i]));
  const offDiagonal = matrices.flatMap((m) => m.flatMap((row, i) => row.filter((_, j) => j !== i)));
  return { diagMax: Math.max(...diagonal, 1), max: Math.max(...offDiagonal, 1) };
}

/** Confusion matrix: rows the true class, columns the predicted one; green the right answers, red the
 * mistakes, shaded on `scale`. With onCell(i, j, count, button) its cells are buttons that open. */
export function confusionGrid(matrix, classes, onCell, { max, diagMax } = matrixScale([matrix])) {
  const n = matrix.length;
  const grid = h("div", { class: "heatmap", role: "grid", "aria-label": "Confusion matrix: rows true class, columns predicted",
    style: { gridTemplateColumns: `minmax(var(--cm-head), auto) repeat(${n}, minmax(var(--cm-cell), 1fr))` } }); // app.css sizes them
  grid.append(h("div", { class: "head corner" }, "true↓ pred→"),
    ...classes.map((c) => h("div", { class: "head", title: c }, String(c).slice(0, 4))));
  matrix.forEach((row, i) => {
    grid.append(h("div", { class: "head", title: classes[i] }, String(classes[i]).slice(0, 6)));
    row.forEach((count, j) => {
      const a = i === j ? 0.15 + 0.6 * (count / diagMax) : Math.min(1, count / max);
      const cell = h(onCell ? "button" : "div", {
        class: "cell", type: onCell ? "button" : null, "aria-pressed": onCell ? "false" : null, role: onCell ? null : "gridcell",
        "aria-label": `true ${classes[i]}, predicted ${classes[j]}: ${count} images`,
        dataset: { label: i, predicted: j },
        style: { background: i === j ? tint("--ok", a) : tint("--bad", count ? 0.08 + 0.8 * a : 0) },
      }, count);
      if (onCell) {
        cell.addEventListener("click", () => {
          grid.querySelectorAll(".cell[aria-pressed=true]").forEach((b) => b.setAttribute("aria-pressed", "false"));
          cell.setAttribute("aria-pressed", "true");
          onCell(i, j, count, cell);
        });
      }
      grid.append(cell);
    });
  });
  return grid;
}

/** Ten probabilities as bars, the predicted one highlighted; given the image's `label`, a wrong prediction's
 * bar red and the label's row marked (a mistake's green bar read as right). */
export function probabilityBars(probabilities, classes, predicted, label = null) {
  const wrong = label != null && label !== predicted;
  return h("div", { class: "probs-list" }, probabilities.map((v, k) =>
    h("div", { class: ["prob", k === predicted && "top", k === predicted && wrong && "wrong", wrong && k === label && "truth"] },
      h("span", { title: k === label ? `${classes?.[k] ?? k}: the image's label` : classes?.[k] }, classes ? String(classes[k]).slice(0, 6) : k, wrong && k === label ? " ◂" : ""),
      h("div", { class: "bar" }, h("span", { style: { width: `${(100 * v).toFixed(1)}%` } })),
      h("span", { class: "right" }, pct(v, 1)))));
}

/** A clickable thumbnail of one dataset image with a caption. */
export function thumb({ src, alt, caption, wrong, onClick }) {
  const children = [h("img", { src, alt, width: 56, height: 56 }), h("span", null, caption)];
  return onClick
    ? h("button", { type: "button", class: ["thumb", wrong && "wrong"], onclick: onClick, title: alt }, children)
    : h("div", { class: ["thumb", wrong && "wrong"] }, children);
}
