// The page editor: the draft's blocks in order (add, reorder, duplicate, delete), a settings
// editor per block and a code editor for custom code with the validator's messages at their
// line and column, a live preview of the draft (rendered by the store's isolate) at three
// device widths, Save draft, Publish (refused with the errors shown), versions and rollback.
//
// A library block's settings are edited in a form built from the settings it declares
// (settings-form.js); a block with its own code reads any settings, edited as JSON.
//
// A viewer gets the same screen read-only: the code box and the settings cannot be typed in,
// and every button that would change the draft is disabled with a tooltip saying why (the
// server refuses a viewer's write anyway).

import * as api from "./api.js";
import { h, clear, errorBox, when } from "./dom.js";
import { codeEditor } from "./code.js";
import { blockTypes, settingsForm } from "./settings-form.js";
import { watchDrafts } from "./drafts-live.js";

const BLOCK_TYPES = [
  "hero", "product-grid", "product-detail", "text", "gallery", "blog-list", "blog-post",
  "cart-summary", "recently-viewed", "cart", "search-results", "order-confirmation", "custom",
];
const DEVICES = { desktop: "100%", tablet: "768px", mobile: "375px" };
const NEW_CUSTOM = `function render(storefront, helpers) {
  return \`<section class="custom">\${helpers.escapeHtml(storefront.name)}</section>\`;
}`;

const libraryTemplate = (type) => `function render(storefront, helpers) {
  // Replaces the library's ${type} block on this page.
  return \`<section class="${type}"><h2>\${helpers.escapeHtml(storefront.name)}</h2></section>\`;
}`;

function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

const VIEW_ONLY = "Viewers can look but not change pages: an owner can give you the editor role";

/** A button that changes the draft: disabled, with the reason as its tooltip, for a viewer. */
function writeButton(readOnly, attrs, ...children) {
  if (!readOnly) return h("button", { type: "button", ...attrs }, ...children);
  const { onclick: _ignored, ...rest } = attrs;
  return h("button", { type: "button", ...rest, disabled: true, title: VIEW_ONLY, "aria-disabled": "true" }, ...children);
}

