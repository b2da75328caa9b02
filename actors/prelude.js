// Vitrina block prelude: the helpers every block receives, and the sandbox's global clean-up.
// Runs once when the startup snapshot is built; its state is frozen into the snapshot.
(function () {
  'use strict';

  // WebAssembly, SharedArrayBuffer and Atomics are removed by the engine after each context
  // is created (V8 re-installs some of them while deserialising a snapshot context).

  const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

  const NEEDS_ESCAPE = /[&<>"']/;

  /** HTML-escapes text for element content and quoted attribute values. null/undefined → ''. */
  function escapeHtml(value) {
    if (value === null || value === undefined) return '';
    const text = typeof value === 'string' ? value : String(value);
    // Most text (titles, prices, URLs) has nothing to escape: skip the replace and its callback.
    if (!NEEDS_ESCAPE.test(text)) return text;
    return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  /** Keeps `value` under `key` in `memo`, which is emptied when it reaches `max` entries. */
  function remember(memo, key, value, max) {
    if (memo.size >= max) memo.clear();
    memo.set(key, value);
    return value;
  }

  const numberFormats = new Map();
  const dateFormats = new Map();

  /** Formats an amount in MAJOR units (19.99) as currency, e.g. formatPrice(19.99, 'USD') → "$19.99". */
  function formatPrice(amount, currency, locale) {
    const value = typeof amount === 'number' ? amount : Number(amount);
    if (!Number.isFinite(value)) return '';
    const code = typeof currency === 'string' && currency ? currency.toUpperCase() : 'USD';
    const loc = typeof locale === 'string' && locale ? locale : 'en-US';
    const key = loc + '|' + code;
    let format = numberFormats.get(key);
    if (format === undefined) {
      try {
        format = { intl: new Intl.NumberFormat(loc, { style: 'currency', currency: code }), memo: new Map() };
      } catch (_) {
        format = null; // unknown locale or currency code
      }
      if (numberFormats.size < 64) numberFormats.set(key, format);
    }
    if (!format) return value.toFixed(2) + ' ' + code;
    // A page formats the same few prices on every render; Intl formatting is the costly part.
    const formatted = format.memo.get(value);
    return formatted !== undefined ? formatted : remember(format.memo, value, format.intl.format(value), 1024);
  }

  // Formatted dates by format, locale and input: blocks format the same few dates (posts,
  // orders) on every render, and parsing plus Intl formatting was a visible share of the W1b
  // profile. Inputs of different types never share a key ('1714521600000' is not a date).
  const formattedDates = new Map();
  // Captured while the snapshot is built: a block may replace these later, never for us.
  const timeOf = Date.prototype.getTime;
  const apply = Reflect.apply;

  /** Formats a date ('2024-05-01', epoch ms or Date). format: 'long' (default), 'short' or 'iso'. */
  function formatDate(date, format, locale) {
    const style = format === 'iso' ? 'iso' : format === 'short' ? 'short' : 'long';
    // ISO dates do not depend on the locale: one memo entry whatever the locale.
    const loc = style === 'iso' ? '' : typeof locale === 'string' && locale ? locale : 'en-US';
    let input = date;
    if (date instanceof Date) {
      // The Date's own time value, not whatever its (overridable) getTime returns.
      try {
        input = apply(timeOf, date, []);
      } catch (_) {
        return '';
      }
    }
    const memoKey = typeof input === 'number' ? 'n|' + style + '|' + loc + '|' + input
      : typeof input === 'string' ? 's|' + style + '|' + loc + '|' + input : null;
    if (memoKey !== null) {
      const known = formattedDates.get(memoKey);
      if (known !== undefined) return known;
    }
    const formatted = formatDateUncached(input, style, loc);
    return memoKey !== null ? remember(formattedDates, memoKey, formatted, 1024) : formatted;
  }

  function formatDateUncached(input, style, loc) {
    const d = new Date(input);
    if (input === null || input === undefined || Number.isNaN(apply(timeOf, d, []))) return '';
    if (style === 'iso') return d.toISOString().slice(0, 10);
    // Formatters are costly to build (the W1b profile showed it): keep one per locale and style.
    const key = loc + '|' + style;
    let formatter = dateFormats.get(key);
    if (formatter === undefined) {
      try {
        formatter = new Intl.DateTimeFormat(loc, { year: 'numeric', month: style, day: 'numeric', timeZone: 'UTC' });
      } catch (_) {
        formatter = null; // unknown locale
      }
      if (dateFormats.size < 64) dateFormats.set(key, formatter);
    }
    return formatter ? formatter.format(d) : d.toISOString().slice(0, 10);
  }

  /** "Summer Sale 2024!" → "summer-sale-2024". */
  function slugify(text) {
    return String(text === null || text === undefined ? '' : text)
      .normalize('NFKD')
      .replace(/[\u0300-\u036f]/g, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
  }

  // Ids are deterministic per block (the dispatcher resets the counter before each block) so
  // that the same inputs always produce the same HTML, which keeps HTML caching effective.
  let idScope = 'v';
  let idCounter = 0;
  // Id scopes by block id.
  const idScopes = new Map();

  /** Unique-within-the-page element id, e.g. generateId('tab') → "tab-hero-1". */
  function generateId(prefix) {
    idCounter += 1;
    return slugify(prefix || 'v') + '-' + idScope + '-' + idCounter;
  }

  /** Returns the URL if it is relative, http(s) or mailto; '#' otherwise (no javascript: URLs). */
  function safeUrl(url) {
    if (typeof url !== 'string') return '#';
    const trimmed = url.trim();
    if (trimmed === '') return '#';
    if (/^(https?:|mailto:)/i.test(trimmed)) return trimmed;
    // Images inlined as base64 data URIs cannot run script in an <img>, so they are allowed.
    if (/^data:image\/(png|jpe?g|gif|webp|avif|svg\+xml);base64,[A-Za-z0-9+/=]+$/i.test(trimmed)) return trimmed;
    if (/^[a-z][a-z0-9+.-]*:/i.test(trimmed) || trimmed.startsWith('//') || /[\u0000-\u001f]/.test(trimmed)) return '#';
    return trimmed;
  }

  function isSoldOut(product) {
    return typeof product.stock === 'number' && product.stock <= 0;
  }

  /** The no-JavaScript add-to-cart form, or a "Sold out" note. */
  function addToCartForm(product) {
    if (isSoldOut(product)) return '<p class="v-sold-out">Sold out</p>';
    return '<form class="v-add-to-cart" method="post" action="/cart/items">' +
      '<input type="hidden" name="product_id" value="' + escapeHtml(product.id) + '">' +
      '<input class="v-quantity" type="number" name="quantity" value="1" min="1">' +
      '<button class="v-button" type="submit">Add to cart</button>' +
      '</form>';
  }

  function productUrl(product) {
    return '/products/' + encodeURIComponent(String(product.handle === undefined ? '' : product.handle));
  }

  /** Price with the compare-at price struck through when the product is on sale. */
  function priceHtml(product, locale) {
    let html = '<span class="v-price">' + escapeHtml(formatPrice(product.price, product.currency, locale)) + '</span>';
    if (typeof product.compareAtPrice === 'number' && product.compareAtPrice > product.price) {
      html += ' <s class="v-price v-price--compare">' + escapeHtml(formatPrice(product.compareAtPrice, product.currency, locale)) + '</s>';
    }
    return html;
  }

  // Cards of the store's own products by product and locale. A card is a pure function of its
  // product's fields, and the products the engine hands to blocks are parsed from JSON and
  // deep-frozen (dispatch.js registers them here), so a card cannot go stale; a new store
  // version brings new product objects and the old cards go with the old ones. A page of
  // cards was most of a render's JavaScript (W1b profile); other objects (a block's own) are
  // rendered every time. Each store product has an entry from the start: {locale, card} of the
  // last card asked for (pages mostly use one locale) and `others`, every locale's card: one
  // WeakMap lookup per card on the way that matters.
  let cards = new WeakMap();

  /** The product card used by the product grid and recently-viewed blocks. */
  function productCard(product, locale) {
    const memo = product !== null && typeof product === 'object' ? cards.get(product) : undefined;
    if (memo === undefined) return productCardUncached(product, locale);
    const key = typeof locale === 'string' ? locale : '';
    if (memo.locale === key) return memo.card;
    if (memo.others === null) memo.others = new Map();
    let card = memo.others.get(key);
    if (card === undefined) card = remember(memo.others, key, flatten(productCardUncached(product, locale)), 8);
    memo.locale = key;
    memo.card = card;
    return card;
  }

  /**
   * The cards of `list` (an array of products) one after another. Appending builds a tree of
   * the (memoised) cards that the engine copies out piece by piece, where `map(...).join('')`
   * copied every card into a new string first.
   */
  function productCards(list, locale) {
    let html = '';
    if (!Array.isArray(list)) return html;
    for (let i = 0; i < list.length; i++) html += productCard(list[i], locale);
    return html;
  }

  /**
   * A string built with `+` is a tree of pieces that V8 walks again each time the string is
   * copied (joined into a grid, handed to the engine). Converting it to a number makes V8
   * flatten it into one buffer in place, so a memoised card is copied with a single memcpy.
   */
  function flatten(text) {
    Number(text);
    return text;
  }

  function productCardUncached(product, locale) {
    const name = product.name || product.title || '';
    const image = product.image
      ? '<img class="v-product-card__image" src="' + escapeHtml(safeUrl(product.image)) + '" alt="' + escapeHtml(name) + '" loading="lazy">'
      : '';
    return '<article class="v-product-card">' +
      '<a class="v-product-card__link" href="' + escapeHtml(productUrl(product)) + '">' + image +
      '<h3 class="v-product-card__title">' + escapeHtml(name) + '</h3></a>' +
      '<p class="v-product-card__price">' + priceHtml(product, locale) + '</p>' +
      addToCartForm(product) +
      '</article>';
  }

  /** Plain text with blank-line-separated paragraphs → escaped <p> elements. */
  function paragraphs(text) {
    if (text === null || text === undefined) return '';
    return String(text)
      .split(/\r?\n\s*\r?\n/)
      .map((p) => p.trim())
      .filter((p) => p !== '')
      .map((p) => '<p>' + escapeHtml(p).replace(/\r?\n/g, '<br>') + '</p>')
      .join('');
  }

  const helpers = Object.freeze({
    escapeHtml, formatPrice, formatDate, slugify, generateId, safeUrl,
    addToCartForm, productCard, productCards, productUrl, priceHtml, paragraphs, isSoldOut,
  });

  // Internal hand-off to dispatch.js; the engine deletes this global before any block runs.
  globalThis.__vitrina = {
    helpers,
    blocks: Object.create(null),
    // Called by the engine when it creates an isolate, outside any block's CPU budget: the
    // first Intl formatter of an isolate loads locale data, which must not count against a block.
    warmUp() {
      formatPrice(1, 'USD', 'en-US');
      formatDate(0, 'long', 'en-US');
    },
    /** Registers the store's products (parsed from JSON, deep-frozen) for card memoisation. */
    setStoreProducts(products) {
      cards = new WeakMap();
      for (let i = 0; i < products.length; i++) {
        if (products[i] !== null && typeof products[i] === 'object') cards.set(products[i], { locale: null, card: '', others: null });
      }
    },
    resetIds(scope) {
      // Once per block per render: slugify's normalize and three regex replaces were 3.6 % of
      // the node's CPU under W1b, for the same few block ids again and again.
      let slug = idScopes.get(scope);
      if (slug === undefined) slug = remember(idScopes, scope, slugify(scope) || 'v', 256);
      idScope = slug;
      idCounter = 0;
    },
  };
})();
