// One sweep: its progress (done, running, queued, an ETA), the best configuration and by how much,
// each varied hyperparameter against validation accuracy (error bars: the 95 % CI over seeds),
// parallel coordinates of its runs, and its configurations ranked, each a click from its best model.
import * as api from "../api.js";
import { counted, duration, fill, gapPoints, h, pct, pText, seconds } from "../dom.js";
import { PALETTE, PARALLEL_NOTE, accuracyAxis, decadeAxis, lineChart, parallelChart } from "../charts.js";
import { reload } from "../router.js";
import { fieldText, showValue, trainSpecSchema } from "../spec.js";
import { chanceMark, etaSeconds, problemView } from "../widgets.js";

const REFRESH_MS = 3000;

export async function sweepPage(ctx, root) {
  const [sweep, spec] = await Promise.all([api.sweep(ctx.args[0]), trainSpecSchema()]);
  if (!ctx.live) return;
  const fields = varied(sweep);
  const metric = chartSplit(sweep);
  const charts = fields.map((f) => h("div", { class: "chart", id: `sweep-by-${f}`, role: "img", "aria-label": `${metric} accuracy against ${f}` }));
  const parcoords = h("div", { class: "chart", id: "sweep-parcoords", role: "img", "aria-label": "parallel coordinates of the sweep's runs" });
  fill(root,
    h("h1", null, `Sweep ${sweep.id}`),
    h("p", { class: "subtitle" }, `${sweep.count} jobs · varies ${variesText(sweep, fields) || "nothing"} · ranked by ${sweep.ranked_by} · `,
      h("a", { href: `#/?sweep=${encodeURIComponent(sweep.id)}` }, "its jobs")),
    h("div", { class: "grid" },
      h("section", { class: "card", id: "sweep-progress" }, h("h2", null, "Progress"), progressView(sweep), cancelView(sweep)),
      h("section", { class: "card", id: "sweep-best" }, h("h2", null, "Best"), bestView(sweep, spec))),
    h("div", { class: "grid" }, fields.map((f, i) => h("section", { class: "card" }, h("h2", null, `${metric[0].toUpperCase()}${metric.slice(1)} accuracy by ${f}`), charts[i], failedNote(sweep, spec)))),
    h("section", { class: "card" }, h("h2", null, "Parallel coordinates"), parcoords, failedNote(sweep, spec), h("p", { class: "muted" }, PARALLEL_NOTE)),
    h("section", { class: "card" }, h("h2", null, "Configurations, best first"), h("div", { class: "scroll" }, configurationsTable(sweep, spec)),
      versusNote(sweep) ? h("p", { class: "muted", id: "tied-note" }, versusNote(sweep)) : null,
      cutNote(sweep) ? h("p", { class: "muted", id: "cut-note" }, cutNote(sweep)) : null));
  const active = sweep.status.queued || sweep.status.running;
  if (active) {
    const timer = setTimeout(() => ctx.live && reload(), REFRESH_MS);
    ctx.onLeave(() => clearTimeout(timer));
  }
  await Promise.all([
    ...fields.map((f, i) => byField(charts[i], sweep, f, spec, ctx.signal)),
    runsParcoords(parcoords, sweep, spec, ctx.signal),
  ]);
}

/** Seconds until the sweep ends: its running jobs' time left (one yet to report its steps: the mean
 * duration less its time so far), plus its queued jobs at the mean duration of those that succeeded,
 * shared among as many workers as jobs now run (as the CLI's sweep_eta). */
export function sweepEta(sweep, now = Date.now()) {
  const running = sweep.jobs.filter((j) => j.status === "running");
  const queued = sweep.jobs.filter((j) => j.status === "queued").length;
  const took = sweep.jobs.filter((j) => j.status === "succeeded" && j.started_at).map((j) => seconds(j.started_at, j.finished_at));
  const perJob = took.length ? took.reduce((a, b) => a + b, 0) / took.length : null;
  const left = running.map((j) => etaSeconds(j, now) ?? (perJob == null ? null : Math.max(perJob - (seconds(j.started_at, now) ?? 0), 0)));
  if (left.some((t) => t == null) || (queued && perJob == null)) return null;
  return (left.reduce((a, b) => a + b, 0) + queued * (perJob ?? 0)) / Math.max(running.length, 1);
}

