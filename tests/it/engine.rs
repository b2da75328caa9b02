//! Integration tests of the V8 block engine through the `BlockEngine` interface.

use std::sync::Arc;

use serde_json::json;
use vitrina::block_limits::RenderLimits;
use vitrina::engine::js::{EngineOptions, V8Engine};
use vitrina::engine::validate::validate_block;
use vitrina::engine::{BlockEngine, BlockFailure, BlockOutcome, BlockToRender, StoreRenderData};

fn product(id: &str, name: &str, price_minor: i64, stock: Option<i64>) -> serde_json::Value {
    json!({
        "id": id, "handle": format!("{id}-handle"), "name": name, "title": name,
        "description": format!("About {name}.\n\nSecond paragraph."),
        "price": price_minor as f64 / 100.0, "priceMinor": price_minor, "compareAtPrice": null,
        "currency": "USD", "image": format!("https://img.example/{id}.jpg"),
        "images": [format!("https://img.example/{id}.jpg")], "stock": stock, "tags": ["new"],
        "url": format!("/products/{id}-handle"),
    })
}

fn store(version: u64, products: Vec<serde_json::Value>) -> StoreRenderData {
    let storefront = json!({
        "id": "s1", "name": "Acme & Co", "tagline": "Things \"you\" <need>", "currency": "USD", "locale": "en-US",
        "theme": {"colorPrimary": "#123456"},
        "pages": [{"slug": "home", "title": "Home"}],
        "posts": [{"slug": "hello-world", "title": "Hello <World>", "excerpt": "First post", "body": "One.\n\nTwo.",
                   "publishedAt": "2024-05-01T00:00:00Z", "image": ""}],
    });
    StoreRenderData {
        version,
        storefront_json: Arc::from(storefront.to_string()),
        products_json: Arc::from(serde_json::Value::Array(products).to_string()),
    }
}

fn demo_store() -> StoreRenderData {
    store(1, vec![product("p1", "Mug", 1999, Some(5)), product("p2", "Tee", 2500, Some(0)), product("p3", "Cap", 1000, None)])
}

fn ctx() -> String {
    json!({
        "cart": {"count": 2, "subtotal": 39.98, "subtotalMinor": 3998, "currency": "USD",
                 "items": [{"productId": "p1", "handle": "p1-handle", "title": "Mug", "quantity": 2, "price": 19.99,
                            "priceMinor": 1999, "lineTotal": 39.98, "lineTotalMinor": 3998}]},
        "recentlyViewed": ["p3", "missing", "p1"], "device": "desktop", "userType": "guest", "customer": false,
        "locale": "en-US", "region": "US", "page": {"slug": "home", "title": "Home"},
        "productHandle": "p1-handle",
        "post": {"slug": "hello-world", "title": "Hello <World>", "excerpt": "First post", "body": "One.\n\nTwo.",
                 "publishedAt": "2024-05-01T00:00:00Z", "image": ""},
    })
    .to_string()
}

fn block<'a>(id: &'a str, block_type: &'a str, code: Option<&'a str>, config_json: &'a str) -> BlockToRender<'a> {
    BlockToRender { id, block_type, code, code_version: 1, config_json }
}

/// Generous CPU limits for tests that are not about limits: tests run in parallel on a debug
/// build, where 50 ms of wall-clock time is not a reliable budget.
fn relaxed() -> RenderLimits {
    RenderLimits { block_cpu_ms: 5_000, page_cpu_ms: 10_000, ..RenderLimits::default() }
}

fn render_one(engine: &mut V8Engine, data: &StoreRenderData, b: BlockToRender<'_>) -> BlockOutcome {
    engine.render(data, &ctx(), &[b], &relaxed()).remove(0)
}

const SEED_GRID: &str = r#"function renderProductGrid(products, helpers) {
  return `
    <div class="grid grid-cols-3 gap-4">
      ${products.slice(0, 6).map(product => `
        <div class="border rounded-lg p-4">
          <img src="${product.image}" alt="${helpers.escapeHtml(product.name)}" />
          <h3>${helpers.escapeHtml(product.name)}</h3>
          <p>${helpers.formatPrice(product.price, 'USD')}</p>
          <button onclick="addToCart('${product.id}', 1)">Add to Cart</button>
        </div>
      `).join('')}
    </div>
  `;
}"#;

