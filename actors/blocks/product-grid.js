// Product grid. Settings: product-grid.settings.json.
function productGrid(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const limit = Math.max(0, Math.min(100, Number.isInteger(config.limit) ? config.limit : 12));
  const columns = Math.max(1, Math.min(6, Number.isInteger(config.columns) ? config.columns : 3));
  const locale = ctx.locale || storefront.locale;
  const tag = typeof config.tag === 'string' && config.tag ? config.tag : null;
  const shown = [];
  // Chosen products, in the merchant's order (ids no longer in the catalog are skipped).
  const chosen = Array.isArray(config.productIds) ? config.productIds.filter((id) => typeof id === 'string') : [];
  if (chosen.length) {
    const byId = new Map(products.map((p) => [String(p.id), p]));
    for (const id of chosen) if (shown.length < limit && byId.has(id)) shown.push(byId.get(id));
  }
  for (let i = 0; !chosen.length && i < products.length && shown.length < limit; i++) {
    const p = products[i];
    if (!tag || (Array.isArray(p.tags) && p.tags.includes(tag))) shown.push(p);
  }
  const title = config.title ? '<h2 class="v-section__title">' + h.escapeHtml(config.title) + '</h2>' : '';
  const body = shown.length
    ? '<div class="v-product-grid" style="--v-columns:' + columns + '">' + h.productCards(shown, locale) + '</div>'
    : '<p class="v-empty">No products yet.</p>';
  return '<section class="v-section v-product-grid-section">' + title + body + '</section>';
}