function progressView(sweep) {
  const s = sweep.status;
  const done = s.succeeded + s.failed + s.cancelled;
  const percent = Math.round((100 * done) / Math.max(sweep.count, 1));
  const eta = s.queued || s.running ? sweepEta(sweep) : null;
  return [
    h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent, "aria-label": "jobs of the sweep ended" },
      h("span", { style: { width: `${percent}%` } })),
    h("p", { id: "sweep-counts" }, `${done} of ${sweep.count} done · ${s.running} running · ${s.queued} queued`,
      s.failed ? ` · ${s.failed} failed` : "", s.cancelled ? ` · ${s.cancelled} cancelled` : "", s.queued || s.running ? ` · ETA ${eta == null ? "–" : duration(eta)}` : ""),
  ];
}

/** "Cancel sweep" while a job is queued or running: its queued jobs cancelled at once, its running ones
 * asked to stop (POST /sweeps/{id}/cancel); what it did, or the problem, below it. */
function cancelView(sweep) {
  if (!sweep.status.queued && !sweep.status.running) return null;
  const note = h("div", { id: "sweep-cancel-note", "aria-live": "polite" });
  const request = async () => {
    cancel.disabled = true;
    try {
      const after = await api.cancelSweep(sweep.id);
      const cancelled = Math.max(after.status.cancelled - sweep.status.cancelled, 0);
      fill(note, `${cancelled} queued job${cancelled === 1 ? "" : "s"} cancelled, ${after.status.running} running asked to stop.`);
    } catch (err) { cancel.disabled = false; fill(note, problemView(err, request)); }
  };
  const cancel = h("button", { type: "button", class: "secondary", id: "cancel-sweep", onclick: request }, "Cancel sweep");
  return h("div", { class: "actions", id: "sweep-actions" }, cancel, note);
}

/** The grid's fields but the seed: what tells configurations apart (the seeds are their replicates). */
// its factors: not the seed (replicates), nor a field that varies only as another's default (follows)
const varied = (sweep) => Object.keys(sweep.grid).filter((f) => f !== "seed" && !(f in (sweep.follows ?? {})));
/** "optimizer (and learning_rate with it, its default), l2": the factors, and what varies with them. */
const variesText = (sweep, fields) => fields.map((f) => {
  const along = Object.entries(sweep.follows ?? {}).filter(([, by]) => by === f).map(([field]) => field);
  return along.length ? `${f} (and ${along.join(", ")} with it, its default)` : f;
}).join(", ");
const config = (c, spec) => Object.entries(c.hyperparameters).map(([k, v]) => fieldText(spec, k, v)).join(", ") || "one configuration";
/** "3 diverged", "3 failed (2 diverged)", "3 failed": a configuration's failed runs, and why where it is known. */
export const failedText = (c) => (c.diverged === c.failed ? `${c.failed} diverged` : `${c.failed} failed${c.diverged ? ` (${c.diverged} diverged)` : ""}`);

/** Under a chart of succeeded runs: the configurations it cannot draw, every run of theirs failed. */
const failedNote = (sweep, spec) => {
  const lost = sweep.configurations.filter((c) => !c.n && c.failed);
  return lost.length ? h("p", { class: "muted", dataset: { failedNote: "" } }, `Not drawn, no run succeeded: ${lost.map((c) => `${config(c, spec)} (${failedText(c)})`).join("; ")}.`) : null;
};
// An accuracy's interval shown within [0, 1]: with two or three seeds Student's t reaches past both.
export const within = (v) => Math.min(1, Math.max(0, v));
// every run alike: a zero-width interval read as certainty; the runs just agreed
export const ci = (s) => (s == null ? "–" : s.ci_low == null ? pct(s.mean) : s.std === 0 ? `${pct(s.mean)} (every run alike)`
  : `${pct(s.mean)} (${pct(within(s.ci_low))}–${pct(within(s.ci_high))})${cut(s) ? "*" : ""}`);
