// Text section. config: {heading, body (plain text; blank lines separate paragraphs)}
function text(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  return '<section class="v-section v-text">' +
    (config.heading ? '<h2 class="v-section__title">' + h.escapeHtml(config.heading) + '</h2>' : '') +
    '<div class="v-text__body">' + h.paragraphs(config.body) + '</div></section>';
}
