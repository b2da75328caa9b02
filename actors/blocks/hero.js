// Hero banner. Settings: hero.settings.json.
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
  // The colour is checked against its schema when saved; checked again here, it is only ever
  // a #rgb or #rrggbb value inside the style attribute.
  const background = typeof config.background === 'string' && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(config.background)
    ? ' style="background:' + config.background + '"'
    : '';
  const align = config.align === 'left' ? ' v-hero--left' : '';
  const cta = config.showCta === false
    ? ''
    : '<a class="v-button v-button--primary" href="' + h.escapeHtml(ctaHref) + '">' + h.escapeHtml(ctaText) + '</a>';
  return '<section class="v-hero' + (image ? ' v-hero--image' : '') + align + '"' + background + '>' + image +
    '<div class="v-hero__content">' +
    '<h1 class="v-hero__heading">' + h.escapeHtml(heading) + '</h1>' +
    (subheading ? '<p class="v-hero__subheading">' + h.escapeHtml(subheading) + '</p>' : '') +
    cta +
    '</div></section>';
}