const cut = (s) => s != null && Boolean(s.clipped);
// a gap's interval past ±1, where no difference of two accuracies lies (service/selection.py's gap_cut)
const gapCut = (g) => g != null && (g.ci_low < -1 || g.ci_high > 1);
/** What ci's and gapText's "*" means, when one of the sweep's intervals has it (as selection.py's CUT_NOTE). */
export const cutNote = (sweep) => (sweep.configurations.some((c) => cut(c.validation_accuracy) || cut(c.test_accuracy) || gapCut(c.gap_to_best))
  ? "* an interval cut at 0 or 100 % (a gap's at ±100 points): with so few seeds Student's t reaches past it (more seeds narrow it)."
  : null);
// What ranked a configuration (as the API ranks): validation accuracy, test for one without a validation split.
const rankedOn = (c) => (c.validation_accuracy ? "validation_accuracy" : "test_accuracy");
const splitOf = (c) => rankedOn(c).split("_")[0];
const score = (c) => c[rankedOn(c)];
// The charts plot one split: validation when any configuration has it (the others have no such figure).
const chartSplit = (sweep) => (sweep.configurations.some((c) => c.validation_accuracy) ? "validation" : "test");
const tests = (sweep) => sweep.configurations.filter((c) => c.p_value != null).length;

/** The test that weighed a configuration against the best: paired by seed where both ran the same seeds. */
const testName = (c) => (c.tested_by === "paired" ? `a paired t-test on ${c.pairs} seeds` : "Welch's t-test");

/** Which tests a sweep's configurations had against the best, for a legend. */
function testsUsed(sweep) {
  const tested = sweep.configurations.filter((c) => c.p_value != null);
  const welch = tested.filter((c) => c.tested_by !== "paired").length;
  if (!welch) return "a paired t-test against the best on the seeds both ran";
  if (welch === tested.length) return "Welch's t-test against the best";
  return `a t-test against the best, paired on the seeds both ran (Welch's for ${welch} not run on the same seeds)`;
}

/** What a t-test of a configuration against the best says, no more: the best was picked after the
 * fact and the tests are uncorrected, so some small p are chance; with few seeds a large p proves no tie,
 * and the gap's interval says how far apart they may be. */
export function verdict(c, sweep) {
  const gap = c.gap_to_best;
  if (gap && gap.ci_low === 0 && gap.ci_high === 0) return `their results are equal on every seed (${pText(c.p_value)})`;
  return c.versus_best === "can't tell"
    ? `the seeds do not tell them apart (${pText(c.p_value)})${gap ? `, which is no tie: ${gapRange(gap)}` : ""}`
    : `unlikely to be seed noise alone (${pText(c.p_value)}; ${testsNote(tests(sweep)).toLowerCase()})`;
}

const points = (x) => Math.abs(100 * x).toFixed(2);
/** Where a gap's 95 % interval puts a configuration against the best, in words. */
function gapRange({ ci_low: low, ci_high: high }) {
  if (high <= 0) return `it lies ${points(high)} to ${points(low)} points behind the best (95 % CI)`;
  if (low >= 0) return `it lies ${points(low)} to ${points(high)} points ahead of the best (95 % CI)`;
  return `it lies anywhere from ${points(low)} points behind the best to ${points(high)} ahead (95 % CI; more seeds narrow it)`;
}

/** A configuration against the best, in a word, as `mlplab sweeps` says it: p ≥ 0.05 is "can't tell", no tie. */
export const versusBest = (c) => (c.versus_best == null ? "–" : `${c.versus_best} (${pText(c.p_value)})`);
const signed = (x) => `${x < 0 ? "−" : "+"}${points(x)}`;
/** "−31.78 (−60.40 to −3.16)": its accuracy minus the best's, in points, and its test's 95 % interval,
 * cut at ±100 points and marked past them. */
export const gapText = (c) => {
  const gap = c.gap_to_best;
  return gap == null ? "–" : `${signed(gap.difference)} (${signed(Math.max(gap.ci_low, -1))} to ${signed(Math.min(gap.ci_high, 1))})${gapCut(gap) ? "*" : ""}`;
};

/** How many tests weighed configurations against the best (as service/selection.py's tests_note). */
const testsNote = (n) => (n === 1 ? "One configuration tested against the best: one test"
  : `Each configuration is its own test against the best: ${counted(n, "test")}, not corrected for multiple comparisons`);

