// The console's other screens: overview, pages, theme, blog posts, products, feeds.

import * as api from "./api.js";
import { h, clear, errorBox, when } from "./dom.js";
import { todaySection } from "./stats.js";

function jsonArea(id, value, rows = 12) {
  const t = h("textarea", { id, rows, spellcheck: "false" });
  t.value = JSON.stringify(value, null, 2);
  return t;
}

function parse(textarea) {
  try {
    return JSON.parse(textarea.value);
  } catch (e) {
    throw new Error(`not valid JSON: ${e.message}`);
  }
}

/** Runs `fn`, then shows its outcome in `line` (and redraws with `again` on success). */
async function attempt(line, fn, done, again) {
  try {
    await fn();
    line.textContent = done;
    line.className = "status good";
    if (again) await again();
  } catch (e) {
    line.textContent = e.message;
    line.className = "status bad";
  }
}

export async function overview(root) {
  const [d, domains, sync, hooks, stats] = await Promise.all([api.get(""), api.get("/domains"), api.get("/sync"), api.get("/webhooks"), api.get("/stats")]);
  const s = d.settings || {};
  clear(root).append(
    h("h2", {}, s.name || d.id),
    h("p", { class: "tagline" }, s.tagline || ""),
    h("dl", { class: "facts" },
      h("dt", {}, "Store"), h("dd", {}, d.id),
      h("dt", {}, "Status"), h("dd", { id: "store-status" }, "serving"),
      h("dt", {}, "Currency · locale"), h("dd", {}, `${s.currency} · ${s.locale}`),
      h("dt", {}, "Products"), h("dd", {}, String(d.productCount)),
      h("dt", {}, "Pages"), h("dd", {}, String((d.pages || []).length)),
      h("dt", {}, "Blog posts"), h("dd", {}, String(d.postCount)),
      h("dt", {}, "Catalog sync"), h("dd", {}, sync.config ? `${sync.config.url}, last success ${when(sync.lastSuccess)}` : "not configured"),
      h("dt", {}, "Webhooks"), h("dd", {}, hooks.secretConfigured ? `secret set${hooks.shopifyDomain ? `, Shopify ${hooks.shopifyDomain}` : ""}` : "no secret"),
    ),
    todaySection(stats),
    h("h3", {}, "Hosts"),
    h("ul", { id: "hosts" },
      h("li", {}, `${domains.default} (default)`),
      domains.domains.map((x) => h("li", {}, `${x.host} — ${x.status}`)),
    ),
  );
}

export async function pages(root, open) {
  const data = await api.get("/pages");
  const line = h("p", { class: "status" });
  const slug = h("input", { id: "new-slug", placeholder: "slug, e.g. summer-sale", required: true });
  const title = h("input", { id: "new-title", placeholder: "Title", required: true });
  const redraw = () => pages(root, open);
  clear(root).append(
    h("h2", {}, "Pages"),
    line,
    h("table", { class: "list", id: "pages" },
      h("thead", {}, h("tr", {}, h("th", {}, "Page"), h("th", {}, "Title"), h("th", {}, "Live version"), h("th", {}, ""))),
      h("tbody", {}, data.pages.map((p) =>
        h("tr", { dataset: { slug: p.slug } },
          h("td", {}, h("a", { href: `#/pages/${encodeURIComponent(p.slug)}` }, p.slug)),
          h("td", {}, p.title),
          h("td", {}, p.publishedVersion == null ? "unpublished" : `v${p.publishedVersion}`),
          h("td", {}, h("button", { type: "button", class: "delete", onclick: () => {
            if (confirm(`Delete page ${p.slug}?`)) attempt(line, () => api.del(`/pages/${encodeURIComponent(p.slug)}`), `Deleted ${p.slug}`, redraw);
          } }, "Delete")),
        ))),
    ),
    h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      attempt(line, () => api.put(`/pages/${encodeURIComponent(slug.value)}`, { title: title.value, description: "", blocks: [] }), "Page added", () => open(slug.value));
    } }, slug, title, h("button", { type: "submit" }, "Add page")),
  );
}

export async function theme(root) {
  const data = await api.get("/theme");
  const t = data.theme;
  const line = h("p", { class: "status" });
  const inputs = Object.entries(t.tokens || {}).map(([k, v]) => [k, h("input", { id: `token-${k}`, value: v })]);
  const template = h("input", { id: "template", value: t.template || "" });
  const regions = jsonArea("regions", t.regions || {}, 6);
  clear(root).append(
    h("h2", {}, "Theme"),
    line,
    h("form", { class: "grid-form", onsubmit: (e) => {
      e.preventDefault();
      attempt(line, () => api.put("/theme", { ...t, template: template.value, tokens: Object.fromEntries(inputs.map(([k, i]) => [k, i.value])), regions: parse(regions) }), "Theme saved", () => theme(root));
    } },
      h("label", { for: "template" }, "Template"), template,
      inputs.map(([k, i]) => [h("label", { for: i.id }, k), i]),
      h("label", { for: "regions" }, "Per-region tokens"), regions,
      h("button", { type: "submit" }, "Save theme"),
    ),
  );
}

