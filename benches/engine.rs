//! Block engine benchmarks: isolate creation with and without the startup snapshot, a demo
//! home page render, and the compiled-code cache. Also prints the RSS cost of a live isolate.
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use vitrina::block_limits::RenderLimits;
use vitrina::config::Settings;
use vitrina::engine::js::V8Engine;
use vitrina::engine::{BlockEngine, BlockToRender, StoreRenderData};

fn demo_store() -> StoreRenderData {
    let products: Vec<_> = (0..24)
        .map(|i| {
            json!({
                "id": format!("p{i}"), "handle": format!("product-{i}"), "name": format!("Product {i}"),
                "title": format!("Product {i}"), "description": "A fine product.\n\nMade with care.",
                "price": 10.0 + i as f64, "priceMinor": 1000 + i * 100, "compareAtPrice": null, "currency": "USD",
                "image": format!("/img/{i}.jpg"), "images": [format!("/img/{i}.jpg")],
                "stock": if i % 7 == 0 { 0 } else { 10 }, "tags": ["new"], "url": format!("/products/product-{i}"),
            })
        })
        .collect();
    let posts: Vec<_> = (0..5)
        .map(|i| {
            json!({"slug": format!("post-{i}"), "title": format!("Post {i}"), "excerpt": "Short", "body": "Body",
                         "publishedAt": "2024-05-01T00:00:00Z", "image": ""})
        })
        .collect();
    let storefront = json!({"id": "s1", "name": "Demo", "tagline": "Everything", "currency": "USD", "locale": "en-US",
                            "theme": {}, "pages": [{"slug": "home", "title": "Home"}], "posts": posts});
    StoreRenderData {
        version: 1,
        storefront_json: Arc::from(storefront.to_string()),
        products_json: Arc::from(serde_json::Value::Array(products).to_string()),
    }
}

fn ctx_json() -> String {
    json!({"cart": {"count": 1, "subtotal": 10.0, "subtotalMinor": 1000, "currency": "USD",
                    "items": [{"productId": "p0", "handle": "product-0", "title": "Product 0", "quantity": 1,
                               "price": 10.0, "priceMinor": 1000, "lineTotal": 10.0, "lineTotalMinor": 1000}]},
           "recentlyViewed": ["p1", "p2", "p3"], "device": "desktop", "userType": "guest", "customer": false,
           "locale": "en-US", "region": "US", "page": {"slug": "home", "title": "Home"}})
    .to_string()
}

fn home_blocks() -> Vec<BlockToRender<'static>> {
    let block = |id, block_type, config_json| BlockToRender { id, block_type, code: None, code_version: 1, config_json };
    vec![
        block("hero", "hero", r#"{"heading":"Welcome"}"#),
        block("grid", "product-grid", r#"{"title":"All","limit":24}"#),
        block("text", "text", r#"{"heading":"About","body":"We sell things.\n\nGood ones."}"#),
        block("blog", "blog-list", r#"{"title":"Journal"}"#),
        block("cart", "cart-summary", "{}"),
        block("rv", "recently-viewed", "{}"),
    ]
}

fn benches(c: &mut Criterion) {
    // The node's V8 flags setting (`v8_flags`, `VITRINA_V8_FLAGS`) applies here too, so flags
    // can be compared on one isolate as well as on a node.
    let settings = Settings::load(Path::new("config/vitrina.toml"), &Default::default()).expect("settings");
    vitrina::engine::init(&settings.v8_flags);
    let limits = RenderLimits::default();
    let data = demo_store();
    let ctx = ctx_json();

    // Build the snapshot outside the measurement.
    V8Engine::new().warm_up(&limits).expect("isolate");

    let mut group = c.benchmark_group("isolate_create");
    group.bench_function("with_snapshot", |b| {
        b.iter(|| {
            let mut engine = V8Engine::new();
            engine.warm_up(&limits).expect("isolate");
            engine
        })
    });
    group.bench_function("without_snapshot", |b| {
        b.iter(|| {
            let mut engine = V8Engine::new_without_snapshot();
            engine.warm_up(&limits).expect("isolate");
            engine
        })
    });
    group.finish();

    // A new actor's first page, engine dropped after it: what W2p costs in the engine. A fresh
    // isolate is created and deleted each time; a store's engine takes the spare the previous
    // iteration left on this thread (fresh context in a kept isolate).
    let blocks = home_blocks();
    let mut group = c.benchmark_group("first_render");
    group.bench_function("fresh_isolate", |b| {
        b.iter(|| {
            let mut engine = V8Engine::new();
            engine.render(&data, &ctx, &blocks, &limits)
        })
    });
    group.bench_function("spare_isolate", |b| {
        b.iter(|| {
            let mut engine = V8Engine::for_store("bench");
            engine.render(&data, &ctx, &blocks, &limits)
        })
    });
    group.finish();

    let mut engine = V8Engine::new();
    let out = engine.render(&data, &ctx, &blocks, &limits);
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    c.bench_function("render_home_page_warm", |b| b.iter(|| engine.render(&data, &ctx, &blocks, &limits)));

    let custom = "function renderProductGrid(products, helpers) { return products.slice(0, 6).map(p => `<h3>${helpers.escapeHtml(p.name)}</h3>`).join(''); }";
    let mut group = c.benchmark_group("compiled_code_cache");
    let mut engine = V8Engine::new();
    let hit = [BlockToRender { id: "c", block_type: "custom", code: Some(custom), code_version: 1, config_json: "{}" }];
    engine.render(&data, &ctx, &hit, &limits);
    group.bench_function("hit", |b| b.iter(|| engine.render(&data, &ctx, &hit, &limits)));
    let mut version = 1u64;
    group.bench_function("miss", |b| {
        b.iter_batched(
            || {
                version += 1;
                [BlockToRender { code_version: version, ..hit[0] }]
            },
            |miss| engine.render(&data, &ctx, &miss, &limits),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    report_rss_per_isolate(&data, &ctx, &limits);
}

fn vm_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// RSS cost of one live isolate: 200 engines on one thread, each with a rendered home page.
fn report_rss_per_isolate(data: &StoreRenderData, ctx: &str, limits: &RenderLimits) {
    const ENGINES: u64 = 200;
    let blocks = home_blocks();
    let before = vm_rss_kb().unwrap_or(0);
    let mut engines = Vec::new();
    for _ in 0..ENGINES {
        let mut engine = V8Engine::new();
        engine.render(data, ctx, &blocks, limits);
        engines.push(engine);
    }
    let after = vm_rss_kb().unwrap_or(0);
    println!(
        "rss_per_live_isolate: {} KiB ({} engines, VmRSS {} KiB -> {} KiB)",
        after.saturating_sub(before) / ENGINES,
        ENGINES,
        before,
        after
    );
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
