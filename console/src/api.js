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

/** This console's own writes: in flight, and when the last one ended (its draft events echo back). */
export const writes = { inFlight: 0, lastEnded: 0 };

async function send(method, url, body) {
  if (method === "GET") return exchange(method, url, body);
  writes.inFlight += 1;
  try {
    return await exchange(method, url, body);
  } finally {
    writes.inFlight -= 1;
    writes.lastEnded = Date.now();
  }
}

async function exchange(method, url, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
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
