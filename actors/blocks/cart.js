// The cart page: every line with a quantity form and a remove button that work without
// JavaScript (HTML forms cannot send PATCH/DELETE, so they POST to /cart/items/{id}).
// config: {title}
function cartPage(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const cart = ctx.cart || {};
  const items = Array.isArray(cart.items) ? cart.items : [];
  const currency = cart.currency || storefront.currency;
  const locale = ctx.locale || storefront.locale;
  const title = '<h1 class="v-section__title">' + h.escapeHtml(config.title || 'Your cart') + '</h1>';
  if (!items.length) {
    return '<section class="v-section v-cart v-cart--empty">' + title +
      '<p class="v-empty">Your cart is empty.</p><a class="v-button v-button--primary" href="/">Continue shopping</a></section>';
  }
  const rows = items.map((item) => {
    const id = String(item.productId);
    const action = '/cart/items/' + encodeURIComponent(id);
    const name = item.removed ? 'No longer available' : item.title;
    const link = item.removed
      ? h.escapeHtml(name)
      : '<a href="' + h.escapeHtml('/products/' + encodeURIComponent(String(item.handle))) + '">' + h.escapeHtml(name) + '</a>';
    const warning = item.available === false && !item.removed
      ? '<p class="v-cart__warning">Only ' + h.escapeHtml(item.stock) + ' left in stock</p>' : '';
    return '<tr class="v-cart__line">' +
      '<td class="v-cart__product">' + link + warning + '</td>' +
      '<td class="v-cart__price">' + (item.removed ? '' : h.escapeHtml(h.formatPrice(item.price, currency, locale))) + '</td>' +
      '<td class="v-cart__quantity"><form method="post" action="' + h.escapeHtml(action) + '">' +
      '<input type="number" name="quantity" min="0" max="99" value="' + h.escapeHtml(item.quantity) + '" aria-label="Quantity of ' + h.escapeHtml(name) + '">' +
      '<button type="submit" class="v-button">Update</button></form></td>' +
      '<td class="v-cart__total">' + (item.removed ? '' : h.escapeHtml(h.formatPrice(item.lineTotal, currency, locale))) + '</td>' +
      '<td class="v-cart__remove"><form method="post" action="' + h.escapeHtml(action) + '">' +
      '<input type="hidden" name="_method" value="DELETE"><button type="submit" class="v-button">Remove</button></form></td>' +
      '</tr>';
  }).join('');
  return '<section class="v-section v-cart">' + title +
    '<table class="v-cart__table"><thead><tr><th>Product</th><th>Price</th><th>Quantity</th><th>Total</th><th></th></tr></thead>' +
    '<tbody>' + rows + '</tbody></table>' +
    '<p class="v-cart__subtotal">Subtotal (' + h.escapeHtml(cart.count) + (cart.count === 1 ? ' item' : ' items') + '): ' +
    '<strong class="v-price">' + h.escapeHtml(h.formatPrice(cart.subtotal, currency, locale)) + '</strong></p>' +
    // One idempotency key per cart state: a double click places one order.
    '<form class="v-cart__checkout" method="post" action="/checkout">' +
    (cart.checkoutKey ? '<input type="hidden" name="idempotency_key" value="' + h.escapeHtml(cart.checkoutKey) + '">' : '') +
    '<button type="submit" class="v-button v-button--primary">Place order</button></form>' +
    '<a class="v-button" href="/">Continue shopping</a></section>';
}