/** The legend of the "vs best" and "gap" columns; none without a test. */
export const versusNote = (sweep) => (tests(sweep)
  ? `vs best, by ${testsUsed(sweep)}: can't tell (p ≥ 0.05): the seeds do not tell it from the best, which with few seeds is no tie; behind (p < 0.05): unlikely to be seed noise alone; ahead: ahead on its mean, ranked after for its failed runs. ${testsNote(tests(sweep))}. Gap: its accuracy minus the best's, in points, with that test's 95 % interval.`
  : null);

/** The best run of a configuration: the first of its jobs in the sweep's order (best first). */
function bestRun(sweep, c) {
  const order = sweep.jobs.filter((j) => j.status === "succeeded").map((j) => j.id);
  return order.find((id) => c.jobs.includes(id)) ?? null;
}

/** "Best: lr=0.1, init=glorot, 97.1 % (96.8–97.4), 1.3 points ahead of the next (p = 0.002)": only a
 * configuration with a succeeded run can be best. */
function bestView(sweep, spec) {
  const [best, next] = sweep.configurations.filter((c) => score(c));
  if (!best) {
    const active = sweep.status.queued || sweep.status.running;
    return h("p", { class: "muted", id: "best-none" }, `No configuration has a trained model yet${active ? "." : ": none of its jobs succeeded."}`);
  }
  const run = bestRun(sweep, best);
  const runners = sweep.configurations.slice(0, 4).map((c) => bestRun(sweep, c)).filter((id) => id != null);
  const level = levelWithBest(sweep);
  // first on its mean, but no test puts the next behind it: a lead, not a verdict
  const undecided = next && level.length <= 1 && rankedOn(next) === rankedOn(best) && [null, "can't tell"].includes(next.versus_best);
  const pending = sweep.status.queued + sweep.status.running;
  return [
    // a ranking of the jobs ended so far: the last to end may well be the best
    pending ? h("p", { class: "warning", id: "best-so-far" }, `So far: ${counted(pending, "job")} of ${sweep.count} still to end, which may change this ranking.`) : null,
    h("p", { id: "best-config" }, level.length > 1 ? `Tied, ${level.length} configurations level: ` : undecided ? "Highest mean, not shown better than the next: " : null,
      h("strong", null, config(best, spec)), `: ${splitOf(best)} accuracy `,
      h("strong", { id: "best-accuracy" }, ci(score(best))), best.n > 1 ? ` over ${best.n} seeds` : "", chanceMark(sweep.jobs.find((j) => j.id === run))),
    next ? h("p", { id: "best-margin" }, level.length > 1 ? `level with ${level.slice(1).map((c) => config(c, spec)).join("; ")}: no configuration is best` : margin(sweep, best, next, spec)) : null,
    best.test_accuracy ? h("p", null, `test accuracy (final, unbiased): ${ci(best.test_accuracy)}`) : null,
    h("div", { class: "actions" },
      run != null ? h("a", { class: "button", id: "best-model", href: `#/models/${run}` }, level.length > 1 ? `Open the first one's model (${run})` : best.n > 1 ? `Open its best seed's model (${run})` : `Open its model (${run})`) : null,
      runners.length >= 2 ? h("a", { class: ["button", "secondary"], id: "compare-best", href: `#/compare?ids=${runners.join(",")}&sweep=${sweep.id}` }, "Compare the top configurations' best runs") : null),
      sweep.configurations.some((c) => c.n > 1) && runners.length >= 2
        ? h("p", { class: "muted" }, "One run of each, its luckiest seed: the comparison ranks those models, not the configurations, which “Configurations, best first” ranks by their mean over seeds.") : null,
  ];
}

/** The configurations level with the first on the accuracy that ranked them (the first included): with more
 * than one, their order is a tie-break, no verdict, and none is best. */
function levelWithBest(sweep) {
  const [first] = sweep.configurations.filter((c) => score(c));
  if (!first) return [];
  return sweep.configurations.filter((c) => score(c) && rankedOn(c) === rankedOn(first) && score(c).mean === score(first).mean);
}

