// Hero banner. config: {heading, subheading, ctaText, ctaHref, image}
function hero(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const heading = config.heading || storefront.name || '';
  const subheading = config.subheading !== undefined ? config.subheading : storefront.tagline;
  const ctaText = config.ctaText || 'Shop now';
  const ctaHref = h.safeUrl(config.ctaHref || '/products');
  const image = config.image
    ? '<img class="v-hero__image" src="' + h.escapeHtml(h.safeUrl(config.image)) + '" alt="">'
    : '';
  return '<section class="v-hero' + (image ? ' v-hero--image' : '') + '">' + image +
    '<div class="v-hero__content">' +
    '<h1 class="v-hero__heading">' + h.escapeHtml(heading) + '</h1>' +
    (subheading ? '<p class="v-hero__subheading">' + h.escapeHtml(subheading) + '</p>' : '') +
    '<a class="v-button v-button--primary" href="' + h.escapeHtml(ctaHref) + '">' + h.escapeHtml(ctaText) + '</a>' +
    '</div></section>';
}
