// Vitrina dispatch: the entry points the Rust engine calls. Runs after prelude.js and the
// default block library when the startup snapshot is built.
(function () {
  'use strict';
  const V = globalThis.__vitrina;
  const helpers = V.helpers;
  const resetIds = V.resetIds;
  const setStoreProducts = V.setStoreProducts;
  // Captured now so a block that overwrites built-ins cannot change how later blocks are called.
  const parse = JSON.parse;
  const freeze = Object.freeze;
  const isFrozen = Object.isFrozen;
  const keys = Object.keys;
  const isArray = Array.isArray;
  const apply = Reflect.apply;

  let storefront = freeze({});
  let products = freeze([]);
  let byId = new Map();
  let byHandle = new Map();

  function deepFreeze(value) {
    if (value === null || typeof value !== 'object' || isFrozen(value)) return value;
    freeze(value);
    const names = keys(value);
    for (let i = 0; i < names.length; i++) deepFreeze(value[names[i]]);
    return value;
  }

  function isObject(value) {
    return value !== null && typeof value === 'object' && !isArray(value);
  }

  /** Parses and freezes the store's data; called once per store version per isolate. */
  function setData(storefrontJson, productsJson) {
    const parsedStorefront = parse(storefrontJson);
    const parsedProducts = parse(productsJson);
    if (!isArray(parsedProducts)) throw new TypeError('products must be a JSON array');
    const ids = new Map();
    const handles = new Map();
    for (let i = 0; i < parsedProducts.length; i++) {
      const product = parsedProducts[i];
      if (!isObject(product)) continue;
      if (product.id !== undefined && product.id !== null) ids.set(String(product.id), product);
      if (product.handle !== undefined && product.handle !== null) handles.set(String(product.handle), product);
    }
    storefront = deepFreeze(isObject(parsedStorefront) ? parsedStorefront : {});
    products = deepFreeze(parsedProducts);
    setStoreProducts(products);
    byId = ids;
    byHandle = handles;
  }

  /** Parses the shopper context once per render and resolves product references. */
  function prepareCtx(ctxJson) {
    const parsed = ctxJson ? parse(ctxJson) : {};
    const ctx = isObject(parsed) ? parsed : {};
    const viewed = isArray(ctx.recentlyViewed) ? ctx.recentlyViewed : [];
    const resolved = [];
    for (let i = 0; i < viewed.length; i++) {
      const product = byId.get(String(viewed[i]));
      if (product !== undefined) resolved.push(product);
    }
    ctx.recentlyViewed = resolved;
    if (ctx.productHandle !== undefined && ctx.productHandle !== null) {
      const product = byHandle.get(String(ctx.productHandle));
      ctx.product = product !== undefined ? product : null;
    }
    return deepFreeze(ctx);
  }

  /** A block's config, parsed and frozen; the engine keeps it per block while it is unchanged. */
  function parseConfig(configJson) {
    const parsed = configJson ? parse(configJson) : {};
    return deepFreeze(isObject(parsed) ? parsed : {});
  }

  // The ctx each block was last called with, by block id: while the page's ctx (reused by the
  // engine for as long as the shopper's ctx JSON is the same) and the block's config are the
  // same objects, the block gets the same frozen ctx instead of a new copy per render.
  const blockCtxs = new Map();

  function blockCtx(baseCtx, config, id, type) {
    const kept = blockCtxs.get(id);
    if (kept !== undefined && kept.base === baseCtx && kept.config === config && kept.type === type) return kept.ctx;
    const ctx = freeze(Object.assign({}, baseCtx, { config, block: freeze({ id, type }) }));
    if (blockCtxs.size >= 256) blockCtxs.clear();
    blockCtxs.set(id, { base: baseCtx, config, type, ctx });
    return ctx;
  }

  /**
   * Calls one block with its parsed `config`. `argNames` is null for positional (storefront,
   * products, helpers, ctx), else the list of values to pass by parameter name.
   */
  function renderBlock(fn, argNames, baseCtx, config, id, type) {
    const ctx = blockCtx(baseCtx, config, id, type);
    resetIds(id);
    let args;
    if (argNames === null || argNames === undefined) {
      args = [storefront, products, helpers, ctx];
    } else {
      const values = { storefront, products, helpers, ctx, config, cart: ctx.cart };
      args = [];
      for (let i = 0; i < argNames.length; i++) args.push(values[argNames[i]]);
    }
    return apply(fn, undefined, args);
  }

  /**
   * Runs every default block once on a tiny sample store while the startup snapshot is built,
   * so their bytecode is compiled into the snapshot: without it every new isolate (every new
   * shopper's first render) compiled the library again (W2p profile: ~10 % of a cold render).
   * The sample has no prices or dates, so no Intl object is created (those cannot be
   * snapshotted); state is reset afterwards.
   */
  function compileDefaultBlocks() {
    const sample = { id: 'sample', handle: 'sample', name: 'Sample', title: 'Sample', description: 'Sample.',
      tags: ['sample'], images: [], image: '', stock: 1, url: '/products/sample' };
    setData(JSON.stringify({ id: 'sample', name: 'Sample', tagline: '', pages: [], posts: [] }), JSON.stringify([sample]));
    const cart = { count: 1, items: [{ productId: 'sample', handle: 'sample', title: 'Sample', quantity: 1, available: true }] };
    const base = prepareCtx(JSON.stringify({ cart, recentlyViewed: ['sample'], device: 'desktop', userType: 'guest',
      customer: false, page: { slug: 'home', title: 'Sample' }, productHandle: 'sample',
      post: { slug: 'sample', title: 'Sample', excerpt: '', body: 'Sample.\n\nText.' },
      search: { query: 'sample', productIds: ['sample'] }, order: { id: 'sample', status: 'pending', lines: [] } }));
    const types = keys(V.blocks);
    for (let i = 0; i < types.length; i++) {
      try {
        renderBlock(V.blocks[types[i]], null, base, parseConfig('{}'), 'sample-' + types[i], types[i]);
      } catch (_) {
        // A block that needs richer data compiles on its first real render instead.
      }
    }
    storefront = freeze({});
    products = freeze([]);
    byId = new Map();
    byHandle = new Map();
    setStoreProducts([]);
    blockCtxs.clear();
  }

  compileDefaultBlocks();
  V.setData = setData;
  V.prepareCtx = prepareCtx;
  V.renderBlock = renderBlock;
  V.parseConfig = parseConfig;
  freeze(V.blocks);
  freeze(V);
})();