/** How far the best is ahead of the next, on the split that ranked both; none across two splits (a sweep
 * stored before sweeps kept validation_size fixed). */
function margin(sweep, best, next, spec) {
  const on = rankedOn(best);
  if (rankedOn(next) !== on) return `the next (${config(next, spec)}) was ranked on ${splitOf(next)} accuracy, the best on ${splitOf(best)}: different splits, so no gap and no test`;
  const gap = best[on].mean - next[on].mean;
  // behind only when the next ranks after for its failed runs (its survivors' mean flatters it)
  const ahead = gap >= 0 ? `${gapPoints(gap)} points ahead of the next (${config(next, spec)})`
    : `${(-100 * gap).toFixed(2)} points behind the next (${config(next, spec)}), ranked after it for its ${next.failed} failed run${next.failed === 1 ? "" : "s"}`;
  return `${ahead}, ${next.p_value != null ? `${testName(next)}: ${verdict(next, sweep)}` : whyNoTest(best, next)}`;
}

/** Why the API has no test of the next configuration against the best (its p_value is null). */
function whyNoTest(best, next) {
  const seeds = (c) => (c.n === c.jobs.length ? `${c.n} seed${c.n === 1 ? "" : "s"}` : `${c.n} succeeded seed${c.n === 1 ? "" : "s"} of ${c.jobs.length}`);
  const needed = "no test (2 seeds needed on each side)";
  if (best.n < 2 && next.n < 2) return best.jobs.length === 1 && next.jobs.length === 1 ? `one seed each: ${needed}` : `the best has ${seeds(best)}, the next ${seeds(next)}: ${needed}`;
  if (best.n < 2) return `the best has ${seeds(best)}: ${needed}`;
  if (next.n < 2) return `the next has ${seeds(next)}: ${needed}`;
  return "their runs leave nothing to weigh (neither varies, or every seed puts them the same distance apart): no test";
}

function configurationsTable(sweep, spec) {
  const th = (t, cls) => h("th", { class: cls }, t);
  const tied = levelWithBest(sweep).length > 1;
  const notes = [versusNote(sweep) ? "tied-note" : null, cutNote(sweep) ? "cut-note" : null].filter(Boolean);
  return h("table", { id: "configurations", "aria-describedby": notes.join(" ") || null },
    h("thead", null, h("tr", null, th("#"), th("configuration"), th("n", "right"), th("validation (95 % CI over seeds)"), th("test (95 % CI over seeds)"), th("median training time", "right"), th("vs best"), th("gap, points (95 % CI)"), th("model"))),
    h("tbody", null, sweep.configurations.map((c, i) => {
      const run = bestRun(sweep, c);
      // first with a trained model: with none, or level with another, no configuration is best
      const best = i === 0 && c.n > 0 && !tied;
      return h("tr", { class: best ? "best" : null, dataset: { configuration: i } },
        // a run that learned nothing (its title says on which split): its gap measures no effect of the setting
        h("td", null, i + 1), h("td", null, config(c, spec), chanceMark(sweep.jobs.find((j) => c.jobs.includes(j.id) && j.near_chance))),
        h("td", { class: "right" }, c.n), h("td", { class: "nowrap" }, ci(c.validation_accuracy)),
        h("td", { class: "nowrap" }, ci(c.test_accuracy)),
        h("td", { class: ["right", "nowrap"], dataset: { seconds: c.seconds ?? "" } }, duration(c.seconds)),
        h("td", null, best ? "best" : i === 0 && c.n > 0 ? "level" : versusBest(c)),
        h("td", { class: "nowrap" }, gapText(c)),
        h("td", null, run != null ? h("a", { href: `#/models/${run}` }, run)
          : h("span", { class: "muted" }, "none: ", c.jobs.map((id, k) => [k ? ", " : "", h("a", { href: `#/jobs/${id}` }, `job ${id}`)]))));
    })));
}

/** x: the field's values, y: mean validation (or test: chartSplit) accuracy with its 95 % CI, one line per value of the
 * sweep's other varied fields (e.g. per init). */
