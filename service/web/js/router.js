// Pages by URL hash: "#/models/3?split=test" runs the page registered for /models/:id with
// args ["3"] and params {split: "test"}. A page renders into its own root, placed in the view at
// once; leaving the page aborts its signal, runs its onLeave callbacks and detaches the root, so a
// request that answers late writes into nothing.
import { $$, fill, h } from "./dom.js";
import { problemView } from "./widgets.js";

const routes = [];
let current = null;
let view = null;

// `:model` also takes an alias (the API's ALIAS_NAME: lowercase letters, digits, dashes, a letter first);
// `:hex` a sweep's id (hex digits). Ids of any length: the API says there is no such job, not the router.
const PARAMS = { model: "(\\d+|[a-z][a-z0-9-]{0,62})", hex: "([0-9a-f]{1,32})" };

/** route("/models/:model", "jobs", page): `:id` matches digits only, `:model` an id or an alias,
 * `:hex` a sweep's id; `nav` names the menu entry. */
export function route(pattern, nav, page) {
  const source = pattern.replace(/\/:(\w+)/g, (_, name) => `/${PARAMS[name] ?? "(\\d+)"}`);
  routes.push({ regex: new RegExp(`^${source}/?$`), nav, page });
}

export const go = (hash) => { location.hash = hash; };

/** The current hash's params with some changed (null removes one): for links and filters. */
export function withParams(changes) {
  const [pathPart, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  for (const [k, v] of Object.entries(changes)) (v == null || v === "" ? params.delete(k) : params.set(k, v));
  const qs = params.toString();
  return `#${pathPart || "/"}${qs ? `?${qs}` : ""}`;
}

function notFound(ctx, root, path) {
  fill(root, h("h1", null, "Not found"), h("p", null, "No page is called ", h("code", null, path), ". ", h("a", { href: "#/" }, "Jobs")));
}

async function dispatch() {
  current?.leave();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const match = routes.map((r) => ({ r, m: r.regex.exec(path) })).find((x) => x.m);
  const controller = new AbortController();
  const leaving = [];
  const root = h("div", { class: "page" });
  const ctx = {
    args: match ? match.m.slice(1) : [],
    params: new URLSearchParams(query || ""),
    signal: controller.signal,
    onLeave: (fn) => leaving.push(fn),
    get live() { return !controller.signal.aborted; },
  };
  const me = { leave: () => { controller.abort(); leaving.forEach((fn) => fn()); root.remove(); } };
  current = me;
  $$("[data-nav]").forEach((a) => (a.dataset.nav === match?.r.nav ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current")));
  view.replaceChildren(root);
  view.setAttribute("aria-busy", "true");
  view.dataset.hash = location.hash; // what it renders: between a link's click and its hashchange, the old
  try {
    await (match ? match.r.page(ctx, root) : notFound(ctx, root, path));
  } catch (err) {
    if (ctx.live) fill(root, problemView(err, reload)); // a token given in its form loads the page again
  }
  if (current === me) view.setAttribute("aria-busy", "false");
}

/** Render the current page again (its data has changed). */
export const reload = () => dispatch();

export function start(element) {
  view = element;
  window.addEventListener("hashchange", dispatch);
  dispatch();
}