const SEED_HERO: &str = r#"function renderHero(storefront, helpers) {
  return `
    <section class="hero bg-gradient-to-r from-blue-500 to-purple-600 text-white py-20">
      <div class="container mx-auto text-center">
        <h1 class="text-4xl font-bold mb-4">${helpers.escapeHtml(storefront.name)}</h1>
        <p class="text-xl mb-8">${helpers.escapeHtml(storefront.tagline)}</p>
        <a href="/products" class="bg-white text-blue-600 px-8 py-3 rounded-lg font-semibold">Shop Now</a>
      </div>
    </section>
  `;
}"#;

#[test]
fn seed_examples_render_unchanged() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let out = engine.render(
        &data,
        &ctx(),
        &[block("g", "custom", Some(SEED_GRID), "{}"), block("h", "custom", Some(SEED_HERO), "{}")],
        &relaxed(),
    );
    let card = |id: &str, name: &str, price: &str| {
        format!(
            "\n        <div class=\"border rounded-lg p-4\">\n          <img src=\"https://img.example/{id}.jpg\" alt=\"{name}\" />\n          <h3>{name}</h3>\n          <p>{price}</p>\n          <button onclick=\"addToCart('{id}', 1)\">Add to Cart</button>\n        </div>\n      "
        )
    };
    let expected_grid = format!(
        "\n    <div class=\"grid grid-cols-3 gap-4\">\n      {}{}{}\n    </div>\n  ",
        card("p1", "Mug", "$19.99"),
        card("p2", "Tee", "$25.00"),
        card("p3", "Cap", "$10.00")
    );
    assert_eq!(out[0], Ok(expected_grid));
    let expected_hero = "\n    <section class=\"hero bg-gradient-to-r from-blue-500 to-purple-600 text-white py-20\">\n      <div class=\"container mx-auto text-center\">\n        <h1 class=\"text-4xl font-bold mb-4\">Acme &amp; Co</h1>\n        <p class=\"text-xl mb-8\">Things &quot;you&quot; &lt;need&gt;</p>\n        <a href=\"/products\" class=\"bg-white text-blue-600 px-8 py-3 rounded-lg font-semibold\">Shop Now</a>\n      </div>\n    </section>\n  ";
    assert_eq!(out[1], Ok(expected_hero.to_string()));
}