function byField(el, sweep, field, spec, signal) {
  const others = varied(sweep).filter((f) => f !== field);
  const text = (c) => showValue(c.hyperparameters[field], spec.properties[field]);
  const groups = new Map();
  const split = `${chartSplit(sweep)}_accuracy`;
  for (const c of sweep.configurations.filter((c) => c[split])) {
    const key = others.map((f) => fieldText(spec, f, c.hyperparameters[f])).join(", ") || "mean over seeds";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(c);
  }
  if (!groups.size) { fill(el, h("p", { class: "muted" }, "No run has succeeded yet.")); return null; }
  const values = sweep.grid[field];
  const numeric = values.every((v) => typeof v === "number");
  const positive = numeric && values.every((v) => v > 0);
  const log = positive && Math.max(...values) / Math.min(...values) >= 10;
  const order = values.map((v) => JSON.stringify(v)); // a category's place: the grid's order, not the ranking's
  const place = (c) => (numeric ? c.hyperparameters[field] : order.indexOf(JSON.stringify(c.hyperparameters[field])));
  const traces = [...groups.entries()].map(([name, cs], i) => {
    cs.sort((a, b) => place(a) - place(b));
    const s = cs.map((c) => c[split]);
    return {
      // a line between categories (relu to tanh) draws a trend that is not there
      name, mode: numeric ? "lines+markers" : "markers", x: cs.map((c) => (numeric ? c.hyperparameters[field] : text(c))), y: s.map((v) => v.mean),
      error_y: { type: "data", symmetric: false, array: s.map((v) => (v.ci_high == null ? 0 : within(v.ci_high) - v.mean)), arrayminus: s.map((v) => (v.ci_low == null ? 0 : v.mean - within(v.ci_low))), color: PALETTE[i % PALETTE.length] },
      hovertemplate: "%{y:.2%}",
    };
  });
  // each run beside its configuration's mean: how far seeds spread is the lesson the interval sums up
  const runs = new Map(sweep.jobs.map((j) => [j.id, j[split]]));
  const seeds = [...groups.entries()].map(([name, cs], i) => {
    const points = cs.flatMap((c) => c.jobs.filter((id) => runs.get(id) != null).map((id) => [numeric ? c.hyperparameters[field] : text(c), runs.get(id)]));
    return { name: `${name}: each run`, legendgroup: name, showlegend: false, mode: "markers", x: points.map(([x]) => x), y: points.map(([, y]) => y),
      marker: { color: PALETTE[i % PALETTE.length], size: 5, opacity: 0.45 }, hovertemplate: "a run: %{y:.2%}<extra></extra>" };
  });
  traces.forEach((t) => { t.legendgroup = t.name; }); // a legend entry toggles its runs too
  const all = [...traces.flatMap((t) => t.y.flatMap((y, k) => [y - t.error_y.arrayminus[k], y + t.error_y.array[k]])), ...seeds.flatMap((t) => t.y)];
  return lineChart(el, [...traces, ...seeds], {
    // log: labelled at whole values (plotly's own labels its minor ticks 2 3 4 ... 9, bare)
    x: log ? decadeAxis(values, field) : numeric ? { title: { text: field }, type: "linear" }
      : { title: { text: field }, type: "category", categoryorder: "array", categoryarray: values.map((v) => showValue(v, spec.properties[field])) },
    y: accuracyAxis(all, `${chartSplit(sweep)} accuracy (mean, 95 % CI; faint: each run)`),
    signal,
  });
}

function runsParcoords(el, sweep, spec, signal) {
  const runs = sweep.jobs.filter((j) => j.status === "succeeded");
  if (!runs.length) { fill(el, h("p", { class: "muted" }, "No run has succeeded yet.")); return null; }
  // no seed axis beside the settings: it read as one seed being better; a configuration's runs spread to its accuracies
  const settings = varied(sweep);
  const dims = (settings.length ? settings : Object.keys(sweep.grid)).map((f) => ({ label: f, values: runs.map((j) => j.spec[f]), show: (v) => showValue(v, spec.properties[f]) }));
  const validated = runs.every((j) => j.validation_accuracy != null);
  const accuracy = { label: validated ? "validation accuracy" : "test accuracy", values: runs.map((j) => (validated ? j.validation_accuracy : j.test_accuracy)) };
  return parallelChart(el, dims, accuracy, { signal });
}
