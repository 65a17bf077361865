// The training spec as the OpenAPI schema describes it: the form (every field with its default and
// limits, checked before sending), the presets, and a job's short label (what differs from the defaults).
import { h } from "./dom.js";
import { schema } from "./api.js";

/** TrainSpec's schema with each property's $ref inlined (early_stopping's EarlyStopping), for the form. */
export async function trainSpecSchema() {
  const schemas = (await schema()).components.schemas, spec = schemas.TrainSpec;
  const inline = (p) => (p.$ref ? schemas[p.$ref.split("/").pop()] : p);
  const props = Object.entries(spec.properties).map(([k, p]) => [k, p.anyOf ? { ...p, anyOf: p.anyOf.map(inline) } : inline(p)]);
  return { ...spec, properties: Object.fromEntries(props) };
}
export const jobStatuses = async () => (await schema()).components.schemas.JobStatus.enum;

// Presets are what they change from the defaults.
export const PRESETS = {
  "The notebook's": { backend: "numpy", activation: "sigmoid", init: "glorot", optimizer: "sgd" },
  "Best known": {
    backend: "numpy", activation: "relu", init: "he", optimizer: "adam",
    learning_rate: 0.002, lr_schedule: "cosine", batch_size: 128, epochs: 15,
  },
};

function fieldKind(prop) {
  const variants = prop.anyOf || [prop];
  const main = variants.find((v) => v.type !== "null") || prop;
  return { main, nullable: variants.some((v) => v.type === "null") };
}

function limitsText(main) {
  if (main.enum) return "one of " + main.enum.join(", ");
  if (main.type === "array") return `${main.minItems}–${main.maxItems} layers of ${main.items.minimum}–${main.items.maximum} units, comma-separated`;
  if (main.type === "object") return Object.entries(main.properties).map(([k, p]) => `${k}=… (${limitsText(p)})`).join(", ") + ", e.g. patience=3";
  const parts = [];
  if (main.exclusiveMinimum != null) parts.push(`> ${main.exclusiveMinimum}`);
  if (main.minimum != null) parts.push(`≥ ${main.minimum}`);
  if (main.exclusiveMaximum != null) parts.push(`< ${main.exclusiveMaximum}`);
  if (main.maximum != null) parts.push(`≤ ${main.maximum}`);
  return parts.join(", ");
}

// a form field's text: early stopping's settings as its labels show them, "patience=2, min_delta=0"
const shown = (v) => (Array.isArray(v) ? v.join(",") : v && typeof v === "object" ? showValue(v) : v ?? "");

/** A field's default for these values: the learning rate's follows the optimizer (x-default-by-optimizer). */
export function defaultOf(prop, values = {}) {
  const byOptimizer = prop["x-default-by-optimizer"];
  return byOptimizer && values.optimizer in byOptimizer ? byOptimizer[values.optimizer] : prop.default;
}

/** Whether a spec's field goes unread by its optimizer: momentum is read by the momentum optimizer alone. */
export const unused = (name, values) => name === "momentum" && values.optimizer !== "momentum";

/** The fields the chosen optimizer does not read, disabled and not sent (the API takes its default, the
 * one value it allows them): a momentum typed beside sgd was refused only once the form was sent. */
function disableUnused(form, spec) {
  for (const [name, prop] of Object.entries(spec.properties)) {
    const input = form.elements[name], off = unused(name, { optimizer: form.elements.optimizer?.value });
    if (!input || input.disabled === off) continue;
    input.disabled = off;
    if (off) { input.value = shown(prop.default); markField(form, name, null); }
    input.closest(".field")?.classList.toggle("unused", off);
  }
}

/** Changing the optimizer moves a learning rate still at the old optimizer's default to the new one's,
 * and disables what the new one does not read. */
function followOptimizer(form, spec) {
  const optimizer = form.elements.optimizer, rate = form.elements.learning_rate;
  const prop = spec.properties.learning_rate;
  if (!optimizer) return;
  disableUnused(form, spec);
  let previous = optimizer.value;
  optimizer.addEventListener("change", () => {
    if (rate && prop?.["x-default-by-optimizer"] && Number(rate.value) === defaultOf(prop, { optimizer: previous })) {
      rate.value = shown(defaultOf(prop, { optimizer: optimizer.value }));
    }
    previous = optimizer.value;
    disableUnused(form, spec);
  });
}

