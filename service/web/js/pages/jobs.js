// The jobs: the "New job" form (presets, a sweep grid), the latest sweeps and studies, and every job with its
// progress, filtered by status and sweep, sorted by the API, a page of 50 at a time. State lives in the
// hash: #/?status=running&sweep=3f9c2a1b7d4e&sort=-test_accuracy&offset=50.
import * as api from "../api.js";
import { $, duration, fill, h, pct, pText, seconds, timeCell } from "../dom.js";
import { go, reload, withParams } from "../router.js";
import { PRESETS, applyPreset, fieldText, jobStatuses, readSpec, shortLabel, showServerErrors, specForm, trainSpecSchema, variedInGroups } from "../spec.js";
import { chanceMark, etaSeconds, problemView, progressBar, statusBadge } from "../widgets.js";
import { ci as interval, cutNote, failedText, gapText, versusBest, versusNote, within } from "./sweep.js";

const PAGE = 50;
const LIVE_STREAMS = 3; // browsers hold about six connections per host: a few live streams at most
const REFRESH_MS = 4000;
const SWEEP_ROWS = 8; // a sweep card lists its best jobs; "its jobs" lists them all
const STUDY_ROWS = 5; // the latest studies; each one's page lists its trials

// The API sorts the whole list before paging (GET /jobs?sort=field, descending with a leading "-").
const SORT_NAMES = {
  "-id": "newest first", id: "oldest first", "-validation_accuracy": "best validation accuracy", "-test_accuracy": "best test accuracy",
  "-duration": "longest", status: "by status",
};

const jobDuration = (j) => (j.started_at ? seconds(j.started_at, j.finished_at ?? Date.now()) : null);

export async function jobsPage(ctx, root) {
  const [spec, statuses] = await Promise.all([trainSpecSchema(), jobStatuses()]);
  const state = {
    status: ctx.params.get("status") || "", sweep: ctx.params.get("sweep") || "",
    sort: ctx.params.get("sort") || "-id", offset: ctx.params.get("offset") || "0",
  };
  fill(root,
    h("h1", null, "Jobs"),
    newJobSection(spec),
    h("section", { class: "card", "aria-labelledby": "sweeps-h" }, h("h2", { id: "sweeps-h" }, "Sweeps"),
      h("div", { id: "sweeps" }, h("p", { class: "muted" }, 'No sweeps yet: open "New job", then "Sweep a grid".'))),
    h("section", { class: "card", "aria-labelledby": "studies-h" }, h("h2", { id: "studies-h" }, "Studies"),
      h("div", { id: "studies", class: "scroll" }, h("p", { class: "muted" }, "No studies yet: POST /studies, or mlplab study FILE.json."))),
    h("section", { class: "card", "aria-labelledby": "jobs-h" }, h("h2", { id: "jobs-h" }, "All jobs"),
      filters(statuses, state), h("div", { id: "jobs-problem" }), h("div", { id: "cancel-problem" }), h("div", { class: "scroll", id: "jobs" }),
      h("div", { class: "pager", id: "jobs-pager" })));
  const streams = new Map(); // job id -> EventSource
  ctx.onLeave(() => streams.forEach((s) => s.close()));
  const refresh = () => Promise.all([renderJobs(ctx, root, spec, state, streams), renderSweeps(ctx, root, spec, state), renderStudies(ctx, root)]);
  root.addEventListener("jobs-changed", () => refresh().catch(() => {}));
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  ctx.onLeave(() => clearInterval(timer));
}

