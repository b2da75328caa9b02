// Vitrina block prelude: the helpers every block receives, and the sandbox's global clean-up.
// Runs once when the startup snapshot is built; its state is frozen into the snapshot.
(function () {
  'use strict';

  // WebAssembly, SharedArrayBuffer and Atomics are removed by the engine after each context
  // is created (V8 re-installs some of them while deserialising a snapshot context).

  // Primordials: every built-in the helpers and the dispatcher call, captured here, while the
  // snapshot is built and before any block has run. A method is called through its captured
  // function (`StringPrototypeSlice(text, 0, 1)`, as Node's and Deno's primordials do), never
  // looked up on a prototype at call time, so nothing a block does to a built-in changes what a
  // helper does, escaping included. (dispatch.js also freezes the built-ins once it has run.)
  const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
  const ReflectGetOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
  const uncurryGetter = (object, name) => uncurryThis(ReflectGetOwnPropertyDescriptor(object, name).get);
  const primordials = {
    __proto__: null,
    ArrayIsArray: Array.isArray,
    ArrayPrototypePush: uncurryThis(Array.prototype.push),
    DateCtor: Date,
    DatePrototypeGetTime: uncurryThis(Date.prototype.getTime),
    DatePrototypeToISOString: uncurryThis(Date.prototype.toISOString),
    DateTimeFormat: Intl.DateTimeFormat,
    DateTimeFormatPrototypeFormat: uncurryGetter(Intl.DateTimeFormat.prototype, 'format'),
    EncodeURIComponent: encodeURIComponent,
    JSONParse: JSON.parse,
    JSONStringify: JSON.stringify,
    MapCtor: Map,
    MapPrototypeClear: uncurryThis(Map.prototype.clear),
    MapPrototypeGet: uncurryThis(Map.prototype.get),
    MapPrototypeGetSize: uncurryGetter(Map.prototype, 'size'),
    MapPrototypeSet: uncurryThis(Map.prototype.set),
    NumberCtor: Number,
    NumberFormat: Intl.NumberFormat,
    NumberFormatPrototypeFormat: uncurryGetter(Intl.NumberFormat.prototype, 'format'),
    NumberIsFinite: Number.isFinite,
    NumberIsNaN: Number.isNaN,
    NumberPrototypeToFixed: uncurryThis(Number.prototype.toFixed),
    ObjectAssign: Object.assign,
    ObjectCreate: Object.create,
    ObjectDefineProperty: Object.defineProperty,
    ObjectFreeze: Object.freeze,
    ObjectGetPrototypeOf: Object.getPrototypeOf,
    ObjectIsFrozen: Object.isFrozen,
    ObjectKeys: Object.keys,
    ReflectApply: Reflect.apply,
    ReflectGetOwnPropertyDescriptor,
    ReflectOwnKeys: Reflect.ownKeys,
    RegExpPrototypeExec: uncurryThis(RegExp.prototype.exec),
    SetCtor: Set,
    SetPrototypeAdd: uncurryThis(Set.prototype.add),
    SetPrototypeHas: uncurryThis(Set.prototype.has),
    StringCtor: String,
    StringPrototypeCharCodeAt: uncurryThis(String.prototype.charCodeAt),
    StringPrototypeNormalize: uncurryThis(String.prototype.normalize),
    StringPrototypeSlice: uncurryThis(String.prototype.slice),
    StringPrototypeStartsWith: uncurryThis(String.prototype.startsWith),
    StringPrototypeToLowerCase: uncurryThis(String.prototype.toLowerCase),
    StringPrototypeToUpperCase: uncurryThis(String.prototype.toUpperCase),
    StringPrototypeTrim: uncurryThis(String.prototype.trim),
    WeakMapCtor: WeakMap,
    WeakMapPrototypeGet: uncurryThis(WeakMap.prototype.get),
    WeakMapPrototypeSet: uncurryThis(WeakMap.prototype.set),
  };
  Object.freeze(primordials);
  const {
    ArrayIsArray, DateCtor, DatePrototypeGetTime, DatePrototypeToISOString, DateTimeFormat, DateTimeFormatPrototypeFormat,
    EncodeURIComponent, MapCtor, MapPrototypeClear, MapPrototypeGet, MapPrototypeGetSize, MapPrototypeSet, NumberCtor,
    NumberFormat, NumberFormatPrototypeFormat, NumberIsFinite, NumberIsNaN, NumberPrototypeToFixed, ObjectCreate, ObjectFreeze,
    RegExpPrototypeExec, StringCtor, StringPrototypeCharCodeAt, StringPrototypeNormalize, StringPrototypeSlice,
    StringPrototypeStartsWith, StringPrototypeToLowerCase, StringPrototypeToUpperCase, StringPrototypeTrim, WeakMapCtor,
    WeakMapPrototypeGet, WeakMapPrototypeSet,
  } = primordials;

  /**
   * `text` with every match of `pattern` (a global regex of this file, never handed out)
   * replaced by `replacement`. Only the captured `RegExp.prototype.exec` runs: unlike
   * `String.prototype.replace`, it does not look up `exec`, `flags` or `Symbol.replace` on the
   * (replaceable) prototype. `lastIndex` is the pattern's own property.
   */
  function replaceAll(pattern, text, replacement) {
    pattern.lastIndex = 0;
    let match = RegExpPrototypeExec(pattern, text);
    if (match === null) return text;
    let out = '';
    let last = 0;
    while (match !== null) {
      const found = match[0];
      out += StringPrototypeSlice(text, last, match.index) + (typeof replacement === 'string' ? replacement : replacement[found]);
      last = match.index + found.length;
      if (found.length === 0) pattern.lastIndex += 1;
      match = RegExpPrototypeExec(pattern, text);
    }
    return out + StringPrototypeSlice(text, last);
  }

  const ESCAPES = ObjectFreeze({ __proto__: null, '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' });
  const SPECIAL = /[&<>"']/g;

  /** HTML-escapes text for element content and quoted attribute values. null/undefined → ''. */
  function escapeHtml(value) {
    if (value === null || value === undefined) return '';
    // Most text (titles, prices, URLs) has nothing to escape: one exec that finds nothing.
    return replaceAll(SPECIAL, typeof value === 'string' ? value : StringCtor(value), ESCAPES);
  }

  /** Keeps `value` under `key` in `memo`, which is emptied when it reaches `max` entries. */
  function remember(memo, key, value, max) {
    if (MapPrototypeGetSize(memo) >= max) MapPrototypeClear(memo);
    MapPrototypeSet(memo, key, value);
    return value;
  }

  const numberFormats = new MapCtor();
  const dateFormats = new MapCtor();

  /** Formats an amount in MAJOR units (19.99) as currency, e.g. formatPrice(19.99, 'USD') → "$19.99". */
  function formatPrice(amount, currency, locale) {
    const value = typeof amount === 'number' ? amount : NumberCtor(amount);
    if (!NumberIsFinite(value)) return '';
    const code = typeof currency === 'string' && currency ? StringPrototypeToUpperCase(currency) : 'USD';
    const loc = typeof locale === 'string' && locale ? locale : 'en-US';
    const key = loc + '|' + code;
    let format = MapPrototypeGet(numberFormats, key);
    if (format === undefined) {
      try {
        // Options without a prototype: Intl reads every option it does not find, and must find
        // nothing a block put on Object.prototype.
        const intl = new NumberFormat(loc, { __proto__: null, style: 'currency', currency: code });
        format = { __proto__: null, format: NumberFormatPrototypeFormat(intl), memo: new MapCtor() };
      } catch (_) {
        format = null; // unknown locale or currency code
      }
      if (MapPrototypeGetSize(numberFormats) < 64) MapPrototypeSet(numberFormats, key, format);
    }
    if (!format) return NumberPrototypeToFixed(value, 2) + ' ' + code;
    // A page formats the same few prices on every render; Intl formatting is the costly part.
    const formatted = MapPrototypeGet(format.memo, value);
    return formatted !== undefined ? formatted : remember(format.memo, value, format.format(value), 1024);
  }

  // Formatted dates by format, locale and input: blocks format the same few dates (posts,
  // orders) on every render, and parsing plus Intl formatting was a visible share of the W1b
  // profile. Inputs of different types never share a key ('1714521600000' is not a date).
  const formattedDates = new MapCtor();

  /** Formats a date ('2024-05-01', epoch ms or Date). format: 'long' (default), 'short' or 'iso'. */
  function formatDate(date, format, locale) {
    const style = format === 'iso' ? 'iso' : format === 'short' ? 'short' : 'long';
    // ISO dates do not depend on the locale: one memo entry whatever the locale.
    const loc = style === 'iso' ? '' : typeof locale === 'string' && locale ? locale : 'en-US';
    let input = date;
    if (date instanceof DateCtor) {
      // The Date's own time value, not whatever its (overridable) getTime returns.
      try {
        input = DatePrototypeGetTime(date);
      } catch (_) {
        return '';
      }
    }
    const memoKey = typeof input === 'number' ? 'n|' + style + '|' + loc + '|' + input
      : typeof input === 'string' ? 's|' + style + '|' + loc + '|' + input : null;
    if (memoKey !== null) {
      const known = MapPrototypeGet(formattedDates, memoKey);
      if (known !== undefined) return known;
    }
    const formatted = formatDateUncached(input, style, loc);
    return memoKey !== null ? remember(formattedDates, memoKey, formatted, 1024) : formatted;
  }

  function isoDate(d) {
    return StringPrototypeSlice(DatePrototypeToISOString(d), 0, 10);
  }

  function formatDateUncached(input, style, loc) {
    const d = new DateCtor(input);
    if (input === null || input === undefined || NumberIsNaN(DatePrototypeGetTime(d))) return '';
    if (style === 'iso') return isoDate(d);
    // Formatters are costly to build (the W1b profile showed it): keep one per locale and style.
    const key = loc + '|' + style;
    let formatter = MapPrototypeGet(dateFormats, key);
    if (formatter === undefined) {
      try {
        const intl = new DateTimeFormat(loc, { __proto__: null, year: 'numeric', month: style, day: 'numeric', timeZone: 'UTC' });
        formatter = DateTimeFormatPrototypeFormat(intl);
      } catch (_) {
        formatter = null; // unknown locale
      }
      if (MapPrototypeGetSize(dateFormats) < 64) MapPrototypeSet(dateFormats, key, formatter);
    }
    // The time value, not the Date: formatting a Date converts it through its (replaceable) prototype.
    return formatter ? formatter(DatePrototypeGetTime(d)) : isoDate(d);
  }

  const COMBINING_MARKS = /[\u0300-\u036f]/g;
  const NOT_SLUG = /[^a-z0-9]+/g;
  const EDGE_DASHES = /^-+|-+$/g;

  /** "Summer Sale 2024!" → "summer-sale-2024". */
  function slugify(text) {
    const normalized = StringPrototypeNormalize(StringCtor(text === null || text === undefined ? '' : text), 'NFKD');
    const lower = StringPrototypeToLowerCase(replaceAll(COMBINING_MARKS, normalized, ''));
    return replaceAll(EDGE_DASHES, replaceAll(NOT_SLUG, lower, '-'), '');
  }

  // Ids are deterministic per block (the dispatcher resets the counter before each block) so
  // that the same inputs always produce the same HTML, which keeps HTML caching effective.
  let idScope = 'v';
  let idCounter = 0;
  // Id scopes by block id.
  const idScopes = new MapCtor();

  /** Unique-within-the-page element id, e.g. generateId('tab') → "tab-hero-1". */
  function generateId(prefix) {
    idCounter += 1;
    return slugify(prefix || 'v') + '-' + idScope + '-' + idCounter;
  }

  const SAFE_SCHEME = /^(https?:|mailto:)/i;
  // Images inlined as base64 data URIs cannot run script in an <img>, so they are allowed.
  const DATA_IMAGE = /^data:image\/(png|jpe?g|gif|webp|avif|svg\+xml);base64,[A-Za-z0-9+/=]+$/i;
  const ANY_SCHEME = /^[a-z][a-z0-9+.-]*:/i;
  const CONTROL = /[\u0000-\u001f]/;

  /** Returns the URL if it is relative, http(s) or mailto; '#' otherwise (no javascript: URLs). */
  function safeUrl(url) {
    if (typeof url !== 'string') return '#';
    const trimmed = StringPrototypeTrim(url);
    if (trimmed === '') return '#';
    if (RegExpPrototypeExec(SAFE_SCHEME, trimmed) !== null) return trimmed;
    if (RegExpPrototypeExec(DATA_IMAGE, trimmed) !== null) return trimmed;
    if (RegExpPrototypeExec(ANY_SCHEME, trimmed) !== null || StringPrototypeStartsWith(trimmed, '//') ||
        RegExpPrototypeExec(CONTROL, trimmed) !== null) return '#';
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
    return '/products/' + EncodeURIComponent(StringCtor(product.handle === undefined ? '' : product.handle));
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
  let cards = new WeakMapCtor();

  /** The product card used by the product grid and recently-viewed blocks. */
  function productCard(product, locale) {
    const memo = product !== null && typeof product === 'object' ? WeakMapPrototypeGet(cards, product) : undefined;
    if (memo === undefined) return productCardUncached(product, locale);
    const key = typeof locale === 'string' ? locale : '';
    if (memo.locale === key) return memo.card;
    if (memo.others === null) memo.others = new MapCtor();
    let card = MapPrototypeGet(memo.others, key);
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
    if (!ArrayIsArray(list)) return html;
    for (let i = 0; i < list.length; i++) html += productCard(list[i], locale);
    return html;
  }

  /**
   * A string built with `+` is a tree of pieces that V8 walks again each time the string is
   * copied (joined into a grid, handed to the engine). Converting it to a number makes V8
   * flatten it into one buffer in place, so a memoised card is copied with a single memcpy.
   */
  function flatten(text) {
    NumberCtor(text);
    return text;
  }

  function productCardUncached(product, locale) {
    const name = product.name || product.title || '';
    const image = product.image
      ? '<img class="v-product-card__image" src="' + escapeHtml(safeUrl(product.image)) + '" alt="' + escapeHtml(name) + '" loading="lazy">'
      : '';
    return '<article class="v-product-card" data-product-id="' + escapeHtml(product.id) + '">' +
      '<a class="v-product-card__link" href="' + escapeHtml(productUrl(product)) + '">' + image +
      '<h3 class="v-product-card__title">' + escapeHtml(name) + '</h3></a>' +
      '<p class="v-product-card__price">' + priceHtml(product, locale) + '</p>' +
      addToCartForm(product) +
      '</article>';
  }

  const PARAGRAPH_BREAK = /\r?\n\s*\r?\n/g;
  const LINE_BREAK = /\r?\n/g;

  /** Plain text with blank-line-separated paragraphs → escaped <p> elements. */
  function paragraphs(text) {
    if (text === null || text === undefined) return '';
    const source = StringCtor(text);
    let html = '';
    let start = 0;
    PARAGRAPH_BREAK.lastIndex = 0;
    for (;;) {
      const match = RegExpPrototypeExec(PARAGRAPH_BREAK, source);
      const end = match === null ? source.length : match.index;
      const paragraph = StringPrototypeTrim(StringPrototypeSlice(source, start, end));
      if (paragraph !== '') html += '<p>' + replaceAll(LINE_BREAK, escapeHtml(paragraph), '<br>') + '</p>';
      if (match === null) return html;
      start = end + match[0].length;
    }
  }

  const helpers = ObjectFreeze({
    escapeHtml, formatPrice, formatDate, slugify, generateId, safeUrl,
    addToCartForm, productCard, productCards, productUrl, priceHtml, paragraphs, isSoldOut,
  });

  // Internal hand-off to dispatch.js; the engine deletes this global before any block runs.
  globalThis.__vitrina = {
    helpers,
    primordials,
    blocks: ObjectCreate(null),
    // Called by the engine when it creates an isolate, outside any block's CPU budget: the
    // first Intl formatter of an isolate loads locale data, which must not count against a block.
    warmUp() {
      formatPrice(1, 'USD', 'en-US');
      formatDate(0, 'long', 'en-US');
    },
    /** Registers the store's products (parsed from JSON, deep-frozen) for card memoisation. */
    setStoreProducts(products) {
      cards = new WeakMapCtor();
      for (let i = 0; i < products.length; i++) {
        if (products[i] !== null && typeof products[i] === 'object') WeakMapPrototypeSet(cards, products[i], { __proto__: null, locale: null, card: '', others: null });
      }
    },
    resetIds(scope) {
      // Once per block per render: slugify's normalize and three regex replaces were 3.6 % of
      // the node's CPU under W1b, for the same few block ids again and again.
      let slug = MapPrototypeGet(idScopes, scope);
      if (slug === undefined) slug = remember(idScopes, scope, slugify(scope) || 'v', 256);
      idScope = slug;
      idCounter = 0;
    },
  };
})();
