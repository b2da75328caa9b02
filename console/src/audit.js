// The audit log: who did what, when, newest first, a page at a time (GET …/audit).

import * as api from "./api.js";
import { h, clear, when } from "./dom.js";

const PAGE = 50;

export async function audit(root) {
  const body = h("tbody", {});
  const more = h("button", { type: "button", id: "audit-older" }, "Older entries");
  let before = null;
  const load = async () => {
    const q = before == null ? "" : `&before=${before}`;
    const page = await api.get(`/audit?limit=${PAGE}${q}`);
    body.append(...page.entries.map((e) =>
      h("tr", { dataset: { id: String(e.id) } }, h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, e.summary))));
    before = page.next;
    more.hidden = page.next == null;
  };
  more.addEventListener("click", () => load().catch((e) => (more.textContent = e.message)));
  clear(root).append(
    h("h2", {}, "Audit log"),
    h("table", { class: "list", id: "audit" },
      h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Who"), h("th", {}, "Action"), h("th", {}, "What"))),
      body,
    ),
    more,
  );
  await load();
}
