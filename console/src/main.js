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

/** Who is logged in: `{user, role}` from the session. */
let me = { user: "", role: "viewer" };

function enter(session) {
  me = { user: session.user, role: session.role };
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
      const s = await api.loginStaff(name.value.trim(), password.value);
      password.value = "";
      enter(s);
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
      const s = await api.login(token.value.trim());
      token.value = "";
      enter(s);
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

async function route() {
  if (!main.isConnected) return;
  const hash = location.hash || "#/overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  const [, screen, arg] = hash.split("/");
  clear(main).append(h("p", { class: "loading" }, "Loading…"));
  try {
    if (screen === "pages" && arg) await pageEditor(main, decodeURIComponent(arg));
    else if (screen === "pages") await screens.pages(main, (slug) => (location.hash = `#/pages/${encodeURIComponent(slug)}`));
    else if (screen === "theme") await screens.theme(main);
    else if (screen === "posts") await screens.posts(main);
    else if (screen === "products") await screens.products(main);
    else if (screen === "feeds") await screens.feeds(main);
    else if (screen === "staff") await staff(main, me);
    else if (screen === "audit") await audit(main);
    else await screens.overview(main);
  } catch (e) {
    if (e.status === 401) return loginScreen("Your session ended; log in again.");
    clear(main).append(errorBox(e));
  }
}

window.addEventListener("hashchange", route);

(async () => {
  try {
    const s = await api.session();
    if (s.authenticated) enter(s);
    else loginScreen();
  } catch (e) {
    clear(app).append(errorBox(e));
  }
})();
