// Image gallery. config: {title, images: [{src, alt}]}; without images, shows product images (max 8).
function gallery(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const configured = Array.isArray(config.images)
    ? config.images.filter((img) => img && typeof img.src === 'string' && img.src)
    : [];
  const images = configured.length
    ? configured
    : products.filter((p) => p.image).slice(0, 8).map((p) => ({ src: p.image, alt: p.name || p.title, href: h.productUrl(p) }));
  if (!images.length) return '';
  const items = images.map((img) => {
    const tag = '<img class="v-gallery__image" src="' + h.escapeHtml(h.safeUrl(img.src)) + '" alt="' + h.escapeHtml(img.alt) + '" loading="lazy">';
    return '<figure class="v-gallery__item">' +
      (img.href ? '<a href="' + h.escapeHtml(img.href) + '">' + tag + '</a>' : tag) + '</figure>';
  }).join('');
  return '<section class="v-section v-gallery">' +
    (config.title ? '<h2 class="v-section__title">' + h.escapeHtml(config.title) + '</h2>' : '') +
    '<div class="v-gallery__grid">' + items + '</div></section>';
}
