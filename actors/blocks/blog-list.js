// Blog post list. config: {title, limit (default 10)}
function blogList(storefront, products, helpers, ctx) {
  const h = helpers;
  const config = ctx.config || {};
  const limit = Math.max(0, Math.min(100, Number.isInteger(config.limit) ? config.limit : 10));
  const posts = (Array.isArray(storefront.posts) ? storefront.posts : []).slice(0, limit);
  const locale = ctx.locale || storefront.locale;
  const title = config.title ? '<h2 class="v-section__title">' + h.escapeHtml(config.title) + '</h2>' : '';
  if (!posts.length) return '<section class="v-section v-blog-list">' + title + '<p class="v-empty">No posts yet.</p></section>';
  const items = posts.map((post) => {
    const href = '/blog/' + encodeURIComponent(String(post.slug));
    const date = h.formatDate(post.publishedAt, 'long', locale);
    return '<article class="v-blog-card">' +
      '<h3 class="v-blog-card__title"><a href="' + h.escapeHtml(href) + '">' + h.escapeHtml(post.title) + '</a></h3>' +
      (date ? '<time class="v-blog-card__date" datetime="' + h.escapeHtml(h.formatDate(post.publishedAt, 'iso')) + '">' + h.escapeHtml(date) + '</time>' : '') +
      (post.excerpt ? '<p class="v-blog-card__excerpt">' + h.escapeHtml(post.excerpt) + '</p>' : '') +
      '</article>';
  }).join('');
  return '<section class="v-section v-blog-list">' + title + '<div class="v-blog-list__items">' + items + '</div></section>';
}