/** The form's inputs: one field per spec property, filled with its default. */
export function specForm(spec, { idPrefix = "spec" } = {}) {
  const form = h("form", { class: "spec", novalidate: true });
  for (const [name, prop] of Object.entries(spec.properties)) {
    const { main, nullable } = fieldKind(prop);
    const id = `${idPrefix}-${name}`;
    const input = main.enum
      ? h("select", { id, name }, main.enum.map((v) => h("option", { value: v, selected: v === prop.default }, v)))
      : h("input", {
        id, name, type: main.type === "number" || main.type === "integer" ? "number" : "text", step: main.type === "integer" ? "1" : main.type === "number" ? "any" : null,
        value: shown(prop.default), placeholder: nullable ? (main.type === "object" ? "off" : "all") : null, "aria-describedby": `${id}-hint ${id}-help ${id}-err`,
      });
    const byOptimizer = prop["x-default-by-optimizer"];
    const defaults = byOptimizer ? `default ${Object.entries(byOptimizer).map(([k, v]) => `${v} (${k})`).join(", ")}; ` : `default ${shown(prop.default)}; `;
    const hint = `${prop.default != null ? defaults : nullable ? "optional; " : "required; "}${limitsText(main)}`;
    form.append(h("div", { class: "field", dataset: { field: name } },
      h("label", { for: id }, name.replace(/_/g, " ")), input,
      h("div", { class: "hint", id: `${id}-hint` }, hint), h("div", { class: "err", id: `${id}-err`, "aria-live": "polite" }),
      // what the field does, as the CLI's --help and the API's docs say it
      prop.description ? h("div", { class: "help", id: `${id}-help` }, prop.description) : null));
  }
  followOptimizer(form, spec);
  return form;
}

/** Every field back to its default, then the preset's values. */
export function applyPreset(form, spec, preset) {
  for (const [name, prop] of Object.entries(spec.properties)) {
    form.elements[name].value = shown(name in preset ? preset[name] : defaultOf(prop, preset));
  }
  disableUnused(form, spec);
}

const DECIMAL = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i; // what a person types; Number() also takes "0x10"

function checkValue(prop, raw) {
  const { main, nullable } = fieldKind(prop);
  if (raw === "" || raw == null) return nullable ? { value: null } : prop.default !== undefined ? { skip: true } : { error: "required" };
  if (main.enum) return main.enum.includes(raw) ? { value: raw } : { error: `must be one of ${main.enum.join(", ")}` };
  if (main.type === "array") {
    const nums = String(raw).split(",").map((s) => s.trim()).filter(Boolean).map(Number);
    if (nums.some((n) => !Number.isInteger(n))) return { error: "whole numbers separated by commas" };
    if (nums.length < main.minItems || nums.length > main.maxItems) return { error: `${main.minItems}–${main.maxItems} layers, got ${nums.length}` };
    const bad = nums.find((n) => n < main.items.minimum || n > main.items.maximum);
    if (bad !== undefined) return { error: `${bad} units: each layer needs ${main.items.minimum}–${main.items.maximum}` };
    return { value: nums };
  }
  if (main.type === "object") return checkSettings(main, raw);
  const n = DECIMAL.test(String(raw)) ? Number(raw) : NaN;
  if (!Number.isFinite(n)) return { error: "must be a number" };
  if (main.type === "integer" && !Number.isInteger(n)) return { error: "must be a whole number" };
  if (main.minimum != null && n < main.minimum) return { error: `must be ≥ ${main.minimum}` };
  if (main.exclusiveMinimum != null && n <= main.exclusiveMinimum) return { error: `must be > ${main.exclusiveMinimum}` };
  if (main.maximum != null && n > main.maximum) return { error: `must be ≤ ${main.maximum}` };
  if (main.exclusiveMaximum != null && n >= main.exclusiveMaximum) return { error: `must be < ${main.exclusiveMaximum}` };
  return { value: n };
}

/** "patience=3, min_delta=0.01" (or "3", its first required setting) as {patience: 3, min_delta: 0.01}. */
function checkSettings(main, raw) {
  const names = Object.keys(main.properties), value = {};
  if (String(raw).trim() === "off") return { value: null };
  for (const part of String(raw).split(",").map((s) => s.trim()).filter(Boolean)) {
    const pair = part.split("=").map((s) => s.trim());
    if (pair.length > 2) return { error: `one value a setting: ${part}` };
    const [key, v] = pair.length === 2 ? pair : [main.required?.[0], part];
    if (!names.includes(key)) return { error: `${key || "a value"} needs one of its settings' names: ${names.join(", ")}` };
    if (key in value) return { error: `${key} is given twice` };
    const r = checkValue(main.properties[key], v);
    if (r.error) return { error: `${key} ${r.error}` };
    if (!r.skip) value[key] = r.value;
  }
  const missing = (main.required || []).filter((k) => !(k in value));
  return missing.length ? { error: `needs ${missing.join(", ")}, e.g. patience=3` } : { value };
}

