// Building the page from data without ever parsing data as HTML: every element comes from h(), every
// text from a Text node, every URL attribute through safeUrl(). Nothing here sets innerHTML.

const URL_ATTRIBUTES = new Set(["href", "src", "action", "formaction", "poster"]);
const PROPERTIES = new Set(["value", "checked", "selected", "disabled", "open", "hidden", "multiple"]);

/** A same-origin http(s) URL as given, or null (javascript:, data:, another site's URL, garbage). */
export function safeUrl(value) {
  const text = String(value);
  try {
    const url = new URL(text, location.href);
    if ((url.protocol === "http:" || url.protocol === "https:") && url.origin === location.origin) return text;
  } catch { /* not a URL at all */ }
  return null;
}

/** h("a", {href: "#/jobs/1", class: "x"}, "text", child, [more]): an element; null/false children are skipped. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (name === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (name === "style") Object.assign(el.style, value); // CSSOM, which the CSP allows (a style attribute it refuses)
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${name} must be a function`);
      el.addEventListener(name.slice(2), value);
    } else if (URL_ATTRIBUTES.has(name)) {
      const url = safeUrl(value);
      if (url === null) console.warn(`refused ${name}=${JSON.stringify(String(value))}`);
      else el.setAttribute(name, url);
    } else if (PROPERTIES.has(name)) el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...nodes(children));
  return el;
}

function nodes(children) {
  return children.flat(Infinity).filter((c) => c != null && c !== false).map((c) => (c instanceof Node ? c : String(c)));
}

/** Replace an element's children (strings become text). */
export function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

// ---------------------------------------------------------------- numbers and times, one way each

export const pct = (x, digits = 2) => (x == null ? "–" : `${(100 * x).toFixed(digits)}\u00a0%`);

/** "1 trial", "1,000 tests": a count and its noun, agreeing (as service/quoting.py's counted). */
export const counted = (n, noun) => `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}`;
/** A p-value as the API's selection.p_text words it: one that underflowed to 0 is a bound, not zero. */
export const pText = (p) => (p === 0 ? "p < 1e-300" : `p = ${Number(p.toPrecision(3))}`);
/** A gap between two accuracies in points, "0.54"; one that two decimals round to nothing is "< 0.01", not none. */
export const gapPoints = (gap) => (gap > 0 && 100 * gap < 0.005 ? "< 0.01" : (100 * gap).toFixed(2));

/** "24 ms" under a second (a short training run never reads "0.0 s"), "4.2 s" under ten, "42 s",
 * "3 min 07 s", "2 h 05 min". */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  if (seconds < 0.9995) return seconds > 0 && seconds < 0.0005 ? "< 1 ms" : `${Math.round(1000 * Math.max(0, seconds))} ms`;
  if (seconds < 9.95) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

export const seconds = (from, to = Date.now()) => (from ? (new Date(to) - new Date(from)) / 1000 : null);

/** "12:04" today, "3 Nov 12:04" otherwise; the full date and time go in a title. */
export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const today = d.toDateString() === new Date().toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return today ? time : `${d.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

export const timeCell = (iso) => h("time", { datetime: iso, title: iso ? new Date(iso).toLocaleString() : null }, when(iso));

/** A string of digits (an id or an offset from the URL) as a number; anything else as null. */
export const digits = (value) => (/^\d{1,15}$/.test(value ?? "") ? Number(value) : null);