#[test]
fn default_blocks_render_demo_data() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let blocks = [
        block(
            "hero",
            "hero",
            None,
            r#"{"heading":"Welcome","subheading":"Fresh stuff","ctaText":"Browse","ctaHref":"javascript:alert(1)"}"#,
        ),
        block("grid", "product-grid", None, r#"{"title":"New","limit":2}"#),
        block("detail", "product-detail", None, "{}"),
        block("text", "text", None, r#"{"heading":"About","body":"Line <one>\n\nLine two"}"#),
        block("gallery", "gallery", None, r#"{"title":"Look","images":[{"src":"/a.jpg","alt":"A"}]}"#),
        block("blog", "blog-list", None, r#"{"title":"Journal"}"#),
        block("post", "blog-post", None, "{}"),
        block("cart", "cart-summary", None, "{}"),
        block("rv", "recently-viewed", None, "{}"),
        block("x", "no-such-type", None, "{}"),
    ];
    let out = engine.render(&data, &ctx(), &blocks, &relaxed());
    let html = |i: usize| out[i].clone().unwrap_or_else(|e| panic!("block {i}: {e:?}"));

    assert_eq!(
        html(0),
        "<section class=\"v-hero\"><div class=\"v-hero__content\"><h1 class=\"v-hero__heading\">Welcome</h1><p class=\"v-hero__subheading\">Fresh stuff</p><a class=\"v-button v-button--primary\" href=\"#\">Browse</a></div></section>"
    );
    let grid = html(1);
    assert!(grid.starts_with("<section class=\"v-section v-product-grid-section\"><h2 class=\"v-section__title\">New</h2>"), "{grid}");
    assert!(grid.contains("<a class=\"v-product-card__link\" href=\"/products/p1-handle\">"), "{grid}");
    assert!(grid.contains("<form class=\"v-add-to-cart\" method=\"post\" action=\"/cart/items\"><input type=\"hidden\" name=\"product_id\" value=\"p1\"><input class=\"v-quantity\" type=\"number\" name=\"quantity\" value=\"1\" min=\"1\"><button class=\"v-button\" type=\"submit\">Add to cart</button></form>"), "{grid}");
    // p2 is out of stock: sold out, no form for it; limit 2 hides p3.
    assert!(grid.contains("<p class=\"v-sold-out\">Sold out</p>"), "{grid}");
    assert!(!grid.contains("value=\"p2\""), "{grid}");
    assert!(!grid.contains("p3-handle"), "{grid}");
    let detail = html(2);
    assert!(detail.contains("<h1 class=\"v-product-detail__title\">Mug</h1>"), "{detail}");
    assert!(detail.contains("<span class=\"v-price\">$19.99</span>"), "{detail}");
    assert!(detail.contains("<p>About Mug.</p><p>Second paragraph.</p>"), "{detail}");
    assert_eq!(
        html(3),
        "<section class=\"v-section v-text\"><h2 class=\"v-section__title\">About</h2><div class=\"v-text__body\"><p>Line &lt;one&gt;</p><p>Line two</p></div></section>"
    );
    assert!(html(4).contains("<img class=\"v-gallery__image\" src=\"/a.jpg\" alt=\"A\" loading=\"lazy\">"));
    let blog = html(5);
    assert!(blog.contains("<a href=\"/blog/hello-world\">Hello &lt;World&gt;</a>"), "{blog}");
    assert!(blog.contains(">May 1, 2024</time>"), "{blog}");
    assert!(html(6).contains("<div class=\"v-blog-post__body\"><p>One.</p><p>Two.</p></div>"));
    let cart = html(7);
    assert!(cart.contains("<p class=\"v-cart-summary__count\">2 items</p>"), "{cart}");
    assert!(cart.contains("Subtotal <span class=\"v-price\">$39.98</span>"), "{cart}");
    assert!(cart.contains("href=\"/cart\""), "{cart}");
    // recently viewed resolves ids, skips missing ones and the product being viewed (p1).
    let rv = html(8);
    assert!(rv.contains("/products/p3-handle"), "{rv}");
    assert!(!rv.contains("/products/p1-handle"), "{rv}");
    assert_eq!(out[9], Err(BlockFailure::Error("unknown block type \"no-such-type\"".into())));
}

#[test]
fn hostile_product_names_are_escaped() {
    let mut engine = V8Engine::new();
    let data =
        store(1, vec![product("p\"1", "<script>alert(1)</script>", 100, Some(1)), product("p2", "\" onmouseover=\"x", 100, Some(1))]);
    let grid = render_one(&mut engine, &data, block("g", "product-grid", None, "{}")).expect("grid");
    assert!(!grid.contains("<script>"), "{grid}");
    assert!(grid.contains("<h3 class=\"v-product-card__title\">&lt;script&gt;alert(1)&lt;/script&gt;</h3>"), "{grid}");
    assert!(grid.contains("alt=\"&quot; onmouseover=&quot;x\""), "{grid}");
    assert!(grid.contains("name=\"product_id\" value=\"p&quot;1\""), "{grid}");
    let seed = render_one(&mut engine, &data, block("s", "custom", Some(SEED_GRID), "{}")).expect("seed");
    assert!(seed.contains("<h3>&lt;script&gt;alert(1)&lt;/script&gt;</h3>"), "{seed}");
}

#[test]
fn html_comes_out_as_the_same_text_whatever_v8_stores_it_as() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    // Strings built with `+` are trees of pieces; Latin-1 text is stored one byte per
    // character, anything beyond it two bytes per character.
    let cases = [
        ("ascii", "const parts = ['<p>', 'plain', '</p>']; let s = ''; for (const p of parts) s += p; return s;", "<p>plain</p>"),
        ("latin1", "let s = '<p>Caf'; s += '\\u00e9 cr\\u00e8me'; return s + ' \\u00a3' + 5 + '</p>';", "<p>Café crème £5</p>"),
        ("latin1-bytes-that-look-like-utf8", "return '<p>' + '\\u00c3\\u00a9' + '</p>';", "<p>Ã©</p>"),
        ("two-byte", "let s = '<p>'; s += '\\u20ac 9 \\u2014 '; return s + '\\ud83d\\uded2 \\u00e9</p>';", "<p>€ 9 — 🛒 é</p>"),
        ("empty", "return '' + '';", ""),
    ];
    for (id, body, expected) in cases {
        let code = format!("function () {{ {body} }}");
        let code = format!("({code})");
        assert_eq!(render_one(&mut engine, &data, block(id, "custom", Some(&code), "{}")), Ok(expected.to_string()), "{id}");
    }
}

#[test]
fn a_block_sees_its_current_type_config_and_code_on_every_render() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let render = |engine: &mut V8Engine, b: BlockToRender<'_>| render_one(engine, &data, b).unwrap_or_else(|e| panic!("{e:?}"));

    assert!(render(&mut engine, block("b1", "text", None, r#"{"heading":"First"}"#)).contains(">First</h2>"));
    // The same config again, then a new one: each render shows the config it was given.
    assert!(render(&mut engine, block("b1", "text", None, r#"{"heading":"First"}"#)).contains(">First</h2>"));
    assert!(render(&mut engine, block("b1", "text", None, r#"{"heading":"Second"}"#)).contains(">Second</h2>"));
    // Same id, another library type with the same config.
    let hero = render(&mut engine, block("b1", "hero", None, r#"{"heading":"Second"}"#));
    assert!(hero.contains("v-hero") && hero.contains("Second"), "{hero}");
    // Merchant code for the id, then the code removed: the library block renders again.
    let code = "(ctx) => `custom:${ctx.config.heading}:${ctx.block.type}`";
    assert_eq!(render(&mut engine, block("b1", "hero", Some(code), r#"{"heading":"Second"}"#)), "custom:Second:hero");
    assert!(render(&mut engine, block("b1", "hero", None, r#"{"heading":"Third"}"#)).contains("Third"));
    // A block id shared by two pages' blocks with different configs alternates correctly.
    for heading in ["A", "B", "A"] {
        let config = format!(r#"{{"heading":"{heading}"}}"#);
        assert!(render(&mut engine, block("shared", "text", None, &config)).contains(&format!(">{heading}</h2>")));
    }
}

#[test]
fn arguments_are_bound_by_name_or_position() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let code = "const f = (cart, config, shop) => `${cart.count}|${config.x}|${shop.name}`;";
    assert_eq!(render_one(&mut engine, &data, block("a", "custom", Some(code), r#"{"x":7}"#)), Ok("2|7|Acme & Co".into()));
    let code = "function (a, b, c, d) { return [a.name, b.length, typeof c.escapeHtml, d.block.id, d.device, d.product.id, d.recentlyViewed.length].join('|'); }";
    let code = format!("({code})");
    assert_eq!(render_one(&mut engine, &data, block("b", "custom", Some(&code), "{}")), Ok("Acme & Co|3|function|b|desktop|p1|2".into()));
}

#[test]
fn limits_fail_one_block_and_the_rest_render() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    // 300 ms per block: long enough for the heap bomb to reach 16 MB on a loaded debug build.
    let limits = RenderLimits { heap_mb: 16, block_cpu_ms: 300, page_cpu_ms: 10_000, ..RenderLimits::default() };
    let ok = "function f(storefront) { return 'ok ' + storefront.name; }";
    let blocks = [
        block("a", "custom", Some(ok), "{}"),
        block("loop", "custom", Some("function f() { while (true) {} }"), "{}"),
        block("b", "custom", Some(ok), "{}"),
        block("bomb", "custom", Some("function f() { const a = []; while (true) a.push(new Array(1000000).fill(a.length)); }"), "{}"),
        block("c", "custom", Some(ok), "{}"),
        block("big", "custom", Some("function f() { return 'x'.repeat(10 * 1024 * 1024); }"), "{}"),
        block("throw", "custom", Some("function f() { throw new Error('boom'); }"), "{}"),
        block("num", "custom", Some("function f() { return 42; }"), "{}"),
        block("d", "custom", Some(ok), "{}"),
    ];
    let out = engine.render(&data, &ctx(), &blocks, &limits);
    let ok_html = Ok("ok Acme & Co".to_string());
    assert_eq!(out[0], ok_html);
    assert_eq!(out[1], Err(BlockFailure::Timeout));
    assert_eq!(out[2], ok_html);
    assert_eq!(out[3], Err(BlockFailure::HeapLimit));
    assert_eq!(out[4], ok_html);
    assert_eq!(out[5], Err(BlockFailure::OutputTooLarge));
    assert_eq!(out[6], Err(BlockFailure::Error("Error: boom (line 2)".into())));
    assert_eq!(out[7], Err(BlockFailure::Error("block returned number instead of a string".into())));
    assert_eq!(out[8], ok_html);
    // The next render on the same engine works.
    assert_eq!(engine.render(&data, &ctx(), &blocks[..1], &limits)[0], ok_html);
}

#[test]
fn heap_bomb_with_default_heap_does_not_kill_the_process() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let limits = RenderLimits { block_cpu_ms: 10_000, page_cpu_ms: 20_000, ..RenderLimits::default() };
    let bomb = "function f() { const a = []; while (true) a.push(new Array(100000).fill('x' + a.length)); }";
    let out = engine.render(
        &data,
        &ctx(),
        &[block("bomb", "custom", Some(bomb), "{}"), block("t", "text", None, r#"{"body":"after"}"#)],
        &limits,
    );
    assert_eq!(out[0], Err(BlockFailure::HeapLimit));
    assert!(out[1].as_ref().is_ok_and(|h| h.contains("<p>after</p>")), "{:?}", out[1]);
}

#[test]
fn page_budget_skips_remaining_blocks() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let limits = RenderLimits { block_cpu_ms: 200, page_cpu_ms: 100, ..RenderLimits::default() };
    let out = engine.render(
        &data,
        &ctx(),
        &[block("loop", "custom", Some("function f() { for (;;) {} }"), "{}"), block("t", "text", None, "{}")],
        &limits,
    );
    assert_eq!(out, vec![Err(BlockFailure::Timeout), Err(BlockFailure::Skipped)]);
}

#[test]
fn a_first_block_is_not_charged_for_its_isolate_or_the_catalog() {
    // A catalog near the largest a store may have (`max_snapshot_bytes`): making the isolate
    // and loading it take more than a block's default 50 ms, which is the engine's work, under
    // the page budget. The block pays for its own code only, a fifth of its budget here.
    let products = (0..5_000).map(|i| product(&format!("p{i}"), &format!("Product {i} {}", "x".repeat(400)), 1000 + i, Some(i))).collect();
    let data = store(1, products);
    let limits = RenderLimits::default();
    let busy = "function f(products) { let s = 0; for (let i = 0; i < 4e5; i++) { s += i % 7; } return `<p>${products.length} ${s}</p>`; }";
    let mut engine = V8Engine::new();
    let out = engine.render(&data, &ctx(), &[block("busy", "custom", Some(busy), "{}")], &limits);
    assert!(out[0].as_ref().is_ok_and(|html| html.contains("<p>5000 ")), "{:?}", out[0]);
    // A block's own code is still held to its budget on a first render.
    let mut engine = V8Engine::new();
    let out = engine.render(&data, &ctx(), &[block("loop", "custom", Some("function f() { for (;;) {} }"), "{}")], &limits);
    assert_eq!(out, vec![Err(BlockFailure::Timeout)]);
}

#[test]
fn code_generation_from_strings_is_refused_at_run_time() {
    let mut engine = V8Engine::with_options(EngineOptions { validate: false, ..EngineOptions::default() });
    let data = demo_store();
    for code in [
        "function f() { return eval('1 + 1'); }",
        "function f() { return new Function('return 1')(); }",
        "function f(h) { return h.constructor.constructor('return 1')(); }",
    ] {
        match render_one(&mut engine, &data, block("e", "custom", Some(code), "{}")) {
            Err(BlockFailure::Error(message)) => assert!(message.contains("Code generation from strings disallowed"), "{code}: {message}"),
            other => panic!("{code}: {other:?}"),
        }
    }
    // With validation on, the engine refuses the code before running it.
    let mut engine = V8Engine::new();
    match render_one(&mut engine, &data, block("e", "custom", Some("function f() { return eval('1'); }"), "{}")) {
        Err(BlockFailure::Error(message)) => assert_eq!(message, "invalid block: no-eval at 1:23: `eval` is not allowed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sandbox_has_no_host_apis_and_frozen_helpers() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    // The validator refuses these names; the isolate does not have them either.
    let probe = "function f(helpers, storefront) { return [typeof WebAssembly, typeof fetch, typeof setTimeout, typeof __vitrina, typeof SharedArrayBuffer, typeof Atomics, Object.isFrozen(helpers), Object.isFrozen(storefront.theme)].join(','); }";
    let mut unchecked = V8Engine::with_options(EngineOptions { validate: false, ..EngineOptions::default() });
    assert_eq!(
        render_one(&mut unchecked, &data, block("p", "custom", Some(probe), "{}")),
        Ok("undefined,undefined,undefined,undefined,undefined,undefined,true,true".into())
    );
    let poison = "function f(helpers) { 'use strict'; helpers.escapeHtml = () => 'pwned'; return 'x'; }";
    assert!(matches!(render_one(&mut engine, &data, block("q", "custom", Some(poison), "{}")), Err(BlockFailure::Error(_))));
    assert_eq!(
        render_one(&mut engine, &data, block("r", "text", None, r#"{"body":"<b>"}"#)),
        Ok("<section class=\"v-section v-text\"><div class=\"v-text__body\"><p>&lt;b&gt;</p></div></section>".into())
    );
}

#[test]
fn compiled_code_cache_is_keyed_by_version() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let v1 = BlockToRender { id: "c", block_type: "custom", code: Some("() => 'one'"), code_version: 1, config_json: "{}" };
    let v2 = BlockToRender { code: Some("() => 'two'"), code_version: 2, ..v1 };
    assert_eq!(render_one(&mut engine, &data, v1), Ok("one".into()));
    assert_eq!(render_one(&mut engine, &data, v1), Ok("one".into()));
    assert_eq!(render_one(&mut engine, &data, v2), Ok("two".into()));
    let stats = engine.stats();
    assert_eq!((stats.compile_misses, stats.compile_hits, stats.isolates_created), (2, 1, 1));
}

#[test]
fn data_reloads_when_the_version_changes() {
    let mut engine = V8Engine::new();
    let count = "function f(products) { return String(products.length); }";
    assert_eq!(render_one(&mut engine, &demo_store(), block("n", "custom", Some(count), "{}")), Ok("3".into()));
    assert_eq!(
        render_one(&mut engine, &store(2, vec![product("z", "Z", 1, None)]), block("n", "custom", Some(count), "{}")),
        Ok("1".into())
    );
}

#[test]
fn no_snapshot_engine_renders_the_same() {
    let data = demo_store();
    let b = block("t", "hero", None, "{}");
    let with = render_one(&mut V8Engine::new(), &data, b);
    let without = render_one(&mut V8Engine::new_without_snapshot(), &data, b);
    assert!(with.is_ok());
    assert_eq!(with, without);
}

#[test]
fn engines_can_be_dropped_in_any_order() {
    let data = demo_store();
    let mut engines: Vec<V8Engine> = (0..3).map(|_| V8Engine::new()).collect();
    for engine in &mut engines {
        assert!(render_one(engine, &data, block("t", "text", None, "{}")).is_ok());
    }
    engines.remove(0);
    assert!(render_one(&mut engines[1], &data, block("t", "text", None, "{}")).is_ok());
    drop(engines);
}

fn rules(code: &str) -> Vec<(String, u32, u32)> {
    validate_block(code).errors.into_iter().map(|d| (d.rule.to_string(), d.line, d.column)).collect()
}

#[test]
fn validation_rejects_forbidden_constructs_with_positions() {
    let wrap = |body: &str| format!("function f(ctx) {{\n  {body}\n}}");
    let cases: &[(&str, &str, u32)] = &[
        ("return eval('1');", "no-eval", 10),
        ("return Function('x');", "no-function-constructor", 10),
        ("return new Function('x');", "no-function-constructor", 14),
        ("return require('fs');", "no-import", 10),
        ("return import('x');", "no-import", 10),
        ("with (ctx) { return a; }", "no-with", 3),
        ("return globalThis;", "no-globalthis", 10),
        ("return ctx.__proto__;", "no-proto", 14),
        ("return ctx['__proto__'];", "no-proto", 14),
        ("return ({ __proto__: null });", "no-proto", 13),
        ("return ctx.constructor;", "no-constructor-chain", 14),
        ("return ctx['constr' + 'uctor'];", "no-constructor-chain", 14),
        ("return (() => 1).constructor;", "no-constructor-chain", 20),
        ("return this;", "no-this", 10),
        ("return typeof WebAssembly;", "no-wasm", 17),
        ("return Atomics;", "no-atomics", 10),
    ];
    for (body, rule, column) in cases {
        assert_eq!(rules(&wrap(body)), vec![(rule.to_string(), 2, *column)], "{body}");
    }
    // Each step of a chain is its own finding.
    assert_eq!(
        rules(&wrap("return ctx['constructor'][\"constructor\"];")),
        vec![("no-constructor-chain".to_string(), 2, 14), ("no-constructor-chain".to_string(), 2, 29)]
    );
    assert_eq!(rules("import x from 'y';\nfunction f() {}"), vec![("no-import".to_string(), 1, 1), ("single-function".to_string(), 1, 1)]);
    assert_eq!(rules("function f() {}\nfunction g() {}"), vec![("single-function".to_string(), 2, 1)]);
    assert_eq!(rules("const x = 1;"), vec![("single-function".to_string(), 1, 1)]);
    assert_eq!(rules(""), vec![("single-function".to_string(), 1, 1)]);
    let syntax = validate_block("function f() {\n  return (;\n}");
    assert_eq!(syntax.errors.len(), 1);
    assert_eq!((syntax.errors[0].rule, syntax.errors[0].line, syntax.errors[0].column), ("syntax", 2, 11));
    assert!(validate_block(SEED_GRID).is_ok() && validate_block(SEED_HERO).is_ok());
    let json = serde_json::to_value(validate_block("eval")).expect("serialise");
    assert_eq!(json["errors"][0]["rule"], "no-eval");
    assert_eq!(json["errors"][0]["line"], 1);
}

#[test]
fn default_library_passes_validation() {
    for (block_type, source) in vitrina::engine::js::DEFAULT_BLOCKS {
        let validation = validate_block(source);
        assert!(validation.errors.is_empty(), "{block_type}: {validation:?}");
    }
}

#[test]
fn a_released_isolate_serves_the_next_engine_of_its_store_in_a_fresh_context() {
    let data = demo_store();
    let unchecked = || V8Engine::with_options(EngineOptions { validate: false, ..EngineOptions::default() });
    // Leaves state where a careless reuse would let the next actor see it: a global, a
    // patched built-in prototype (built-ins are frozen: the patch does not even hold for the
    // next render of the same actor).
    let leaky = "function f(ctx) { const seen = String(globalThis.previous) + ',' + typeof [].patched; \
                 globalThis.previous = ctx.cart.count; Array.prototype.patched = 1; return seen; }";
    let fresh = Ok("undefined,undefined".to_string());

    let mut first = unchecked().with_store("s1");
    assert_eq!(render_one(&mut first, &data, block("l", "custom", Some(leaky), "{}")), fresh);
    assert_eq!(render_one(&mut first, &data, block("l", "custom", Some(leaky), "{}")), Ok("2,undefined".into()));
    drop(first);
    assert_eq!(V8Engine::spares_on_this_thread(), 1);

    let mut second = unchecked().with_store("s1");
    assert_eq!(render_one(&mut second, &data, block("l", "custom", Some(leaky), "{}")), fresh);
    assert_eq!((second.stats().isolates_reused, second.stats().isolates_created), (1, 0));
    assert_eq!(V8Engine::spares_on_this_thread(), 0);
    drop(second);

    // Never across stores.
    let mut other_store = unchecked().with_store("s2");
    assert_eq!(render_one(&mut other_store, &data, block("l", "custom", Some(leaky), "{}")), fresh);
    assert_eq!((other_store.stats().isolates_reused, other_store.stats().isolates_created), (0, 1));
    drop(other_store);
    assert_eq!(V8Engine::spares_on_this_thread(), 2);

    // An isolate whose block was terminated is deleted, not kept.
    let mut broken = unchecked().with_store("s1");
    let limits = RenderLimits { block_cpu_ms: 100, ..relaxed() };
    let out = broken.render(&data, &ctx(), &[block("loop", "custom", Some("function f() { for (;;) {} }"), "{}")], &limits);
    assert_eq!(out, vec![Err(BlockFailure::Timeout)]);
    assert_eq!(broken.stats().isolates_reused, 1);
    drop(broken);
    assert_eq!(V8Engine::spares_on_this_thread(), 1, "only the other store's spare is left");

    // Engines without a store neither take nor leave spares.
    let mut plain = V8Engine::new();
    assert_eq!(render_one(&mut plain, &data, block("l", "custom", Some("() => 'x'"), "{}")), Ok("x".into()));
    assert_eq!(plain.stats().isolates_created, 1);
    drop(plain);
    assert_eq!(V8Engine::spares_on_this_thread(), 1);
}

#[test]
fn format_date_gives_the_same_answer_for_repeated_inputs_and_reads_a_dates_own_time() {
    let data = demo_store();
    let mut engine = V8Engine::with_options(EngineOptions { validate: false, ..EngineOptions::default() });
    // Each input twice: the second answer comes from the per-context memo and must match the
    // first. A Date whose getTime lies is formatted by its real time; a string of epoch
    // milliseconds is not a date, even after the same number was formatted.
    let code = "function f(storefront, products, helpers) { \
        const ms = Date.UTC(2024, 4, 1); const liar = new Date(ms); liar.getTime = () => 0; \
        const inputs = [['2024-05-01'], [ms, 'iso'], [String(ms)], [liar, 'iso'], [0, 'iso'], [ms, 'short', 'de-DE'], [null], ['not a date']]; \
        return inputs.map((args) => helpers.formatDate(...args) + '=' + helpers.formatDate(...args)).join('|'); }";
    let expected =
        "May 1, 2024=May 1, 2024|2024-05-01=2024-05-01|=|2024-05-01=2024-05-01|1970-01-01=1970-01-01|1. Mai 2024=1. Mai 2024|=|=";
    assert_eq!(render_one(&mut engine, &data, block("d", "custom", Some(code), "{}")), Ok(expected.to_string()));
}

#[test]
fn product_cards_follow_the_store_version_and_a_blocks_own_objects() {
    let mut engine = V8Engine::with_options(EngineOptions { validate: false, ..EngineOptions::default() });
    let grid = block("g", "product-grid", None, r#"{"limit":1}"#);
    let first = render_one(&mut engine, &demo_store(), grid).expect("grid");
    assert!(first.contains("$19.99"), "{first}");
    assert_eq!(render_one(&mut engine, &demo_store(), grid), Ok(first.clone()), "same version, same card");
    // A new store version with another price for the same product: the card follows it.
    let repriced = store(2, vec![product("p1", "Mug", 2450, Some(5))]);
    let second = render_one(&mut engine, &repriced, grid).expect("grid");
    assert!(second.contains("$24.50") && !second.contains("$19.99"), "{second}");
    // Another locale gets its own card.
    let ctx_de = ctx().replace(r#""locale":"en-US""#, r#""locale":"de-DE""#);
    let german = engine.render(&repriced, &ctx_de, &[grid], &relaxed()).remove(0).expect("grid");
    assert!(german.contains("24,50"), "{german}");
    // A block's own object, changed between calls, is rendered from what it holds each time.
    let own = "function f(storefront, products, helpers) { \
        const p = Object.assign({}, products[0]); const a = helpers.productCard(p, 'en-US'); \
        p.price = 1; p.name = 'Changed'; const b = helpers.productCard(p, 'en-US'); \
        return [a.includes('$24.50'), b.includes('$1.00'), b.includes('Changed')].join(','); }";
    assert_eq!(render_one(&mut engine, &repriced, block("o", "custom", Some(own), "{}")), Ok("true,true,true".into()));
}

#[test]
fn each_render_sees_its_own_ctx_when_renders_alternate() {
    let mut engine = V8Engine::new();
    let data = demo_store();
    let count = "function f(ctx) { return ctx.cart.count + ':' + ctx.recentlyViewed.map((p) => p.id).join(','); }";
    let b = block("c", "custom", Some(count), "{}");
    let other = ctx().replace(r#""count":2"#, r#""count":7"#).replace(r#"["p3","missing","p1"]"#, r#"["p2"]"#);
    for _ in 0..2 {
        assert_eq!(engine.render(&data, &ctx(), &[b], &relaxed()).remove(0), Ok("2:p3,p1".into()));
        assert_eq!(engine.render(&data, &other, &[b], &relaxed()).remove(0), Ok("7:p2".into()));
    }
    // The same ctx against a new store version resolves its products again.
    let renamed = store(2, vec![product("p3", "Cap", 1000, None)]);
    assert_eq!(engine.render(&renamed, &ctx(), &[b], &relaxed()).remove(0), Ok("2:p3".into()));
}
