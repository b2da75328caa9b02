// A blog post page; shows ctx.post. config: {}
function blogPost(storefront, products, helpers, ctx) {
  const h = helpers;
  const post = ctx.post;
  if (!post) return '<article class="v-blog-post v-empty"><p>This post is not available.</p><a href="/blog">All posts</a></article>';
  const date = h.formatDate(post.publishedAt, 'long', ctx.locale || storefront.locale);
  return '<article class="v-blog-post">' +
    '<h1 class="v-blog-post__title">' + h.escapeHtml(post.title) + '</h1>' +
    (date ? '<time class="v-blog-post__date" datetime="' + h.escapeHtml(h.formatDate(post.publishedAt, 'iso')) + '">' + h.escapeHtml(date) + '</time>' : '') +
    (post.image ? '<img class="v-blog-post__image" src="' + h.escapeHtml(h.safeUrl(post.image)) + '" alt="' + h.escapeHtml(post.title) + '">' : '') +
    '<div class="v-blog-post__body">' + h.paragraphs(post.body) + '</div>' +
    '</article>';
}
