// Product detail for /products/{handle}; shows ctx.product. config: {}
function productDetail(storefront, products, helpers, ctx) {
  const h = helpers;
  const product = ctx.product;
  if (!product) {
    return '<section class="v-product-detail v-empty"><p>This product is not available.</p>' +
      '<a class="v-button" href="/products">Browse products</a></section>';
  }
  const name = product.name || product.title || '';
  const images = Array.isArray(product.images) && product.images.length ? product.images : (product.image ? [product.image] : []);
  const gallery = images.length
    ? '<div class="v-product-detail__media">' + images.map((src, i) =>
        '<img class="v-product-detail__image" src="' + h.escapeHtml(h.safeUrl(src)) + '" alt="' +
        h.escapeHtml(i === 0 ? name : name + ' (' + (i + 1) + ')') + '"' + (i === 0 ? '' : ' loading="lazy"') + '>').join('') + '</div>'
    : '';
  return '<section class="v-product-detail" data-product-id="' + h.escapeHtml(product.id) + '">' + gallery +
    '<div class="v-product-detail__info">' +
    '<h1 class="v-product-detail__title">' + h.escapeHtml(name) + '</h1>' +
    '<p class="v-product-detail__price">' + h.priceHtml(product, ctx.locale || storefront.locale) + '</p>' +
    '<div class="v-product-detail__description">' + h.paragraphs(product.description) + '</div>' +
    h.addToCartForm(product) +
    '</div></section>';
}