export async function posts(root) {
  const data = await api.get("/posts");
  const line = h("p", { class: "status" });
  const slug = h("input", { id: "post-slug", placeholder: "slug" });
  const redraw = () => posts(root);
  const editorFor = (p) => {
    const { slug: s, ...rest } = p;
    const area = jsonArea(`post-${s}`, rest, 8);
    return h("details", { dataset: { slug: s } },
      h("summary", {}, `${p.title || s} · ${s}`),
      area,
      h("button", { type: "button", onclick: () => attempt(line, () => api.put(`/posts/${encodeURIComponent(s)}`, parse(area)), `Saved ${s}`, redraw) }, "Save"),
      h("button", { type: "button", class: "delete", onclick: () => attempt(line, () => api.del(`/posts/${encodeURIComponent(s)}`), `Deleted ${s}`, redraw) }, "Delete"),
    );
  };
  const fresh = jsonArea("new-post", { title: "", author: "", body: "" }, 6);
  clear(root).append(
    h("h2", {}, "Blog posts"),
    line,
    ...data.posts.map(editorFor),
    h("h3", {}, "New post"),
    slug,
    fresh,
    h("button", { type: "button", onclick: () => attempt(line, () => api.put(`/posts/${encodeURIComponent(slug.value)}`, parse(fresh)), "Post added", redraw) }, "Add post"),
  );
}

export async function products(root) {
  const [data, sync, hooks] = await Promise.all([api.get("/products"), api.get("/sync"), api.get("/webhooks")]);
  // A catalog fed by a sync or by webhooks is the feed's: edits here would be overwritten.
  const fed = Boolean(sync.config || hooks.secretConfigured || hooks.shopifyDomain);
  const line = h("p", { class: "status" });
  const redraw = () => products(root);
  const price = (p) => (p.priceMinor != null ? (p.priceMinor / 100).toFixed(2) : p.price ?? "");
  clear(root).append(
    h("h2", {}, "Products"),
    fed ? h("p", { class: "note", id: "feed-note" }, "This catalog comes from a feed (sync or webhooks): it is read-only here.") : "",
    line,
    h("table", { class: "list", id: "products" },
      h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", {}, "Price"), h("th", {}, "Stock"), h("th", {}, ""))),
      h("tbody", {}, data.products.map((p) => {
        const area = fed ? null : jsonArea(`product-${p.id}`, p, 8);
        return h("tr", { dataset: { id: p.id } },
          h("td", {}, p.title),
          h("td", {}, String(price(p))),
          h("td", {}, String(p.stock ?? "")),
          h("td", {}, fed ? "" : h("details", {},
            h("summary", {}, "Edit"),
            area,
            h("button", { type: "button", onclick: () => attempt(line, () => api.put(`/products/${encodeURIComponent(p.id)}`, parse(area)), `Saved ${p.id}`, redraw) }, "Save"),
            h("button", { type: "button", class: "delete", onclick: () => attempt(line, () => api.del(`/products/${encodeURIComponent(p.id)}`), `Deleted ${p.id}`, redraw) }, "Delete"),
          )),
        );
      })),
    ),
  );
}

export async function feeds(root) {
  const [hooks, sync, backend] = await Promise.all([api.get("/webhooks"), api.get("/sync"), api.get("/backend")]);
  const line = h("p", { class: "status" });
  const redraw = () => feeds(root);
  const secret = h("input", { id: "webhook-secret", type: "password", placeholder: hooks.secretConfigured ? "(set; enter a new one to replace it)" : "shared secret" });
  const domain = h("input", { id: "shopify-domain", value: hooks.shopifyDomain || "", placeholder: "shop.myshopify.com" });
  const url = h("input", { id: "sync-url", value: (sync.config && sync.config.url) || "", placeholder: "https://…/products.json" });
  const interval = h("input", { id: "sync-interval", type: "number", min: 10, value: (sync.config && sync.config.intervalSecs) || 300 });
  const orders = h("input", { id: "orders-url", value: backend.ordersUrl || "", placeholder: "https://…/orders" });
  clear(root).append(
    h("h2", {}, "Webhooks and sync"),
    line,
    h("section", {},
      h("h3", {}, "Webhooks"),
      h("p", { id: "webhook-status" }, hooks.secretConfigured ? "A signing secret is set." : "No signing secret yet."),
      h("div", { class: "grid-form" }, h("label", { for: "webhook-secret" }, "Secret"), secret, h("label", { for: "shopify-domain" }, "Shopify domain"), domain),
      h("button", { type: "button", onclick: () => attempt(line, () => api.put("/webhooks", { secret: secret.value, shopifyDomain: domain.value || null }), "Webhook settings saved", redraw) }, "Save webhooks"),
    ),
    h("section", {},
      h("h3", {}, "Catalog sync"),
      h("dl", { class: "facts", id: "sync-status" },
        h("dt", {}, "Last success"), h("dd", {}, when(sync.lastSuccess)),
        h("dt", {}, "Last error"), h("dd", {}, sync.lastError ? `${sync.lastError} (${when(sync.lastErrorAt)})` : "none"),
        h("dt", {}, "Consecutive failures"), h("dd", {}, String(sync.consecutiveFailures ?? 0)),
        h("dt", {}, "Circuit"), h("dd", {}, String(sync.circuit ?? "")),
        h("dt", {}, "Products synced"), h("dd", {}, String(sync.productsSynced ?? 0)),
      ),
      h("div", { class: "grid-form" }, h("label", { for: "sync-url" }, "Feed URL"), url, h("label", { for: "sync-interval" }, "Every (s)"), interval),
      h("button", { type: "button", onclick: () => attempt(line, () => api.put("/sync", { url: url.value, intervalSecs: Number(interval.value) }), "Sync settings saved", redraw) }, "Save sync"),
      h("button", { type: "button", disabled: !sync.config, onclick: () => attempt(line, () => api.post("/sync/run"), "Sync started", redraw) }, "Sync now"),
    ),
    h("section", {},
      h("h3", {}, "Orders backend"),
      h("div", { class: "grid-form" }, h("label", { for: "orders-url" }, "Orders URL"), orders),
      h("button", { type: "button", onclick: () => attempt(line, () => api.put("/backend", { ordersUrl: orders.value }), "Backend saved", redraw) }, "Save backend"),
    ),
  );
}

export { errorBox };
