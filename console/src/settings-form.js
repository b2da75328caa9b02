// A library block's settings form, generated from the settings its block declares
// (actors/blocks/{type}.settings.json, served at …/block-types). Values are read back into a
// config object; a field left at nothing is left out, so the block's own default applies. The
// server checks the values again and names a refused field's path; `showError` puts that
// message under the field.

import { h } from "./dom.js";

let declared = null;

/** The declarations by block type (fetched once per console load). */
export async function blockTypes(api) {
  if (!declared) {
    const data = await api.get("/block-types");
    declared = new Map(data.blockTypes.map((t) => [t.type, t]));
  }
  return declared;
}

const fieldId = (name) => `setting-${name}`;

function input(field, value, changed) {
  const id = fieldId(field.name);
  const common = { id, name: field.name, dataset: { type: field.type }, oninput: changed, onchange: changed };
  switch (field.type) {
    case "multiline":
      return h("textarea", { ...common, rows: 4, maxlength: field.maxLength, value: value ?? "" });
    case "number":
      return h("input", { ...common, type: "number", min: field.min, max: field.max, step: field.integer ? 1 : "any", value: value ?? "", placeholder: String(field.default ?? "") });
    case "boolean":
      return h("input", { ...common, type: "checkbox", checked: value ?? field.default === true });
    case "colour":
      // A text box beside the picker: a colour may also be left empty (the theme's).
      return h("input", { ...common, type: "text", pattern: "#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})", placeholder: "#rrggbb", maxlength: 7, value: value ?? "" });
    case "select":
      return h("select", { ...common }, (field.options || []).map((o) => h("option", { value: o, selected: (value ?? field.default) === o }, o)));
    case "products":
      return h("input", { ...common, type: "text", placeholder: "product ids, comma-separated", value: (value || []).join(", ") });
    case "images":
      return h("textarea", { ...common, rows: 4, placeholder: "one image a line: URL, then optionally | alt text", value: (value || []).map((i) => (i.alt ? `${i.src} | ${i.alt}` : i.src)).join("\n") });
    case "image":
    case "url":
      return h("input", { ...common, type: "text", inputmode: "url", placeholder: String(field.default || "https://…"), value: value ?? "" });
    default:
      return h("input", { ...common, type: "text", maxlength: field.maxLength, placeholder: String(field.default || ""), value: value ?? "" });
  }
}

function read(field, el) {
  const raw = el.value;
  switch (field.type) {
    case "boolean":
      return el.checked === (field.default === true) ? undefined : el.checked;
    case "number":
      return raw.trim() === "" ? undefined : Number(raw);
    case "select":
      return raw === field.default ? undefined : raw;
    case "products": {
      const ids = raw.split(",").map((s) => s.trim()).filter(Boolean);
      return ids.length ? ids : undefined;
    }
    case "images": {
      const images = raw.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const [src, ...alt] = l.split("|");
        const image = { src: src.trim() };
        if (alt.length) image.alt = alt.join("|").trim();
        return image;
      });
      return images.length ? images : undefined;
    }
    default:
      return raw === "" ? undefined : raw;
  }
}

/**
 * The form for `schema` filled from `config`; `onChange(config)` after every edit. Settings the
 * schema does not declare are kept as they are. `readOnly`: every field is disabled, with
 * `reason` as its tooltip.
 */
export function settingsForm(schema, config, onChange, { readOnly = false, reason = "" } = {}) {
  const controls = new Map();
  const errors = new Map();
  const current = () => {
    const out = {};
    for (const [k, v] of Object.entries(config || {})) if (!controls.has(k)) out[k] = v;
    for (const field of schema.fields) {
      const v = read(field, controls.get(field.name));
      if (v !== undefined) out[field.name] = v;
    }
    return out;
  };
  // A form being replaced (the draft reloaded under it) says nothing more: removing a focused
  // field fires its change event, which would save the old values over the new ones.
  let retired = false;
  const changed = () => {
    if (retired) return;
    for (const e of errors.values()) e.textContent = "";
    onChange(current());
  };
  const rows = schema.fields.map((field) => {
    const control = input(field, (config || {})[field.name], changed);
    controls.set(field.name, control);
    const error = h("span", { class: "field-error", id: `${fieldId(field.name)}-error`, role: "alert" });
    errors.set(field.name, error);
    const label = h("label", { for: fieldId(field.name) }, field.label);
    const help = field.help ? h("small", { class: "help" }, field.help) : null;
    return h("div", { class: `field field-${field.type}`, dataset: { field: field.name } },
      field.type === "boolean" ? [control, " ", label] : [label, control], help, error);
  });
  const fields = schema.fields.length ? rows : h("p", {}, "This block has no settings.");
  const form = h("form", { class: "settings-form", id: "settings-form", onsubmit: (e) => e.preventDefault() },
    // A disabled fieldset disables every control in it.
    readOnly ? h("fieldset", { disabled: true, title: reason }, fields) : fields);
  return {
    el: form,
    value: current,
    /** Called before the form is replaced: its fields' events are ignored from now on. */
    retire() {
      retired = true;
    },
    /** Shows the server's refusal (`details.field` like `config.images[1].src`) at its field. */
    showError(path, message) {
      const name = String(path || "").replace(/^(blocks\[\d+\]\.)?config\./, "").split(/[.[]/)[0];
      const target = errors.get(name);
      if (!target) return false;
      target.textContent = message;
      controls.get(name).setAttribute("aria-invalid", "true");
      return true;
    },
  };
}
