// The staff screen: members and their roles; owners add, re-role, re-password and remove them
// (a change ends the member's sessions); every staff member changes their own password here
// (with the current one; their other sessions end, this one goes on). The server
// checks every change (src/http/staff.rs); this screen only hides what the role cannot do.

import * as api from "./api.js";
import { h, clear, when } from "./dom.js";

const ROLES = ["owner", "editor", "viewer"];

function roleSelect(id, value) {
  return h("select", { id, "aria-label": "Role" }, ROLES.map((r) => h("option", { value: r, selected: r === value }, r)));
}

export async function staff(root, me) {
  const data = await api.get("/staff");
  const owner = me.role === "owner";
  const line = h("p", { class: "status", id: "staff-status" });
  const redraw = () => staff(root, me);
  const attempt = async (fn, done) => {
    try {
      await fn();
      line.textContent = done;
      line.className = "status good";
      await redraw();
    } catch (e) {
      line.textContent = e.message;
      line.className = "status bad";
    }
  };
  const row = (m) => {
    const enc = encodeURIComponent(m.name);
    const role = roleSelect(`role-${m.name}`, m.role);
    const pw = h("input", { type: "password", id: `password-${m.name}`, placeholder: "new password", minlength: 10, autocomplete: "new-password", "aria-label": `New password for ${m.name}` });
    return h("tr", { dataset: { name: m.name } },
      h("td", {}, m.name),
      h("td", {}, owner ? role : m.role),
      h("td", {}, `${when(m.createdAt)} by ${m.createdBy}`),
      h("td", {}, owner && [
        h("button", { type: "button", onclick: () => attempt(() => api.patch(`/staff/${enc}`, { role: role.value }), `${m.name} is now ${role.value}`) }, "Change role"),
        " ", pw, " ",
        h("button", { type: "button", onclick: () => attempt(() => api.patch(`/staff/${enc}`, { password: pw.value }), `${m.name}'s password is changed; their sessions ended`) }, "Set password"),
        " ",
        h("button", { type: "button", class: "delete", onclick: () => {
          if (confirm(`Remove ${m.name}? Their sessions end at once.`)) attempt(() => api.del(`/staff/${enc}`), `Removed ${m.name}`);
        } }, "Remove"),
      ]),
    );
  };
  const name = h("input", { id: "staff-name", placeholder: "name (letters, digits, _ -)", required: true, maxlength: 40, autocomplete: "off" });
  const role = roleSelect("staff-role", "editor");
  const password = h("input", { id: "staff-password", type: "password", placeholder: "password (10+ characters)", required: true, minlength: 10, autocomplete: "new-password" });
  clear(root).append(
    h("h2", {}, "Staff"),
    // (DOM append writes `false` as text: nothing is an empty string.)
    me.staff ? ownPassword(me) : "",
    h("p", {}, `Logged in as ${me.user} (${me.role}). The store's admin token is always an owner.`),
    line,
    h("table", { class: "list", id: "staff" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", {}, "Added"), h("th", {}, ""))),
      h("tbody", {}, data.staff.map(row)),
    ),
    owner ? h("form", { class: "inline", id: "add-staff", onsubmit: (e) => {
      e.preventDefault();
      const added = name.value;
      attempt(() => api.post("/staff", { name: added, role: role.value, password: password.value }), `Added ${added}`);
    } }, name, role, password, h("button", { type: "submit", class: "primary" }, "Add")) : "",
  );
}

/** Any staff member's own password: the current one, then the new one. */
function ownPassword(me) {
  const line = h("p", { class: "status", id: "own-password-status", role: "status" });
  const current = h("input", { id: "own-current", type: "password", required: true, autocomplete: "current-password", "aria-label": "Current password" });
  const next = h("input", { id: "own-new", type: "password", required: true, minlength: 10, autocomplete: "new-password", placeholder: "new password (10+ characters)", "aria-label": "New password" });
  return h("form", { class: "inline own-password", id: "own-password", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api.changePassword(current.value, next.value);
      line.textContent = "Your password is changed; your other sessions have ended";
      line.className = "status good";
    } catch (err) {
      line.textContent = err.status === 429 ? `Too many wrong passwords: ${err.message}` : err.message;
      line.className = "status bad";
    } finally {
      current.value = "";
      next.value = "";
    }
  } },
    h("strong", {}, `Your password (${me.user})`), current, next, h("button", { type: "submit", class: "primary" }, "Change my password"), line);
}