export async function pageEditor(root, slug) {
  const readOnly = !api.canEdit();
  const btn = (attrs, ...children) => writeButton(readOnly, attrs, ...children);
  const st = { slug, blocks: [], selected: null, dirty: new Map(), device: "desktop", code: null, form: null, reloads: 0 };
  const declared = await blockTypes(api);
  const status = h("p", { class: "status", id: "status", role: "status" });
  const problems = h("div", { class: "problems", id: "problems" });
  const list = h("ol", { class: "block-list", id: "blocks" });
  const detail = h("div", { class: "block-detail", id: "block-detail" });
  const frame = h("iframe", { id: "preview", title: "Preview of the draft", sandbox: "allow-same-origin" });
  const versions = h("ul", { class: "versions", id: "versions" });
  const addType = h("select", { id: "add-type", "aria-label": "Block type", disabled: readOnly, title: readOnly ? VIEW_ONLY : undefined }, BLOCK_TYPES.map((t) => h("option", { value: t }, t)));

  const say = (text, kind) => {
    status.textContent = text;
    status.className = `status ${kind || ""}`;
  };
  const refreshPreview = () => {
    st.reloads += 1;
    frame.src = `${api.previewUrl(slug)}?r=${st.reloads}`;
  };
  const deviceButtons = Object.keys(DEVICES).map((d) =>
    h("button", { type: "button", class: "device", dataset: { device: d }, "aria-pressed": String(d === st.device), onclick: () => setDevice(d) }, d),
  );
  function setDevice(d) {
    st.device = d;
    frame.style.width = DEVICES[d];
    frame.dataset.device = d;
    for (const b of deviceButtons) b.setAttribute("aria-pressed", String(b.dataset.device === d));
  }

  root.classList.add("page-editor");
  clear(root).append(
    h("div", { class: "editor-head" },
      h("h2", {}, `Page: ${slug}`),
      h("div", { class: "actions" },
        btn({ id: "save", onclick: () => saveAll() }, "Save draft"),
        btn({ id: "publish", class: "primary", onclick: () => publish() }, "Publish"),
        h("a", { href: slug === "home" ? "/" : `/pages/${encodeURIComponent(slug)}`, target: "_blank", rel: "noopener" }, "Open live page"),
      ),
    ),
    // (DOM append writes `false` as text: nothing is an empty string.)
    readOnly ? h("p", { class: "note", id: "read-only-note" }, `You are a viewer: this page is read-only. ${VIEW_ONLY}.`) : "",
    status,
    problems,
    h("div", { class: "editor-cols" },
      h("aside", { class: "blocks-pane" },
        h("h3", {}, "Blocks"),
        list,
        h("div", { class: "add-block" }, addType, btn({ id: "add-block", onclick: () => addBlock(addType.value) }, "Add block")),
        h("h3", {}, "Versions"),
        versions,
      ),
      detail,
      h("section", { class: "preview-pane" },
        h("div", { class: "devices", role: "group", "aria-label": "Preview width" }, deviceButtons),
        h("div", { class: "frame-box" }, frame),
      ),
    ),
  );
  setDevice("desktop");

  async function load() {
    const data = await api.get(`/pages/${encodeURIComponent(slug)}`);
    st.blocks = data.draft.blocks;
    st.dirty.clear();
    if (!st.blocks.some((b) => b.id === st.selected)) st.selected = st.blocks.length ? st.blocks[0].id : null;
    showWarnings(data.draft.warnings || []);
    drawList();
    drawDetail();
    refreshPreview();
    loadVersions();
  }

  function showWarnings(warnings) {
    clear(problems);
    if (!warnings.length) return;
    problems.append(
      h("p", {}, "These blocks fail validation; the page cannot be published until they are fixed:"),
      h("ul", {}, warnings.flatMap((w) => (w.errors || []).map((e) =>
        h("li", { dataset: { block: w.blockId, line: e.line, column: e.column } }, `${w.blockId}: line ${e.line}, column ${e.column}: ${e.message} (${e.rule})`)))),
    );
  }

  function drawList() {
    clear(list);
    st.blocks.forEach((b, i) => {
      const label = b.type + (b.code != null && b.type !== "custom" ? " (custom code)" : "");
      list.append(
        h("li", { class: b.id === st.selected ? "selected" : "", dataset: { blockId: b.id, type: b.type } },
          h("button", { type: "button", class: "select", onclick: () => select(b.id) }, `${i + 1}. ${label}`),
          h("span", { class: "tools" },
            btn({ class: "up", title: "Move up", "aria-label": "Move up", disabled: i === 0, onclick: () => move(b, i - 1) }, "↑"),
            btn({ class: "down", title: "Move down", "aria-label": "Move down", disabled: i === st.blocks.length - 1, onclick: () => move(b, i + 1) }, "↓"),
            btn({ class: "duplicate", title: "Duplicate", "aria-label": "Duplicate", onclick: () => duplicate(b, i) }, "Copy"),
            btn({ class: "delete", title: "Delete", "aria-label": "Delete", onclick: () => remove(b) }, "✕"),
          ),
        ),
      );
    });
  }

  function select(id) {
    st.selected = id;
    drawList();
    drawDetail();
  }

  const validate = debounce(async (block, text) => {
    try {
      const report = await api.post("/blocks/validate", { code: text });
      if (st.code && st.selected === block.id) {
        st.code.show(report.errors, report.warnings);
        drawDiagnostics(report);
      }
      // Live preview: a valid edit is saved to the draft and the preview renders it.
      if (report.valid && st.dirty.has(block.id)) await saveBlock(block.id, "Draft saved; preview updated");
    } catch (e) {
      say(e.message, "bad");
    }
  }, 500);

  const diagnostics = h("ul", { class: "diagnostics", id: "diagnostics" });
  function drawDiagnostics(report) {
    clear(diagnostics);
    for (const [kind, items] of [["error", report.errors], ["warning", report.warnings]]) {
      for (const d of items) {
        diagnostics.append(h("li", { class: kind, dataset: { line: d.line, column: d.column, rule: d.rule } }, `${kind} at line ${d.line}, column ${d.column}: ${d.message} (${d.rule})`));
      }
    }
  }

  function drawDetail() {
    if (st.code) st.code.destroy();
    st.code = null;
    if (st.form) st.form.retire();
    st.form = null;
    clear(detail);
    clear(diagnostics);
    const block = st.blocks.find((b) => b.id === st.selected);
    if (!block) {
      detail.append(h("p", {}, "No block selected."));
      return;
    }
    const pending = st.dirty.get(block.id) || {};
    detail.append(h("h3", {}, `${block.type} · ${block.id}`));
    if (block.code != null || block.type === "custom") {
      const box = h("div", { class: "code", id: "code" });
      detail.append(h("label", {}, "Code"), box, diagnostics);
      st.code = codeEditor(box, pending.code ?? block.code ?? NEW_CUSTOM, (text) => {
        st.dirty.set(block.id, { ...(st.dirty.get(block.id) || {}), code: text });
        say("Unsaved changes");
        validate(block, text);
      }, { readOnly });
      // (Validating is an editor's request: a viewer only reads the code.)
      if (!readOnly) validate(block, st.code.text());
    }
    else {
      // A library block can be given its own code: it then renders that instead.
      detail.append(btn({ id: "write-code", onclick: () => {
        block.code = libraryTemplate(block.type);
        st.dirty.set(block.id, { ...(st.dirty.get(block.id) || {}), code: block.code });
        drawDetail();
      } }, "Write custom code for this block"));
    }
    if (block.code != null && block.type !== "custom") {
      detail.append(btn({ id: "library-code", onclick: () => act("Back to the library block", () => api.patch(blockPath(block), { code: null })) }, "Use the library block again"));
    }
    const schema = block.code == null ? declared.get(block.type) : null;
    if (schema) {
      st.form = settingsForm(schema, pending.config ?? block.config ?? {}, (config) => {
        st.dirty.set(block.id, { ...(st.dirty.get(block.id) || {}), config });
        say("Unsaved changes");
        autosave(block.id);
      }, { readOnly, reason: VIEW_ONLY });
      detail.append(h("h4", {}, `${schema.label} settings`), st.form.el);
      return;
    }
    st.form = null;
    const settings = h("textarea", { id: "settings", rows: 10, spellcheck: "false", readonly: readOnly, title: readOnly ? VIEW_ONLY : undefined });
    settings.value = pending.configText ?? JSON.stringify(block.config ?? {}, null, 2);
    settings.addEventListener("input", () => {
      st.dirty.set(block.id, { ...(st.dirty.get(block.id) || {}), configText: settings.value });
      say("Unsaved changes");
    });
    detail.append(h("label", { for: "settings" }, "Settings (JSON)"), settings);
  }

  // Live preview for settings too: an edit is saved to the draft shortly after typing stops.
  const autosave = debounce(async (id) => {
    if (!st.dirty.has(id)) return;
    try {
      await saveBlock(id, "Draft saved; preview updated");
    } catch (e) {
      refused(e);
    }
  }, 600);

  /** A refusal: at its field when the server named one, else in the status line. */
  function refused(e) {
    const field = e && e.details && e.details.field;
    if (field && st.form && st.form.showError(field, e.details.reason || e.message)) say(`Not saved: ${e.message}`, "bad");
    else say(e.message, "bad");
  }

  async function saveBlock(id, message) {
    const change = st.dirty.get(id);
    if (!change) return;
    const body = {};
    if (change.code !== undefined) body.code = change.code;
    if (change.config !== undefined) body.config = change.config;
    if (change.configText !== undefined) {
      try {
        body.config = JSON.parse(change.configText);
      } catch (e) {
        throw new Error(`The settings of ${id} are not valid JSON: ${e.message}`);
      }
    }
    const res = await api.patch(`/pages/${encodeURIComponent(slug)}/blocks/${encodeURIComponent(id)}`, body);
    const b = st.blocks.find((x) => x.id === id);
    if (b && res.block) Object.assign(b, res.block);
    if (st.dirty.get(id) === change) st.dirty.delete(id);
    refreshPreview();
    say(message || "Draft saved", "good");
  }

  async function saveAll() {
    try {
      for (const id of [...st.dirty.keys()]) await saveBlock(id);
      say("Draft saved", "good");
      return true;
    } catch (e) {
      refused(e);
      return false;
    }
  }

  async function publish() {
    if (!(await saveAll())) return;
    try {
      const res = await api.post(`/pages/${encodeURIComponent(slug)}/publish`);
      clear(problems);
      say(`Published version ${res.version}`, "good");
      loadVersions();
    } catch (e) {
      say(`Publish refused: ${e.message}`, "bad");
      try {
        const data = await api.get(`/pages/${encodeURIComponent(slug)}`);
        showWarnings(data.draft.warnings || []);
      } catch {
        /* the refusal is shown already */
      }
    }
  }

  async function act(what, fn) {
    try {
      if (st.dirty.size && !(await saveAll())) return;
      await fn();
      await load();
      say(what, "good");
    } catch (e) {
      say(e.message, "bad");
    }
  }
  const blockPath = (b) => `/pages/${encodeURIComponent(slug)}/blocks/${encodeURIComponent(b.id)}`;
  const move = (b, to) => act("Block moved", () => api.patch(blockPath(b), { position: to }));
  const remove = (b) => act("Block deleted", () => api.del(blockPath(b)));
  const duplicate = (b, i) =>
    act("Block duplicated", async () => {
      const copy = { type: b.type, config: b.config ?? {}, visibility: b.visibility ?? {}, position: i + 1 };
      if (b.code != null) copy.code = b.code;
      const res = await api.post(`/pages/${encodeURIComponent(slug)}/blocks`, copy);
      st.selected = res.block.id;
    });
  const addBlock = (type) =>
    act("Block added", async () => {
      const block = { type, config: {} };
      if (type === "custom") block.code = NEW_CUSTOM;
      const res = await api.post(`/pages/${encodeURIComponent(slug)}/blocks`, block);
      st.selected = res.block.id;
    });

  async function loadVersions() {
    try {
      const data = await api.get(`/pages/${encodeURIComponent(slug)}/versions`);
      clear(versions).append(
        ...data.versions.map((v) =>
          h("li", { dataset: { version: v.version } },
            `v${v.version} · ${v.source} · ${when(v.publishedAt)} `,
            v.live ? h("strong", {}, "live") : btn({ class: "rollback", dataset: { version: v.version }, onclick: () => rollback(v.version) }, "Roll back"),
          ),
        ),
      );
    } catch (e) {
      clear(versions).append(errorBox(e));
    }
  }
  const rollback = (version) =>
    act(`Rolled back to version ${version}`, () => api.post(`/pages/${encodeURIComponent(slug)}/rollback`, { version }));

  // Another editor saved this store's drafts: show what they saved.
  watchDrafts(frame, (event) => {
    // This console's own saves come back too, with the id it gave them: it has shown them
    // already. Another editor's save, however soon after, has another id (or none).
    if (event.page !== slug || api.isOwnSave(event.saveId)) return;
    if (st.dirty.size) {
      refreshPreview();
      say("Another editor saved this page; your unsaved changes are kept", "");
    } else {
      load().then(() => say("Another editor saved this page", ""));
    }
  });

  await load();
}
