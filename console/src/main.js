// The merchant console: logs in with the store's admin token (exchanged for an HttpOnly
// session cookie, see src/http/console_session.rs) and draws one screen per location hash.

import * as api from "./api.js";
import { h, clear, errorBox } from "./dom.js";
import { pageEditor } from "./editor.js";
import * as screens from "./screens.js";

const app = document.getElementById("app");
const main = h("main", { id: "screen" });

const NAV = [
  ["#/overview", "Overview"],
  ["#/pages", "Pages"],
  ["#/theme", "Theme"],
  ["#/posts", "Blog"],
  ["#/products", "Products"],
  ["#/feeds", "Webhooks & sync"],
];

function loginScreen(message) {
  const token = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-label": "Admin token" });
  const line = h("p", { class: "status bad", role: "alert" }, message || "");
  const form = h("form", { id: "login", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api.login(token.value.trim());
      token.value = "";
      shell();
    } catch (err) {
      line.textContent = err.status === 429 ? `Too many failed logins: ${err.message}` : err.message;
    }
  } },
    h("h1", {}, `Log in to ${api.store}`),
    h("label", { for: "token" }, "Admin token"),
    token,
    h("button", { type: "submit", class: "primary" }, "Log in"),
    line,
  );
  clear(app).append(h("div", { class: "login" }, form));
  token.focus();
}

function shell() {
  const nav = h("nav", {},
    h("strong", { class: "brand" }, api.store),
    NAV.map(([href, label]) => h("a", { href }, label)),
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
    if (s.authenticated) shell();
    else loginScreen();
  } catch (e) {
    clear(app).append(errorBox(e));
  }
})();