function newJobSection(spec) {
  const form = specForm(spec);
  form.addEventListener("input", () => readSpec(form, spec));
  const note = h("span", { class: "muted", id: "submit-note", "aria-live": "polite" });
  const problem = h("div", { id: "submit-problem" });
  const changed = (el) => el.dispatchEvent(new CustomEvent("jobs-changed", { bubbles: true }));
  const submit = async (event) => {
    problem.replaceChildren();
    const values = readSpec(form, spec);
    if (!values) { fill(note, "Fix the fields marked in red."); return; }
    try {
      const job = await api.submitJob(values);
      fill(note, h("a", { href: `#/jobs/${job.id}` }, `Job ${job.id} queued`), ".");
      changed(event.target);
    } catch (err) { fill(problem, problemView(err, () => submit(event))); showServerErrors(form, err); }
  };
  const grid = h("textarea", { id: "grid", rows: 3 }, '{"init": ["random", "glorot"], "learning_rate": [0.01, 0.05, 0.1, 0.3]}');
  const sweepProblem = h("div", { id: "sweep-problem" });
  const replicates = h("input", { id: "replicates", type: "number", min: 1, step: 1, value: 1 });
  const submitSweep = async (event) => {
    sweepProblem.replaceChildren();
    const base = readSpec(form, spec);
    let values;
    try { values = JSON.parse(grid.value); } catch {
      fill(sweepProblem, problemView({ body: { title: "Invalid grid", detail: "the grid is not valid JSON" } }));
      return;
    }
    if (!base) return;
    if (values && typeof values === "object") for (const k of Object.keys(values)) delete base[k];
    // n seeds of each combination (0 to n - 1, for intervals); 1, or none: the spec's own seed
    const n = replicates.value.trim(), replicated = n !== "" && n !== "1";
    if (replicated) delete base.seed; // the replicates' seeds, not the form's
    try {
      const sweep = await api.submitSweep({ base, grid: values, ...(replicated ? { replicates: Number(n) } : {}) });
      fill(note, h("a", { href: withParams({ sweep: sweep.id, offset: null }) }, `Sweep ${sweep.id} queued: ${sweep.count} jobs`), ".");
      changed(event.target);
    } catch (err) { fill(sweepProblem, problemView(err, () => submitSweep(event))); }
  };
  return h("details", { class: "card new-job", id: "new-job" },
    h("summary", null, h("span", { class: "button" }, "New job")),
    h("div", { class: "presets" }, h("span", { class: "muted" }, "Start from:"),
      Object.entries(PRESETS).map(([name, preset]) =>
        h("button", { type: "button", class: "secondary", dataset: { preset: name }, onclick: () => { applyPreset(form, spec, preset); readSpec(form, spec); } }, name))),
    form,
    h("div", { class: "actions" }, h("button", { id: "submit", type: "button", onclick: submit }, "Submit job"), note),
    problem,
    h("details", { class: "sweep-grid" }, h("summary", null, "Sweep a grid of values over this spec"),
      h("label", { for: "grid", class: "muted" }, "Grid (JSON: spec field → values; one job per combination)"), grid,
      h("div", { class: "field" }, h("label", { for: "replicates" }, "replicates"), replicates,
        h("div", { class: "hint" }, "seeds of each combination, 0 to n − 1: with 2 or more, each configuration gets a mean and a 95 % interval, and tests against the best; 1: the spec's seed")),
      h("div", { class: "actions" }, h("button", { id: "sweep", type: "button", class: "secondary", onclick: submitSweep }, "Submit sweep")),
      sweepProblem));
}

function filters(statuses, state) {
  const status = h("select", { id: "filter-status", onchange: (e) => go(withParams({ status: e.target.value, offset: null })) },
    h("option", { value: "" }, "any status"), statuses.map((s) => h("option", { value: s, selected: s === state.status }, s)));
  const sweep = h("select", { id: "filter-sweep", onchange: (e) => go(withParams({ sweep: e.target.value, offset: null })) },
    h("option", { value: "" }, "any sweep"),
    state.sweep ? h("option", { value: state.sweep, selected: true }, `sweep ${state.sweep.slice(0, 12)}`) : null);
  const sort = h("select", { id: "sort", onchange: (e) => go(withParams({ sort: e.target.value, offset: null })) },
    Object.entries(SORT_NAMES).map(([value, text]) => h("option", { value, selected: value === state.sort }, text)),
    state.sort in SORT_NAMES ? null : h("option", { value: state.sort, selected: true }, `by ${state.sort}`));
  return h("div", { class: "pager filters" },
    h("label", { for: "filter-status" }, "status"), status, h("label", { for: "filter-sweep" }, "sweep"), sweep,
    h("label", { for: "sort" }, "order"), sort);
}

async function renderSweeps(ctx, root, spec, state) {
  const sweeps = (await api.sweeps({ limit: 5 })).data;
  if (!ctx.live) return;
  const select = $("#filter-sweep", root);
  const known = new Set([...select.options].map((o) => o.value));
  for (const s of sweeps) if (!known.has(s.id)) select.append(h("option", { value: s.id }, `sweep ${s.id.slice(0, 12)}`));
  if (!sweeps.length) return;
  fill($("#sweeps", root), sweeps.map((s) => sweepCard(s, spec)));
}

