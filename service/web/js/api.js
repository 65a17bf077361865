// Every request the dashboard makes, in one place: paths are built here from encoded parts, errors
// become Problem (the API's RFC 9457 body), and the API's token goes with each one once the user gave it.

export class Problem extends Error {
  constructor(body, status) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.body = body;
    this.status = status;
  }
}

const part = (value) => encodeURIComponent(String(value));

/** "/jobs?status=running": the query without empty values. */
export function path(base, query = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v != null && v !== "") params.set(k, v);
  const qs = params.toString();
  return qs ? `${base}?${qs}` : base;
}

// MLPLAB_API_TOKEN as the user typed it: sessionStorage, so that it goes when the tab closes.
const TOKEN_KEY = "mlplab.token";
const tokenListeners = [];

let unstored = null; // the token when the browser refuses storage (site data blocked): this page only
function storage() {
  try { return window.sessionStorage ?? null; } catch { return null; } // reading it may throw SecurityError
}

export const heldToken = () => { try { return storage()?.getItem(TOKEN_KEY) ?? unstored; } catch { return unstored; } };
/** Call fn whenever the token is kept or forgotten. */
export const onTokenChange = (fn) => { tokenListeners.push(fn); };
export function keepToken(token) {
  unstored = token;
  try { storage()?.setItem(TOKEN_KEY, token); } catch { /* kept in this page only */ }
  tokenListeners.forEach((fn) => fn());
}
export function forgetToken() {
  unstored = null;
  try { storage()?.removeItem(TOKEN_KEY); } catch { /* nothing was stored */ }
  tokenListeners.forEach((fn) => fn());
}
/** Why a typed token cannot be sent (a header carries visible ASCII only), or null. */
export const tokenProblem = (token) => /^[\x21-\x7e]+$/.test(token)
  ? null : "a token is letters, digits and ASCII punctuation, without spaces: check what was pasted";

/** Whether the API refused a request for its token: none sent or a wrong one (a cross-site refusal is a 403). */
export const needsToken = (err) => err instanceof Problem && err.status === 401;

// What the browser fetches by itself (images, event streams, downloads) cannot send the header: with
// MLPLAB_PROTECT_READS its links carry a read ticket instead (GET /read-ticket, an hour's reads).
let ticket = null; // { token, value (null: none needed or given), renew (ms) }
let ticketing = null;
async function freshTicket(token) {
  if (ticket?.token === token && Date.now() < ticket.renew) return;
  ticketing ??= fetch("/read-ticket", { headers: { authorization: `Bearer ${token}` } })
    .then(async (response) => {
      const given = response.ok ? await response.json() : null;
      // 404: reads are open, for as long as the page lives; another refusal (a proxy's 502 while the API
      // restarts, a wrong token): asked again within a minute. A ticket: renewed 10 min before it
      // expires by the browser's clock, and at most 50 min on, however far that clock is off.
      const renew = given ? Math.min(Date.parse(given.expires_at) - 10 * 60e3, Date.now() + 50 * 60e3)
        : response.status === 404 ? Infinity : Date.now() + 60e3;
      ticket = { token, value: given?.ticket ?? null, renew };
    })
    .catch(() => { ticket = null; }) // unreachable: the request itself will say so
    .finally(() => { ticketing = null; });
  await ticketing;
}
/** `url` with the read ticket, for a link or an image the browser fetches without the dashboard. */
export function linked(url) {
  const value = ticket?.token === heldToken() ? ticket.value : null;
  return value ? `${url}${url.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(value)}` : url;
}

export async function request(url, options = {}) {
  const token = heldToken();
  if (token) await freshTicket(token);
  const headers = token ? { ...options.headers, authorization: `Bearer ${token}` } : options.headers;
  const response = await fetch(url, { ...options, headers });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    throw new Problem(typeof body === "object" ? body : { title: `HTTP ${response.status}`, detail: body }, response.status);
  }
  return body;
}

const post = (url, body) =>
  request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

let openapi = null;
/** The OpenAPI document, read once: the spec's fields, defaults and limits, the job states. */
export const schema = () => (openapi ??= request("/openapi.json").catch((err) => { openapi = null; throw err; }));

export const jobs = (query) => request(path("/jobs", query));
export const job = (id) => request(`/jobs/${part(id)}`);
export const submitJob = (spec) => post("/jobs", spec);
export const cancelJob = (id) => request(`/jobs/${part(id)}/cancel`, { method: "POST" });
/** The job's loss curve for drawing: [{epoch, step, loss}], at most 2,000 points however long the job. */
export const lossCurve = (id) => request(`/jobs/${part(id)}/loss-curve`).then((curve) => curve.data);
export const epochs = (id) => request(`/jobs/${part(id)}/epochs`);
export const eventsUrl = (id) => linked(`/jobs/${part(id)}/events`);

export const sweeps = (query) => request(path("/sweeps", query));
export const submitSweep = (body) => post("/sweeps", body);
export const sweep = (id) => request(`/sweeps/${part(id)}`);
/** Cancel the sweep's queued jobs and ask its running ones to stop; the sweep as GET /sweeps/{id} shows it after. */
export const cancelSweep = (id) => request(`/sweeps/${part(id)}/cancel`, { method: "POST" });

export const studies = (query) => request(path("/studies", query));
export const study = (id) => request(`/studies/${part(id)}`);
/** Each searched field's importance for validation accuracy, most important first: {field: share}. */
export const studyImportance = (id) => request(`/studies/${part(id)}/importance`);

export const models = (query) => request(path("/models", query));
export const model = (id) => request(`/models/${part(id)}`);
export const confusion = (id, split) => request(path(`/models/${part(id)}/confusion-matrix`, { split }));
export const outcomes = (id, split, query) => request(path(`/models/${part(id)}/predictions/${part(split)}`, query));
export const imagePrediction = (id, split, index) => request(`/models/${part(id)}/predictions/${part(split)}/${part(index)}`);
export function predictImage(id, blob) {
  const body = new FormData();
  body.append("file", blob, "drawing.png");
  return request(`/models/${part(id)}/predict`, { method: "POST", body });
}
export const weightsUrl = (id) => linked(`/models/${part(id)}/weights`);
export const onnxUrl = (id) => linked(`/models/${part(id)}/model.onnx`);

export const compare = (ids) => request(path("/compare", { ids }));
/** Two models image by image on a split (train, validation, test): the counts and McNemar's p-value. */
export const disagreements = (a, b, split, query = { limit: 1 }) => request(path("/compare/disagreements", { a, b, split, ...query }));

export const datasets = () => request("/datasets");
/** A dataset's class names from GET /datasets' answer; its digits for one it does not list. */
export const classesOf = (answer, name) => answer.data.find((d) => d.name === name)?.classes ?? [...Array(10).keys()].map(String);
export const labels = (name, split, query) => request(path(`/datasets/${part(name)}/${part(split)}`, query));
export const imageUrl = (name, split, index, scale = 2) => linked(path(`/datasets/${part(name)}/${part(split)}/${part(index)}.png`, { scale }));
