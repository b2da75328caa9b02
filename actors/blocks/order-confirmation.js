// The order page after checkout. ctx.order = {id, createdAt, currency, subtotal, lines:
// [{title, quantity, unitPrice, lineTotal}], delivery: {status}}. config: {title}
function orderConfirmation(storefront, products, helpers, ctx) {
  const h = helpers;
  const order = ctx.order || {};
  const config = ctx.config || {};
  const locale = ctx.locale || storefront.locale;
  const currency = order.currency || storefront.currency;
  const lines = Array.isArray(order.lines) ? order.lines : [];
  const status = order.delivery && order.delivery.status === 'delivered'
    ? 'Confirmed by the shop.'
    : 'Received; we are passing it to the shop.';
  const rows = lines.map((l) =>
    '<tr><td>' + h.escapeHtml(l.title) + '</td><td>' + h.escapeHtml(l.quantity) + '</td>' +
    '<td>' + h.escapeHtml(h.formatPrice(l.lineTotal, currency, locale)) + '</td></tr>').join('');
  return '<section class="v-section v-order">' +
    '<h1 class="v-section__title">' + h.escapeHtml(config.title || 'Thank you for your order') + '</h1>' +
    '<p class="v-order__id">Order <strong>' + h.escapeHtml(order.id) + '</strong> · ' + h.escapeHtml(status) + '</p>' +
    '<table class="v-cart__table"><thead><tr><th>Product</th><th>Quantity</th><th>Total</th></tr></thead><tbody>' + rows + '</tbody></table>' +
    '<p class="v-cart__subtotal">Total: <strong class="v-price">' + h.escapeHtml(h.formatPrice(order.subtotal, currency, locale)) + '</strong></p>' +
    '<a class="v-button" href="/">Continue shopping</a></section>';
}