async function renderStudies(ctx, root) {
  const studies = (await api.studies({ limit: STUDY_ROWS })).data;
  if (!ctx.live || !studies.length) return;
  const th = (t, cls) => h("th", { class: cls }, t);
  fill($("#studies", root), h("table", { id: "studies-table" },
    h("thead", null, h("tr", null, th("study"), th("status"), th("trials", "right"), th("searches"), th("best validation", "right"), th("best model"))),
    h("tbody", null, studies.map((s) => h("tr", { dataset: { study: s.id } },
      h("td", null, h("a", { href: `#/studies/${s.id}`, dataset: { studyPage: s.id } }, `Study ${s.id}`)),
      h("td", null, s.status), h("td", { class: "right" }, `${Object.values(s.counts).reduce((a, b) => a + b, 0)} of ${s.config.trials}`),
      h("td", null, Object.keys(s.config.space).join(", ")),
      h("td", { class: ["right", "nowrap"] }, pct(s.best?.validation_accuracy)),
      h("td", null, s.best ? h("a", { href: `#/models/${s.best.job_id}` }, `model ${s.best.job_id} (trial ${s.best.number})`) : "–"))))));
}

function sweepCard(s, spec) {
  const succeeded = s.jobs.filter((j) => j.status === "succeeded").map((j) => j.id);
  const counts = Object.entries(s.status).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ");
  return h("div", { class: "sweep", dataset: { sweep: s.id } },
    h("strong", null, `Sweep ${s.id}`), " ", h("span", { class: "muted" }, `${s.count} jobs · ${counts}`),
    h("div", { class: "links" }, h("a", { href: `#/sweeps/${s.id}`, dataset: { sweepPage: s.id } }, "its page"), " ",
      h("a", { href: withParams({ sweep: s.id, offset: null }) }, "its jobs"),
      succeeded.length >= 2 ? h("a", { href: `#/compare?ids=${succeeded.slice(0, 20).join(",")}` }, "compare its models") : null),
    configurationsTable(s, spec),
    h("div", { class: "scroll" }, h("table", { class: "sweep-jobs" }, h("thead", null, h("tr", null, h("th", null, "job"), h("th", null, "varies"), h("th", null, "status"), h("th", { class: "right" }, "validation"), h("th", { class: "right" }, "test"))),
      h("tbody", null, s.jobs.slice(0, SWEEP_ROWS).map((j) => h("tr", null,
        h("td", null, h("a", { href: `#/jobs/${j.id}` }, j.id)),
        h("td", null, Object.keys(s.grid).map((k) => fieldText(spec, k, j.spec[k])).join(", ")),
        h("td", null, statusBadge(j.status)), h("td", { class: "right" }, pct(j.validation_accuracy)), h("td", { class: "right" }, pct(j.test_accuracy))))))),
    s.count > SWEEP_ROWS ? h("p", { class: "muted" }, `and ${s.count - SWEEP_ROWS} more: `, h("a", { href: withParams({ sweep: s.id, offset: null }) }, "its jobs")) : null);
}

// A configuration without a succeeded run: why, while it has one to say
const noRun = (c) => (c.failed ? h("span", { class: "bad" }, `none: ${failedText(c)}`) : "–");

/** A sweep's configurations (its jobs grouped over seeds), best first as the API ranks them: mean and 95 %
 * interval of the ranking accuracy drawn as an error bar on one scale, test beside it, ties with the best. */
