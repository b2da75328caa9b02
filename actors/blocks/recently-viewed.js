// Recently viewed products (ctx.recentlyViewed, resolved to products). config: {title, limit (default 4)}
function recentlyViewed(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const limit = Math.max(0, Math.min(24, Number.isInteger(config.limit) ? config.limit : 4));
  const current = ctx.product ? ctx.product.id : undefined;
  const viewed = (ctx.recentlyViewed || []).filter((p) => p.id !== current).slice(0, limit);
  if (!viewed.length) return '';
  const locale = ctx.locale || storefront.locale;
  return '<section class="v-section v-recently-viewed">' +
    '<h2 class="v-section__title">' + h.escapeHtml(config.title || 'Recently viewed') + '</h2>' +
    '<div class="v-product-grid" style="--v-columns:4">' + h.productCards(viewed, locale) + '</div></section>';
}
