//! Prototype poisoning and getter traps: a block that replaces built-ins, or installs getters,
//! setters or proxies on what blocks share, changes nothing for the blocks and renders after it.
//! The built-ins are frozen in every context and the helpers call built-ins they captured before
//! any block ran (actors/prelude.js, actors/dispatch.js), so the next render's escaping holds.
//!
//! Black-box: a store publishes a page of hostile blocks beside library blocks; one shopper
//! renders a control page, the hostile page, the control page again (byte-identical) and the
//! search page with `?q=<script>…` (escaped), all in its own isolate. An engine-level test shows
//! the run-time layer alone refusing code generation for code the validator cannot see. The
//! refusals at publish are cases of the corpus (tests/hostile/, run by tests/it/containment.rs).

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::{table, TestNode};

const HTML: &str = "text/html,application/xhtml+xml";

/// (class, case, statements): each statement runs in its own try/catch, in sloppy mode, so a
/// refused one (a frozen property) does not stop the next; every one passes the validator.
const HOSTILE: &[(&str, &str, &[&str])] = &[
    (
        "prototype-poisoning",
        "string-replace-and-slice",
        &[
            "String.prototype.replace = () => '<script>pwned()</script>'",
            "String.prototype.replaceAll = () => '<script>pwned()</script>'",
            "String.prototype.slice = () => '<script>pwned()</script>'",
            "String.prototype.charCodeAt = () => 0",
            "String.prototype.trim = () => '<script>pwned()</script>'",
            "String.prototype.toLowerCase = () => '<script>pwned()</script>'",
        ],
    ),
    (
        "prototype-poisoning",
        "regexp-test-exec-symbol-replace",
        &[
            "RegExp.prototype.test = () => false",
            "RegExp.prototype.exec = () => null",
            "RegExp.prototype[Symbol.replace] = () => '<script>pwned()</script>'",
            "Object.defineProperty(RegExp.prototype, 'flags', { get: () => '' })",
            "Object.defineProperty(RegExp.prototype, 'global', { get: () => false })",
        ],
    ),
    (
        "prototype-poisoning",
        "array-map-join-push",
        &[
            "Array.prototype.map = () => ['<script>pwned()</script>']",
            "Array.prototype.join = () => '<script>pwned()</script>'",
            "Array.prototype.push = () => 0",
            "Array.prototype.filter = () => []",
            "Array.isArray = () => false",
        ],
    ),
    (
        "prototype-poisoning",
        "object-keys-assign-freeze",
        &["Object.keys = () => []", "Object.assign = (t) => t", "Object.freeze = (o) => o"],
    ),
    ("prototype-poisoning", "json-stringify-parse", &["JSON.stringify = () => '{}'", "JSON.parse = () => ({ cart: { items: [] } })"]),
    (
        "prototype-poisoning",
        "symbol-iterator",
        &[
            "Array.prototype[Symbol.iterator] = function* () { yield '<script>pwned()</script>'; }",
            "String.prototype[Symbol.iterator] = function* () { yield '<'; }",
            "Map.prototype[Symbol.iterator] = function* () {}",
            "Object.defineProperty(Symbol, 'iterator', { value: Symbol('x') })",
        ],
    ),
    (
        "prototype-poisoning",
        "map-set-weakmap",
        &[
            "Map.prototype.get = () => '<script>pwned()</script>'",
            "Map.prototype.set = () => undefined",
            "Object.defineProperty(Map.prototype, 'size', { get: () => 0 })",
            "WeakMap.prototype.get = () => ({ locale: '', card: '<script>pwned()</script>' })",
        ],
    ),
    (
        "prototype-poisoning",
        "function-call-apply-bind",
        &[
            // Function.prototype, reached through a key the validator cannot read.
            "Object[['__pro', 'to__'].join('')].call = () => '<script>pwned()</script>'",
            "Object[['__pro', 'to__'].join('')].apply = () => '<script>pwned()</script>'",
            "Object[['__pro', 'to__'].join('')].bind = () => () => '<script>pwned()</script>'",
        ],
    ),
    (
        "prototype-poisoning",
        "global-constructors",
        &[
            "String = () => '<script>pwned()</script>'",
            "Number = () => 0",
            "Array = () => []",
            "Map = function () {}",
            "encodeURIComponent = (s) => s",
            "Math.max = () => 1000",
            "Math.min = () => 1000",
        ],
    ),
    (
        "prototype-poisoning",
        "intl-and-date",
        &[
            "Object.defineProperty(Intl.NumberFormat.prototype, 'format', { get: () => () => '<script>pwned()</script>' })",
            "Intl.NumberFormat = function () {}",
            "Date.prototype.toISOString = () => '<script>pwned()</script>'",
            "Date.prototype.getTime = () => 0",
        ],
    ),
    (
        "getter-traps",
        "object-prototype-getters",
        &[
            "Object.defineProperty(Object.prototype, 'search', { get() { throw new Error('trap'); } })",
            "Object.defineProperty(Object.prototype, 'title', { get() { throw new Error('trap'); } })",
            "Object.defineProperty(Object.prototype, 'heading', { get: () => '<script>pwned()</script>' })",
            "Object.prototype.post = { title: '<script>pwned()</script>' }",
        ],
    ),
    (
        "getter-traps",
        "array-prototype-index-accessors",
        &[
            "Object.defineProperty(Array.prototype, '0', { get() { throw new Error('trap'); }, set() { throw new Error('trap'); } })",
            "Object.defineProperty(Array.prototype, 'length', { get: () => 0 })",
        ],
    ),
    (
        "getter-traps",
        "shared-ctx-config-storefront-products-helpers",
        &[
            "Object.defineProperty(ctx, 'cart', { get() { throw new Error('trap'); } })",
            "ctx.search = { query: '<script>pwned()</script>' }",
            "Object.defineProperty(ctx.cart, 'items', { get() { throw new Error('trap'); } })",
            "Object.defineProperty(config, 'title', { get() { throw new Error('trap'); } })",
            "Object.defineProperty(storefront, 'name', { get: () => '<script>pwned()</script>' })",
            "Object.defineProperty(products[0], 'title', { get() { throw new Error('trap'); } })",
            "products.length = 0",
            "Object.defineProperty(helpers, 'escapeHtml', { value: (s) => s })",
            "helpers.escapeHtml.call = () => '<script>pwned()</script>'",
        ],
    ),
    (
        "getter-traps",
        "proxies-on-shared-objects",
        &[
            "Object.prototype.toString = new Proxy(function () {}, { apply() { throw new Error('trap'); } })",
            "Object.defineProperty(Object.prototype, 'then', { get() { throw new Error('trap'); } })",
            "Object.defineProperty(Array.prototype, 'includes', { value: new Proxy(() => true, {}) })",
            "Object.defineProperty(Error, ['prepare', 'StackTrace'].join(''), { value: () => '<script>pwned()</script>' })",
            "Error['prepareStack' + ['T', 'race'].join('')] = () => { throw new Error('trap'); }",
        ],
    ),
];