function configurationsTable(s, spec) {
  const measured = s.configurations.filter((c) => c.n);
  if (!measured.length || measured.every((c) => c.n < 2)) return null; // one run each: the jobs table says it all
  const ranked = s.ranked_by.startsWith("validation") ? "validation_accuracy" : "test_accuracy";
  // a configuration without a validation split has no figure on a validation scale
  const ends = measured.filter((c) => c[ranked]).flatMap((c) => [within(c[ranked].ci_low ?? c[ranked].mean), within(c[ranked].ci_high ?? c[ranked].mean)]);
  const low = Math.min(...ends), span = Math.max(...ends) - low || 1e-9;
  const at = (x) => `${(100 * (Math.min(Math.max(x, low), low + span) - low)) / span}%`;
  const bar = (m) => m && h("div", { class: "errorbar", title: interval(m) },
    m.ci_low == null ? null : h("span", { class: "range", style: { left: at(m.ci_low), width: `calc(${at(m.ci_high)} - ${at(m.ci_low)})` } }),
    h("span", { class: "mean", style: { left: at(m.mean) } }));
  // the legend outside the scrolling box: as the table's caption, a phone cut every line of it
  const legend = `sweep-legend-${s.id}`; // read out with the table, as its caption was
  return [h("p", { class: ["muted", "sweep-legend"], id: legend }, `Configurations, best first by mean ${s.ranked_by}; mean (95 % CI). `, versusNote(s), cutNote(s) ? ` ${cutNote(s)}` : null),
    h("div", { class: "scroll" }, h("table", { class: "sweep-configurations", "aria-describedby": legend },
    h("thead", null, h("tr", null, ["configuration", "n", ranked === "validation_accuracy" ? "validation" : "test", "", "test (final)", "vs best", "gap (95 % CI)"]
      .map((t, k) => h("th", { class: k === 1 || k === 2 || k === 4 ? "right" : null }, t)))),
    // a configuration none of whose runs succeeded is listed too, last, saying so (it vanished)
    h("tbody", null, s.configurations.map((c, k) => h("tr", { dataset: { failed: c.failed || null } },
      h("td", null, Object.entries(c.hyperparameters).map(([f, v]) => fieldText(spec, f, v)).join(", ") || "the base spec"),
      h("td", { class: "right" }, c.n), h("td", { class: ["right", "nowrap"] }, c.n ? interval(c[ranked]) : noRun(c)), h("td", { class: "bar" }, bar(c[ranked])),
      h("td", { class: ["right", "nowrap"] }, interval(c.test_accuracy)),
      h("td", { class: "nowrap" }, k === 0 ? "best" : versusBest(c)), h("td", { class: "nowrap" }, k === 0 ? "–" : gapText(c))))))),
  ];
}

async function renderJobs(ctx, root, spec, state, streams) {
  const el = $("#jobs", root), problem = $("#jobs-problem", root);
  let page;
  try {
    page = await api.jobs({ status: state.status, sweep_id: state.sweep, sort: state.sort, limit: PAGE, offset: state.offset });
  } catch (err) {
    // a token form already shown stays as it is: redrawn every refresh, it lost what was being typed
    const asking = api.needsToken(err) && problem.querySelector(".token-form");
    if (ctx.live && !asking) { fill(problem, problemView(err, reload)); el.replaceChildren(); }
    return;
  }
  if (!ctx.live) return;
  problem.replaceChildren();
  // any digits the API answered, however many: past 2^53 a float is inexact, but still past the end
  const offset = /^\d+$/.test(state.offset) ? Number(state.offset) : 0;
  renderPager($("#jobs-pager", root), offset, page);
  if (!page.count) { fill(el, h("p", { class: "muted" }, state.status || state.sweep ? "No job matches these filters." : "No jobs yet: open \"New job\".")); return; }
  if (!page.data.length) {
    fill(el, h("p", { class: "muted", id: "jobs-past-end" }, `No jobs on this page: there are ${page.count.toLocaleString()}. `,
      h("a", { href: withParams({ offset: null }) }, "The first page")));
    return;
  }
  const desc = state.sort.startsWith("-"), key = state.sort.replace(/^-/, "");
  const rows = page.data;
  const varied = variedInGroups(rows, (j) => j.spec, spec);
  // a column header sorts by its field: ascending first, descending when clicked again
  const th = (k, text, cls) => h("th", { class: cls, "aria-sort": k === key ? (desc ? "descending" : "ascending") : null },
    h("a", { href: withParams({ sort: k === key && !desc ? `-${k}` : k, offset: null }), class: "sort" }, text, k === key ? (desc ? " ↓" : " ↑") : ""));
  fill(el,
    h("table", { class: "jobs" },
      h("thead", null, h("tr", null, th("id", "id"), h("th", null, "job"), th("status", "status"), h("th", { class: "progress" }, "progress"),
        th("created_at", "created", "hide-small"), th("duration", "duration", "hide-small"), h("th", null, "ETA"),
        th("validation_accuracy", "validation", "right"), th("test_accuracy", "test", "right"), h("th"))),
      h("tbody", null, rows.map((j) => jobRow(j, spec, varied(j))))));
  rows.filter((j) => j.status === "running" && !streams.has(j.id)).slice(0, Math.max(0, LIVE_STREAMS - streams.size))
    .forEach((j) => follow(ctx, root, j, streams));
}

