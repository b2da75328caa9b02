// Vitrina dispatch: the entry points the Rust engine calls. Runs after prelude.js and the
// default block library when the startup snapshot is built.
(function () {
  'use strict';
  const V = globalThis.__vitrina;
  const helpers = V.helpers;
  const resetIds = V.resetIds;
  const setStoreProducts = V.setStoreProducts;
  // The prelude's primordials: a block that overwrites built-ins cannot change how later
  // blocks are called (see prelude.js).
  const {
    ArrayIsArray: isArray, ArrayPrototypePush, JSONParse: parse, JSONStringify, MapCtor, MapPrototypeClear, MapPrototypeGet,
    MapPrototypeGetSize, MapPrototypeSet, ObjectAssign, ObjectDefineProperty, ObjectFreeze: freeze, ObjectGetPrototypeOf,
    ObjectIsFrozen: isFrozen, ObjectKeys: keys, ReflectApply: apply, ReflectGetOwnPropertyDescriptor, ReflectOwnKeys, SetCtor,
    StringCtor,
  } = V.primordials;

  let storefront = freeze({});
  let products = freeze([]);
  let byId = new MapCtor();
  let byHandle = new MapCtor();

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
    const ids = new MapCtor();
    const handles = new MapCtor();
    for (let i = 0; i < parsedProducts.length; i++) {
      const product = parsedProducts[i];
      if (!isObject(product)) continue;
      if (product.id !== undefined && product.id !== null) MapPrototypeSet(ids, StringCtor(product.id), product);
      if (product.handle !== undefined && product.handle !== null) MapPrototypeSet(handles, StringCtor(product.handle), product);
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
      const product = MapPrototypeGet(byId, StringCtor(viewed[i]));
      if (product !== undefined) ArrayPrototypePush(resolved, product);
    }
    ctx.recentlyViewed = resolved;
    if (ctx.productHandle !== undefined && ctx.productHandle !== null) {
      const product = MapPrototypeGet(byHandle, StringCtor(ctx.productHandle));
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
  const blockCtxs = new MapCtor();

  function blockCtx(baseCtx, config, id, type) {
    const kept = MapPrototypeGet(blockCtxs, id);
    if (kept !== undefined && kept.base === baseCtx && kept.config === config && kept.type === type) return kept.ctx;
    const ctx = freeze(ObjectAssign({}, baseCtx, { config, block: freeze({ id, type }) }));
    if (MapPrototypeGetSize(blockCtxs) >= 256) MapPrototypeClear(blockCtxs);
    MapPrototypeSet(blockCtxs, id, { __proto__: null, base: baseCtx, config, type, ctx });
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
      const values = { __proto__: null, storefront, products, helpers, ctx, config, cart: ctx.cart };
      args = [];
      for (let i = 0; i < argNames.length; i++) ArrayPrototypePush(args, values[argNames[i]]);
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
    setData(JSONStringify({ id: 'sample', name: 'Sample', tagline: '', pages: [], posts: [] }), JSONStringify([sample]));
    const cart = { count: 1, items: [{ productId: 'sample', handle: 'sample', title: 'Sample', quantity: 1, available: true }] };
    const base = prepareCtx(JSONStringify({ cart, recentlyViewed: ['sample'], device: 'desktop', userType: 'guest',
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
    byId = new MapCtor();
    byHandle = new MapCtor();
    setStoreProducts([]);
    MapPrototypeClear(blockCtxs);
  }

  // Globals the engine deletes after it creates a context (so they must stay configurable):
  // this hand-off object, and the capabilities blocks do not get.
  const REMOVED_GLOBALS = ['__vitrina', 'WebAssembly', 'SharedArrayBuffer', 'Atomics'];
  // RegExp's legacy static properties (`RegExp.$1`, `RegExp.input`, …) would show a block the
  // text of the last regular expression match of the previous block or helper.
  const LEGACY_REGEXP_STATICS = ['$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9', 'input', '$_', 'lastMatch', '$&',
    'lastParen', '$+', 'leftContext', '$`', 'rightContext', "$'"];

  /**
   * Data properties of frozen prototypes that code commonly assigns on its own objects
   * (`obj.toString = …`). A frozen, non-writable inherited property makes such an
   * assignment fail (it throws in strict code). Each becomes an accessor that answers the
   * original value and defines an own property on the object assigned to, never on the prototype.
   */
  function allowOverride(proto, name) {
    const descriptor = ReflectGetOwnPropertyDescriptor(proto, name);
    if (descriptor === undefined || !('value' in descriptor)) return;
    const value = descriptor.value;
    ObjectDefineProperty(proto, name, {
      __proto__: null,
      get() {
        return value;
      },
      set(replacement) {
        if (this === proto) throw new TypeError('Cannot assign to read only property \'' + name + '\' of a built-in prototype');
        ObjectDefineProperty(this, name, { __proto__: null, value: replacement, writable: true, enumerable: true, configurable: true });
      },
      enumerable: descriptor.enumerable,
      configurable: false,
    });
  }

  /**
   * Freezes every built-in a block can reach: each global constructor, function and namespace
   * (`Math`, `JSON`, `Intl` and the constructors in it, …) with its `prototype`, and the
   * intrinsics only syntax reaches (generator and async function prototypes, iterator
   * prototypes, %TypedArray%). Global bindings become read-only and non-configurable; the
   * global object stays extensible, so a sloppy block's implicit global still works. Runs once
   * per context, after the library and before any block: a block can no longer replace a
   * method, add a getter to `Object.prototype` or `Array.prototype`, or swap a global
   * constructor for the blocks after it.
   *
   * An explicit list, not a walk of everything reachable: the walk froze ~1,500 built-in
   * methods one by one (their own `name` and `length` only, which nothing calls through) and
   * made a descriptor object per property, which made every new context markedly slower and
   * larger (loadtest/RESULTS.md, "Frozen built-ins per context").
   */
  function lockdown() {
    const global = globalThis;
    for (let i = 0; i < LEGACY_REGEXP_STATICS.length; i++) delete RegExp[LEGACY_REGEXP_STATICS[i]];
    allowOverride(Object.prototype, 'toString');
    allowOverride(Object.prototype, 'valueOf');

    const freezeOne = (value) => {
      if ((typeof value === 'object' && value !== null) || typeof value === 'function') freeze(value);
    };
    const freezeWithPrototype = (value) => {
      freezeOne(value);
      if (typeof value === 'function') freezeOne(value.prototype);
    };
    // V8 adds `Error.stackTraceLimit` to every context it makes from the snapshot, so the Error
    // constructor stays extensible: its properties are locked one by one instead, and the V8
    // hook `Error.prepareStackTrace` (called with every later error's stack frames) is taken
    // first, as a read-only `undefined`.
    ObjectDefineProperty(Error, 'prepareStackTrace', { __proto__: null, value: undefined, writable: false, enumerable: false, configurable: false });
    lockBindings(Error);
    freezeOne(Error.prototype);

    const names = lockBindings(global);
    for (let i = 0; i < names.length; i++) {
      const value = global[names[i]];
      if (value === global || value === Error) continue;
      freezeWithPrototype(value);
      // Namespaces: the constructors in them (Intl.NumberFormat, …) and their prototypes.
      if (typeof value === 'object' && value !== null) {
        const members = ReflectOwnKeys(value);
        for (let j = 0; j < members.length; j++) {
          const member = value[members[j]];
          if (typeof member === 'function' && typeof member.prototype === 'object') freezeWithPrototype(member);
        }
      }
    }
    const protoOf = ObjectGetPrototypeOf;
    freezeWithPrototype(protoOf(Int8Array)); // %TypedArray%
    const functionKinds = [function* () {}, async function () {}, async function* () {}];
    for (let i = 0; i < functionKinds.length; i++) {
      const kind = protoOf(functionKinds[i]); // %GeneratorFunction.prototype%, …
      freezeOne(kind);
      freezeOne(kind.constructor);
      freezeOne(kind.prototype); // %GeneratorPrototype%, %AsyncGeneratorPrototype%
      if (kind.prototype) freezeOne(protoOf(kind.prototype)); // %IteratorPrototype%, %AsyncIteratorPrototype%
    }
    const iterators = [[][Symbol.iterator](), new MapCtor()[Symbol.iterator](), new SetCtor()[Symbol.iterator](), ''[Symbol.iterator](),
      /x/[Symbol.matchAll]('')];
    if (typeof Iterator === 'function' && typeof Iterator.prototype.map === 'function') {
      ArrayPrototypePush(iterators, [].values().map((x) => x), Iterator.from({ next() { return { done: true }; } }));
    }
    if (typeof Intl.Segmenter === 'function') {
      const segments = new Intl.Segmenter('en').segment('');
      ArrayPrototypePush(iterators, segments, segments[Symbol.iterator]());
    }
    for (let i = 0; i < iterators.length; i++) freezeOne(protoOf(iterators[i]));
  }

  /** Makes every own property of `object` read-only and non-configurable; returns their keys. */
  function lockBindings(object) {
    const keysOfObject = ReflectOwnKeys(object);
    const kept = [];
    for (let i = 0; i < keysOfObject.length; i++) {
      const key = keysOfObject[i];
      let removed = false;
      for (let j = 0; j < REMOVED_GLOBALS.length; j++) removed = removed || key === REMOVED_GLOBALS[j];
      if (removed) continue;
      const descriptor = ReflectGetOwnPropertyDescriptor(object, key);
      if (descriptor.configurable || descriptor.writable) {
        ObjectDefineProperty(object, key, 'value' in descriptor
          ? { __proto__: null, writable: false, configurable: false }
          : { __proto__: null, configurable: false });
      }
      ArrayPrototypePush(kept, key);
    }
    return kept;
  }

  compileDefaultBlocks();
  V.setData = setData;
  V.prepareCtx = prepareCtx;
  V.renderBlock = renderBlock;
  V.parseConfig = parseConfig;
  // V8 installs some built-ins into every context it makes from the snapshot (shipped language
  // features, `Error.stackTraceLimit`), and fails on a frozen object; so the built-ins are
  // frozen in each new context instead of in the snapshot, when the engine warms it up, before
  // any block runs.
  const warmUp = V.warmUp;
  V.warmUp = function () {
    warmUp();
    lockdown();
  };
  freeze(V.blocks);
  freeze(V);
})();
