// Mini cart. config: {title}
function cartSummary(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const cart = ctx.cart || {};
  const items = Array.isArray(cart.items) ? cart.items : [];
  const currency = cart.currency || storefront.currency;
  const locale = ctx.locale || storefront.locale;
  const title = '<h2 class="v-section__title">' + h.escapeHtml(config.title || 'Your cart') + '</h2>';
  if (!items.length) {
    return '<aside class="v-cart-summary v-cart-summary--empty">' + title +
      '<p class="v-empty">Your cart is empty.</p><a class="v-button" href="/products">Start shopping</a></aside>';
  }
  const lines = items.map((item) =>
    '<li class="v-cart-summary__item">' +
    '<span class="v-cart-summary__quantity">' + h.escapeHtml(item.quantity) + ' ×</span> ' +
    '<a href="' + h.escapeHtml('/products/' + encodeURIComponent(String(item.handle))) + '">' + h.escapeHtml(item.title) + '</a> ' +
    '<span class="v-price">' + h.escapeHtml(h.formatPrice(item.lineTotal, currency, locale)) + '</span></li>').join('');
  const count = Number.isFinite(cart.count) ? cart.count : items.length;
  return '<aside class="v-cart-summary">' + title +
    '<p class="v-cart-summary__count">' + h.escapeHtml(count) + (count === 1 ? ' item' : ' items') + '</p>' +
    '<ul class="v-cart-summary__items">' + lines + '</ul>' +
    '<p class="v-cart-summary__subtotal">Subtotal <span class="v-price">' + h.escapeHtml(h.formatPrice(cart.subtotal, currency, locale)) + '</span></p>' +
    '<a class="v-button v-button--primary" href="/cart">View cart</a></aside>';
}