fn hostile_block(case: &str, statements: &[&str]) -> String {
    let tries: String = statements.iter().map(|s| format!("  try {{ {s}; }} catch (e) {{}}\n")).collect();
    format!("function hostile(ctx, helpers, storefront, products, config) {{\n{tries}  return '<p class=\"hostile\">{case}</p>';\n}}")
}

/// The library blocks every page of this test shows, in order.
fn library_blocks() -> Vec<serde_json::Value> {
    vec![
        json!({"type": "hero", "config": {"subheading": "Fish & <Chips>"}}),
        json!({"type": "product-grid", "config": {"title": "All \"things\"", "limit": 12}}),
        json!({"type": "text", "config": {"heading": "About", "body": "We <b>sell</b> things.\n\nGood ones."}}),
        json!({"type": "blog-list", "config": {"title": "Journal"}}),
        json!({"type": "cart-summary", "config": {}}),
        json!({"type": "recently-viewed", "config": {}}),
    ]
}

async fn publish(node: &TestNode, token: &str, store: &str, slug: &str, blocks: Vec<serde_json::Value>) {
    let page = json!({"title": slug, "blocks": blocks});
    let (s, b) = node.admin(token, Method::PUT, &format!("/stores/{store}/pages/{slug}"), Some(page)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = node.admin(token, Method::POST, &format!("/stores/{store}/pages/{slug}/publish"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn page(client: &reqwest::Client, url: &str) -> String {
    let res = client.get(url).header(ACCEPT, HTML).send().await.expect("page");
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    res.text().await.expect("body")
}

/// The page's `<main>` (blocks only): what must not change when a hostile block runs before it.
fn blocks_of(html: &str) -> &str {
    let start = html.find("<main").unwrap_or(0);
    let end = html.rfind("</main>").unwrap_or(html.len());
    &html[start..end]
}

#[tokio::test]
async fn hostile_blocks_change_nothing_for_the_next_blocks_and_renders() {
    // Every render really renders: no personal page cache between the requests.
    let node = TestNode::start_with(&[("VITRINA_CACHE__PERSONAL_HTML_TTL_SECS", "0")]);
    let store = "poison";
    let token = node.seed_store(store, "Poison & Co").await;
    let (s, b) = node
        .admin(
            &token,
            Method::PUT,
            &format!("/stores/{store}/posts/hello"),
            Some(json!({"title": "Hello <World>", "body": "One.\n\nTwo."})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    publish(&node, &token, store, "control", library_blocks()).await;
    // Each hostile block runs before the library blocks and again between them.
    let mut hostile: Vec<serde_json::Value> = Vec::new();
    for (_, case, statements) in HOSTILE {
        let code = hostile_block(case, statements);
        let validation = vitrina::engine::validate::validate_block(&code);
        assert!(validation.is_ok(), "{case} must pass the validator to test the run-time layer: {validation:?}");
        hostile.push(json!({"type": "custom", "code": code}));
    }
    let mut blocks = hostile.clone();
    blocks.extend(library_blocks());
    blocks.extend(hostile);
    blocks.extend(library_blocks());
    publish(&node, &token, store, "hostile", blocks).await;

    let base = node.base(store);
    let shopper = node.shopper(store);
    // A cart and a viewed product: the shopper renders in its own isolate, with personal blocks.
    let res = shopper.add_to_cart("mug", 2).await;
    assert!(res.status.is_success(), "{}", res.status);
    page(&shopper, &format!("{base}/products/tent")).await;

    let control = page(&shopper, &format!("{base}/pages/control")).await;
    let library = blocks_of(&control).to_string();
    assert!(library.contains("Fish &amp; &lt;Chips&gt;") && library.contains("We &lt;b&gt;sell&lt;/b&gt; things."), "{library}");
    assert!(library.contains("Enamel Mug") && library.contains("Two-person Tent") && library.contains("$12.50"), "{library}");
    let search_before = page(&shopper, &format!("{base}/search?q=%3Cscript%3Ealert(0)%3C%2Fscript%3E")).await;
    assert!(search_before.contains("&lt;script&gt;alert(0)&lt;/script&gt;"), "{search_before}");

    for round in 0..2 {
        let hostile_page = page(&shopper, &format!("{base}/pages/hostile")).await;
        let main = blocks_of(&hostile_page);
        for (_, case, _) in HOSTILE {
            assert_eq!(main.matches(&format!("<p class=\"hostile\">{case}</p>")).count(), 2, "round {round}: {case} ran twice\n{main}");
        }
        // The library blocks between and after the hostile ones render as on the control page.
        for piece in ["Fish &amp; &lt;Chips&gt;", "We &lt;b&gt;sell&lt;/b&gt; things.", "Hello &lt;World&gt;", "$12.50", "Enamel Mug"] {
            assert_eq!(main.matches(piece).count(), library.matches(piece).count() * 2, "round {round}: {piece}\n{main}");
        }
        assert!(!main.contains("pwned") && !main.contains("v-block-placeholder"), "round {round}\n{main}");

        // The next renders in the same isolate: the control page byte for byte, and the search
        // page's reflected query escaped.
        let again = page(&shopper, &format!("{base}/pages/control")).await;
        assert_eq!(blocks_of(&again), library, "round {round}: the control page changed after the hostile page");
        let search = page(&shopper, &format!("{base}/search?q=%3Cscript%3Ealert({round})%3C%2Fscript%3E")).await;
        assert!(search.contains(&format!("&lt;script&gt;alert({round})&lt;/script&gt;")), "round {round}\n{search}");
        assert!(!search.contains(&format!("<script>alert({round})")) && !search.contains("pwned"), "round {round}\n{search}");
        assert_eq!(search.replace(&format!("alert({round})"), "alert(0)"), search_before, "round {round}: search page changed");
    }

    // Another store on the node is untouched.
    let other_token = node.seed_store("other", "Other").await;
    assert!(!other_token.is_empty());
    let other = page(&node.shopper("other"), &node.base("other")).await;
    assert!(other.contains("Welcome to Other") && other.contains("Enamel Mug"), "{other}");
    for (class, case, _) in HOSTILE {
        table::record("containment", class, case, "contained");
    }
}

/// The run-time layer on its own: code the validator cannot see through (a key computed at run
/// time) reaches the Function constructors, which refuse to compile strings; Wasm, Atomics and
/// SharedArrayBuffer are not there at all.
#[test]
fn the_isolate_refuses_code_generation_the_validator_cannot_see() {
    use vitrina::block_limits::RenderLimits;
    use vitrina::engine::js::{EngineOptions, V8Engine};
    use vitrina::engine::{BlockEngine, BlockFailure, BlockToRender, StoreRenderData};
    let data = StoreRenderData { version: 1, storefront_json: "{\"name\":\"S\"}".into(), products_json: "[]".into() };
    let limits = RenderLimits { block_cpu_ms: 5_000, page_cpu_ms: 10_000, ..RenderLimits::default() };
    let key = "const k = ['constr', 'uctor'].join('');";
    let cases = [
        format!("function f(ctx) {{ {key} const g = () => 1; return g[k]('return 1')(); }}"),
        format!("function f(ctx) {{ {key} const g = async () => 1; return String(g[k]('return 1')); }}"),
        format!("function f(ctx) {{ {key} function* g() {{}} return String(g[k]('yield 1')); }}"),
        format!("function f(ctx) {{ {key} async function* g() {{}} return String(g[k]('yield 1')); }}"),
        format!("function f(ctx) {{ {key} const g = () => 1; const e = g[k]('return eval')(); return String(e('1')); }}"),
    ];
    for code in &cases {
        assert!(vitrina::engine::validate::validate_block(code).is_ok(), "the validator cannot decide this one: {code}");
        for validate in [true, false] {
            let mut engine = V8Engine::with_options(EngineOptions { validate, ..EngineOptions::default() });
            let block = BlockToRender { id: "b", block_type: "custom", code: Some(code), code_version: 1, config_json: "{}" };
            match engine.render(&data, "{}", &[block], &limits).remove(0) {
                Err(BlockFailure::Error(message)) => {
                    assert!(message.contains("Code generation from strings disallowed"), "{code}: {message}")
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }
    // Without the validator: the names the validator refuses do not exist at run time either,
    // and the built-ins are frozen in the block's context.
    let probe = "function f(ctx) { const k = 'Web' + 'Assembly'; return [typeof WebAssembly, typeof Atomics, typeof SharedArrayBuffer, \
                 Object.isFrozen(Object.prototype), Object.isFrozen(Array.prototype), Object.isFrozen(String.prototype), \
                 Object.isFrozen(RegExp.prototype), Object.isFrozen(Function.prototype), Object.isFrozen(Object.getPrototypeOf(async () => {})), \
                 Object.isFrozen(Object.getPrototypeOf(function* () {}).prototype), Object.isFrozen(Object.getPrototypeOf([][Symbol.iterator]())), \
                 Object.getOwnPropertyDescriptor(globalThis, 'String').writable, Object.isExtensible(globalThis), typeof RegExp.$1, typeof Error.prepareStackTrace].join(','); }";
    let mut engine = V8Engine::with_options(EngineOptions { validate: false, ..EngineOptions::default() });
    let block = BlockToRender { id: "p", block_type: "custom", code: Some(probe), code_version: 1, config_json: "{}" };
    assert_eq!(
        engine.render(&data, "{}", &[block], &limits).remove(0),
        Ok("undefined,undefined,undefined,true,true,true,true,true,true,true,true,false,true,undefined,undefined".to_string())
    );
    // The global object, reached as a sloppy function's `this` (refused at publish: no-this):
    // its own names are all ECMAScript's.
    let globals = "function f(ctx) { const g = (function () { return this; })(); \
        const allowed = new Set(['Object', 'Function', 'Array', 'Number', 'parseFloat', 'parseInt', 'Infinity', 'NaN', \
        'undefined', 'Boolean', 'String', 'Symbol', 'Date', 'Promise', 'RegExp', 'Error', 'AggregateError', 'EvalError', \
        'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError', 'globalThis', 'JSON', 'Math', 'Intl', \
        'ArrayBuffer', 'Uint8Array', 'Int8Array', 'Uint16Array', 'Int16Array', 'Uint32Array', 'Int32Array', 'Float16Array', \
        'Float32Array', 'Float64Array', 'Uint8ClampedArray', 'BigUint64Array', 'BigInt64Array', 'DataView', 'Map', 'BigInt', \
        'Set', 'WeakMap', 'WeakSet', 'Proxy', 'Reflect', 'FinalizationRegistry', 'WeakRef', 'decodeURI', 'decodeURIComponent', \
        'encodeURI', 'encodeURIComponent', 'escape', 'unescape', 'eval', 'isFinite', 'isNaN', 'console', 'Iterator', \
        'SuppressedError', 'DisposableStack', 'AsyncDisposableStack', 'Temporal']); \
        return 'extra:' + Object.getOwnPropertyNames(g).filter((n) => !allowed.has(n)).join(','); }";
    assert!(vitrina::engine::validate::validate_block(globals).errors.iter().any(|d| d.rule == "no-this"));
    let block = BlockToRender { id: "g", block_type: "custom", code: Some(globals), code_version: 1, config_json: "{}" };
    assert_eq!(engine.render(&data, "{}", &[block], &limits).remove(0), Ok("extra:".to_string()));
    table::record("containment", "code-generation", "constructor-via-runtime-computed-key", "contained");
}