/** The spec the form holds, or null after marking the fields that are wrong. */
export function readSpec(form, spec) {
  const values = {};
  let ok = true;
  for (const [name, prop] of Object.entries(spec.properties)) {
    if (form.elements[name].disabled) continue; // unread by the optimizer: its default
    const r = checkValue(prop, form.elements[name].value.trim());
    markField(form, name, r.error);
    if (r.error) ok = false;
    else if (!r.skip) values[name] = r.value;
  }
  return ok ? values : null;
}

function markField(form, name, error) {
  const field = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (!field) return;
  field.classList.toggle("invalid", !!error);
  field.querySelector(".err").textContent = error ? `${name}: ${error}` : "";
}

/** The fields a refusal names (body.epochs, body.hidden_layers.0), marked with the API's reason. */
export function showServerErrors(form, err) {
  for (const p of err.body?.invalid_params || []) markField(form, p.name.replace(/^body\./, "").split(".")[0], p.reason);
}

// ---------------------------------------------------------------- short labels

const SHORT = { learning_rate: "lr", batch_size: "batch", train_limit: "n", hidden_layers: "layers", log_every: "log every" };

/** A spec value as people read it: layers "64-32", an unset limit "all" (train_limit: every image),
 * an unset setting "off" (early_stopping), a setting's own fields "patience=2, min_delta=0". */
export function showValue(value, prop) {
  if (value == null) {
    const main = prop ? fieldKind(prop).main : {};
    return main.type === "object" ? "off" : "all"; // prop from trainSpecSchema(): its $refs inlined
  }
  if (Array.isArray(value)) return value.join("-");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}=${showValue(v)}`).join(", ");
  return String(value);
}

/** A spec field and its value, as a sweep's or a study's list of them shows it: "learning_rate=0.1",
 * "early_stopping=off", "early_stopping=(patience=2, min_delta=0)". `schema`: trainSpecSchema()'s. */
export function fieldText(schema, field, value) {
  const text = showValue(value, schema.properties[field]);
  return `${field}=${value && typeof value === "object" && !Array.isArray(value) ? `(${text})` : text}`;
}

/** What a page of one job or model names at the top even at their defaults: what makes the network
 * (a sigmoid model's page never said sigmoid). */
export const CORE_FIELDS = ["backend", "hidden_layers", "activation", "init", "optimizer", "learning_rate"];

/** For rows listed together (jobs, models), the fields a row's label names even at their default: the
 * notebook's two axes (a sigmoid/glorot row read "numpy · lr 5 · epochs 3"), and those that vary among
 * the rows of its sweep or study, so that one sweep's rows read alike ("glorot" beside "normal", not
 * nothing beside it). `specOf(row)` is the row's spec. */
export function variedInGroups(rows, specOf, spec) {
  const groups = new Map();
  for (const row of rows) {
    const key = row.sweep_id ?? (row.study_id != null ? `study ${row.study_id}` : null);
    if (key != null) groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  const varied = new Map();
  for (const members of groups.values()) {
    const fields = Object.keys(spec.properties).filter((f) => new Set(members.map((r) => JSON.stringify(specOf(r)[f] ?? null))).size > 1);
    for (const row of members) varied.set(row, fields);
  }
  return (row) => ["activation", "init", ...(varied.get(row) ?? [])];
}

/** One field of a short label: an enum by its value alone ("relu"), others by a short name ("lr 0.002"). */
export function shortPart(name, value, spec, sep = " ") {
  const prop = spec.properties[name];
  // a study's sampled rate, 0.007130874626643603, as the command line's %g shows it: 0.00713087
  const text = typeof value === "number" && !Number.isInteger(value) ? String(Number(value.toPrecision(6))) : showValue(value, prop);
  return prop && fieldKind(prop).main.enum ? text : `${SHORT[name] ?? name.replace(/_/g, " ")}${sep}${text}`;
}

/** "numpy · relu · he · adam · lr 0.002 · cosine · batch 128": the spec's values that differ from
 * the defaults, and those `named` whatever their value, in the schema's order. */
export function shortLabel(jobSpec, spec, named = []) {
  const parts = [];
  for (const [name, prop] of Object.entries(spec.properties)) {
    const value = jobSpec[name];
    const usual = JSON.stringify(value) === JSON.stringify(defaultOf(prop, jobSpec) ?? null);
    if (value === undefined || (usual && !named.includes(name))) continue;
    parts.push(shortPart(name, value, spec));
  }
  return parts.join(" · ") || "defaults";
}
