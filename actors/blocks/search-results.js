// Search results in rank order. ctx.search = {query, productIds}. config: {title}
function searchResults(storefront, products, helpers, ctx) {
  const h = helpers;
  const search = ctx.search || {};
  const query = typeof search.query === 'string' ? search.query : '';
  const ids = Array.isArray(search.productIds) ? search.productIds.map(String) : [];
  const byId = new Map(products.map((p) => [String(p.id), p]));
  const found = ids.map((id) => byId.get(id)).filter((p) => p !== undefined);
  const locale = ctx.locale || storefront.locale;
  const form = '<form class="v-search-form" action="/search" method="get">' +
    '<input type="search" name="q" value="' + h.escapeHtml(query) + '" aria-label="Search products">' +
    '<button type="submit" class="v-button">Search</button></form>';
  const heading = '<h1 class="v-section__title">' +
    (query ? 'Results for “' + h.escapeHtml(query) + '”' : 'Search') + '</h1>';
  const body = found.length
    ? '<div class="v-product-grid" style="--v-columns:4">' + h.productCards(found, locale) + '</div>'
    : (query ? '<p class="v-empty">Nothing matches “' + h.escapeHtml(query) + '”.</p>' : '');
  return '<section class="v-section v-search-results">' + heading + form + body + '</section>';
}
