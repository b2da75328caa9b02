// The admin API, as the logged-in console: the session cookie goes along by itself (it is
// HttpOnly, never readable here); writes add the session's CSRF token. The admin token is sent
// once, to log in, and kept nowhere.

export const store = document.body.dataset.store;
const base = `/admin/api/v1/stores/${encodeURIComponent(store)}`;
let csrf = null;

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_error";
    this.details = e.details;
  }
}

/**
 * This console's own saves: every write is named by a random id (`x-vitrina-save`), which the
 * server echoes in the `draft` event the save causes; an event with one of these ids is this
 * console's own echo, any other is another editor's save. The newest 200 are kept.
 */
const own = new Set();
export const isOwnSave = (id) => typeof id === "string" && own.has(id);

function newSaveId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  const id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  own.add(id);
  if (own.size > 200) own.delete(own.values().next().value);
  return id;
}

async function send(method, url, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  if (method !== "GET" && url.startsWith(base)) headers["x-vitrina-save"] = newSaveId();
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Who is logged in: their name, role, and whether they are staff (not the admin token). */
export const me = { user: "", role: "viewer", staff: false };

/** Whether the logged-in role may change drafts (the server checks every write anyway). */
export const canEdit = () => me.role === "editor" || me.role === "owner";

function enter(s) {
  csrf = s.authenticated === false ? null : s.csrfToken;
  Object.assign(me, { user: s.user || "", role: s.role || "viewer", staff: s.staff === true });
  return s;
}

/** The current session, if any: `{authenticated, store, user, role, staff, csrfToken}`. */
export async function session() {
  const s = await send("GET", "/admin/session");
  return s.authenticated ? enter(s) : s;
}

export async function login(token) {
  return enter(await send("POST", "/admin/session", { token }));
}

/** A staff member's login: their name and password, sent once and kept nowhere. */
export async function loginStaff(name, password) {
  return enter(await send("POST", "/admin/session", { name, password }));
}

/**
 * A staff member changes their own password: their other sessions end, and this one is
 * re-issued (a new cookie, set by the answer, and a new CSRF token).
 */
export async function changePassword(currentPassword, newPassword) {
  return enter(await send("PUT", "/admin/session/password", { currentPassword, newPassword }));
}

export async function logout() {
  await send("DELETE", "/admin/session");
  csrf = null;
}

export const get = (path) => send("GET", base + path);
export const put = (path, body) => send("PUT", base + path, body);
export const post = (path, body) => send("POST", base + path, body ?? {});
export const patch = (path, body) => send("PATCH", base + path, body);
export const del = (path) => send("DELETE", base + path);
export const previewUrl = (slug) => `${base}/pages/${encodeURIComponent(slug)}/preview`;
