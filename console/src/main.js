// The merchant console: logs in with a staff member's name and password or the store's admin
// token (exchanged for an HttpOnly session cookie, see src/http/console_session.rs) and draws
// one screen per location hash. What the role cannot do is hidden (body[data-role], CSS); the
// server checks every request anyway.

import * as api from "./api.js";
import { h, clear, errorBox } from "./dom.js";
import { pageEditor } from "./editor.js";
import * as screens from "./screens.js";
import { staff } from "./staff.js";
import { audit } from "./audit.js";

const app = document.getElementById("app");
const main = h("main", { id: "screen" });

const NAV = [
  ["#/overview", "Overview"],
  ["#/pages", "Pages"],
  ["#/theme", "Theme"],
  ["#/posts", "Blog"],
  ["#/products", "Products"],
  ["#/feeds", "Webhooks & sync"],
  ["#/staff", "Staff"],
  ["#/audit", "Audit log"],
];

/** Who is logged in (`api.me`, from the session). */
const me = api.me;

function enter() {
  document.body.dataset.role = me.role;
  shell();
}

function loginScreen(message) {
  delete document.body.dataset.role;
  const fail = (line) => (err) => {
    line.textContent = err.status === 429 ? `Too many failed logins: ${err.message}` : err.message;
  };
  const name = h("input", { id: "login-name", autocomplete: "username", required: true, maxlength: 40, "aria-label": "Name" });
  const password = h("input", { id: "login-password", type: "password", autocomplete: "current-password", required: true, "aria-label": "Password" });
  const staffLine = h("p", { class: "status bad", role: "alert" }, message || "");
  const staffForm = h("form", { id: "staff-login", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api.loginStaff(name.value.trim(), password.value);
      password.value = "";
      enter();
    } catch (err) {
      fail(staffLine)(err);
    }
  } },
    h("h1", {}, `Log in to ${api.store}`),
    h("label", { for: "login-name" }, "Name"),
    name,
    h("label", { for: "login-password" }, "Password"),
    password,
    h("button", { type: "submit", class: "primary" }, "Log in"),
    staffLine,
  );
  const token = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-label": "Admin token" });
  const line = h("p", { class: "status bad", role: "alert" });
  const form = h("form", { id: "login", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api.login(token.value.trim());
      token.value = "";
      enter();
    } catch (err) {
      fail(line)(err);
    }
  } },
    h("h2", {}, "Or with the store's admin token"),
    h("label", { for: "token" }, "Admin token"),
    token,
    h("button", { type: "submit", class: "primary" }, "Log in"),
    line,
  );
  clear(app).append(h("div", { class: "login" }, h("div", { class: "login-forms" }, staffForm, form)));
  name.focus();
}

function shell() {
  const nav = h("nav", {},
    h("strong", { class: "brand" }, api.store),
    NAV.map(([href, label]) => h("a", { href }, label)),
    h("span", { id: "whoami" }, `${me.user} · ${me.role}`),
    h("a", { href: "/", target: "_blank", rel: "noopener" }, "Storefront"),
    h("button", { type: "button", id: "logout", onclick: async () => {
      try {
        await api.logout();
      } finally {
        loginScreen("Logged out.");
      }
    } }, "Log out"),
  );
  clear(app).append(nav, main);
  route();
}

/** Visits so far: a screen still loading when the next visit began is no longer shown. */
let visits = 0;

async function route() {
  if (!main.isConnected) return;
  const hash = location.hash || "#/overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  const [, screen, arg] = hash.split("/");
  // Each visit draws into a view of its own: a screen that answers late (the overview's five
  // requests after the merchant already opened a page) draws into its detached view, never
  // over the screen the merchant is on now.
  const visit = ++visits;
  const view = h("div", { class: "view", dataset: { screen: hash } }, h("p", { class: "loading" }, "Loading…"));
  delete main.dataset.ready;
  clear(main).append(view);
  try {
    if (screen === "pages" && arg) await pageEditor(view, decodeURIComponent(arg));
    else if (screen === "pages") await screens.pages(view, (slug) => (location.hash = `#/pages/${encodeURIComponent(slug)}`));
    else if (screen === "theme") await screens.theme(view);
    else if (screen === "posts") await screens.posts(view);
    else if (screen === "products") await screens.products(view);
    else if (screen === "feeds") await screens.feeds(view);
    else if (screen === "staff") await staff(view, me);
    else if (screen === "audit") await audit(view);
    else await screens.overview(view);
  } catch (e) {
    if (visit !== visits) return;
    if (e.status === 401) return loginScreen("Your session ended; log in again.");
    clear(view).append(errorBox(e));
  }
  // The screen has drawn and loaded what it shows (tests wait for this, not for a delay).
  if (visit === visits) main.dataset.ready = hash;
}

window.addEventListener("hashchange", route);

(async () => {
  try {
    const s = await api.session();
    if (s.authenticated) enter();
    else loginScreen();
  } catch (e) {
    clear(app).append(errorBox(e));
  }
})();