function renderPager(pager, offset, page) {
  const last = offset + page.data.length;
  // past the end (an offset typed in the address), "Newer" leads to the last page that has jobs
  const lastPage = Math.max(0, Math.floor((page.count - 1) / PAGE) * PAGE);
  fill(pager,
    h("a", { class: ["button", "secondary"], href: offset > 0 ? withParams({ offset: Math.min(Math.max(0, offset - PAGE), lastPage) || null }) : null, "aria-disabled": offset > 0 ? null : "true", id: "jobs-prev" }, "◀ Newer"),
    h("a", { class: ["button", "secondary"], href: last < page.count ? withParams({ offset: offset + PAGE }) : null, "aria-disabled": last < page.count ? null : "true", id: "jobs-next" }, "Older ▶"),
    h("span", { class: "muted", id: "jobs-range" }, page.data.length ? `${(offset + 1).toLocaleString()}–${last.toLocaleString()} of ${page.count.toLocaleString()}` : ""));
}

function jobRow(j, spec, named) {
  const active = j.status === "queued" || j.status === "running";
  return h("tr", { dataset: { job: j.id } },
    h("td", { class: "id" }, h("a", { href: `#/jobs/${j.id}` }, j.id)),
    h("td", { class: "label" }, h("span", { title: j.name }, shortLabel(j.spec, spec, named)),
      j.sweep_id ? [" ", h("a", { class: "muted sweep-link", href: withParams({ sweep: j.sweep_id, offset: null }) }, `sweep ${j.sweep_id}`)] : null,
      j.study_id != null ? [" ", h("a", { class: "muted sweep-link", href: `#/studies/${j.study_id}` }, `study ${j.study_id} #${j.trial_number}`)] : null,
      j.error ? h("div", { class: "problem" }, j.error) : null),
    h("td", { class: ["st", "nowrap"] }, statusBadge(j.status)),
    h("td", { class: "pr", dataset: { progress: "" } }, progressBar(j)),
    h("td", { class: ["hide-small", "nowrap"] }, timeCell(j.created_at)),
    h("td", { class: ["hide-small", "nowrap"], dataset: { duration: "" } }, duration(jobDuration(j))),
    h("td", { class: ["eta", "nowrap"], dataset: { eta: "" } }, active ? duration(etaSeconds(j)) : null),
    h("td", { class: ["validation", "right", "nowrap"], dataset: { validation: "" } }, pct(j.validation_accuracy)),
    h("td", { class: ["test", "right", "nowrap"], dataset: { test: "" } }, pct(j.test_accuracy), chanceMark(j)),
    h("td", { class: ["act", "nowrap"] },
      active ? h("button", { type: "button", class: "secondary", dataset: { cancel: j.id }, "aria-label": `Cancel job ${j.id}`, onclick: (e) => cancel(e.target, j.id) }, "Cancel") : null,
      j.status === "succeeded" ? h("a", { class: ["button", "secondary"], href: `#/models/${j.id}`, "aria-label": `Open model ${j.id}` }, "Open") : null));
}

// Its problem (or the token's form) goes above the list, which each refresh redraws, and stays until the next cancel.
async function cancel(button, id, problem = $("#cancel-problem", button.closest(".page"))) {
  button.disabled = true;
  problem.replaceChildren();
  try { await api.cancelJob(id); } catch (err) { fill(problem, problemView(err, () => cancel(button, id, problem))); }
  problem.dispatchEvent(new CustomEvent("jobs-changed", { bubbles: true }));
}

/** Live progress of a running job's row over Server-Sent Events, until the job ends. */
function follow(ctx, root, job, streams) {
  const source = new EventSource(api.eventsUrl(job.id));
  streams.set(job.id, source);
  const state = { ...job, progress: { ...job.progress } };
  const row = () => root.querySelector(`tr[data-job="${job.id}"]`);
  source.addEventListener("progress", (e) => {
    Object.assign(state.progress, JSON.parse(e.data));
    state.status = "running";
    const r = row();
    if (!r) return;
    fill(r.querySelector("[data-progress]"), progressBar(state));
    fill(r.querySelector("[data-eta]"), duration(etaSeconds(state)));
  });
  source.addEventListener("end", (e) => {
    source.close(); streams.delete(job.id);
    const final = JSON.parse(e.data);
    const r = row();
    if (r) {
      fill(r.querySelector("[data-progress]"), progressBar(final));
      r.querySelector("[data-status]").replaceWith(statusBadge(final.status));
      fill(r.querySelector("[data-validation]"), pct(final.validation_accuracy));
      fill(r.querySelector("[data-test]"), pct(final.test_accuracy), chanceMark(final));
    }
    root.dispatchEvent(new CustomEvent("jobs-changed"));
  });
  source.onerror = () => { source.close(); streams.delete(job.id); };
}
