//! F1: CPU fairness between stores. A victim store's durable add-to-cart (W3's requests) is
//! measured alone, then again while a hostile store is hammered at full rate with pages of 20
//! looping blocks: first visits to one page (the same inputs every time) and searches with a
//! new query each time (new inputs: every request would run the loops again). Target: the
//! victim keeps ≥ 80 % of its solo throughput with no error. A second hostile store serves a
//! block that fills a huge array, which holds a render thread past its CPU budget (the builtin
//! does not look at V8's termination request), at the same open-loop rate: a row of its own.

use std::sync::Arc;

use hyper::Method;
use serde_json::json;

use crate::client::{Answer, Conn};
use crate::driver::{self, MakeRequest};
use crate::report::Row;
use crate::setup;
use crate::{closed_mode, Common, NodeRef};

const LOOP: &str = "function spin() { while (true) {} }";
const FILL: &str = "function render(ctx) { new Array(2 ** 26).fill(0); return '<p>filled</p>'; }";

/// Publishes the pages `slugs` of the hostile store, each of `count` blocks of `code`.
async fn publish_hostile(node: &NodeRef, store: &str, slugs: &[&str], code: &str, count: usize) -> anyhow::Result<()> {
    let admin = node.admin()?;
    let mut conn = Conn::new(admin.addr);
    let blocks: Vec<_> = (0..count).map(|_| json!({"type": "custom", "code": code})).collect();
    for slug in slugs {
        let page = json!({"title": "Hostile", "blocks": blocks});
        setup::admin(&mut conn, &admin, &node.token, Method::PUT, &format!("/stores/{store}/pages/{slug}"), Some(&page)).await?;
        setup::admin(&mut conn, &admin, &node.token, Method::POST, &format!("/stores/{store}/pages/{slug}/publish"), None).await?;
    }
    Ok(())
}

fn page_served(a: &Answer) -> bool {
    a.status == 200
}

/// Rows: the victim alone, the victim beside the hostile store (target ≥ 0.8 × alone, 0 errors),
/// and the hostile store's own answers (pages served; errors = 503 `render_capacity`).
pub async fn f1(common: &Common, node: &NodeRef) -> anyhow::Result<Vec<Row>> {
    let victim = setup::seed_store(&node.admin()?, &node.token, "f1v").await?;
    let hostile = setup::seed_store(&node.admin()?, &node.token, "f1h").await?;
    publish_hostile(node, &hostile.id, &["loop", "search"], LOOP, 20).await?;
    let filler = setup::seed_store(&node.admin()?, &node.token, "f1f").await?;
    publish_hostile(node, &filler.id, &["fill"], FILL, 1).await?;
    let target = node.shop(&victim)?;
    let sids = setup::session_ids("f1", common.shoppers);
    eprintln!("[f1] creating {} shoppers with carts", sids.len());
    setup::create_shoppers(&target, &victim, &sids, false, common.connections).await?;
    let (t, products) = (target.clone(), victim.products.clone());
    let add: MakeRequest = Arc::new(move |i| {
        let n = sids.len() as u64;
        let product = &products[((i / n) as usize) % products.len()];
        setup::add_to_cart_request(&t, &sids[(i % n) as usize], product)
    });
    let phase = common.phase();

    eprintln!("[f1] victim alone, closed loop {:?}", phase.duration);
    let solo = driver::run(&target, &phase, add.clone(), |a| a.status == 201, node.pid).await;
    let solo = Row::from_measured("f1-solo", "F1 victim add-to-cart, alone", closed_mode(&phase), &solo);

    let hostile_target = node.shop(&hostile)?;
    let ht = hostile_target.clone();
    let run: u32 = rand::random();
    let hammer: MakeRequest = Arc::new(move |i| {
        let path = if i % 2 == 0 { "/pages/loop".to_string() } else { format!("/search?q=f1-{run:08x}-{i}") };
        setup::page_request(&ht, &path, None)
    });
    let filler_target = node.shop(&filler)?;
    let ft = filler_target.clone();
    let fill: MakeRequest = Arc::new(move |_| setup::page_request(&ft, "/pages/fill", None));
    let open_rate = (solo.throughput_rps * 0.25).max(1.0);
    let loops = "20 looping blocks (page + new searches)";
    let fills = "a block stuck in Array fill (first visits)";
    // The hostile store at a quarter of the victim's solo request rate (each of its requests
    // would run 20 looping blocks: ~1 s of CPU before the render bounds), then as fast as its
    // clients can send (a closed loop: then it is plain request volume that both stores share).
    let mut rows = vec![solo.clone()];
    let variants = [
        ("f1-mixed", Some(open_rate), loops, hostile_target.clone(), hammer.clone()),
        ("f1-mixed-closed", None, loops, hostile_target, hammer),
        ("f1-mixed-fill", Some(open_rate), fills, filler_target, fill),
    ];
    for (id, rate, what, hostile_target, hammer) in variants {
        let hostile_phase = crate::driver::Phase { rate, ..phase.clone() };
        let mode = match rate {
            Some(r) => format!("open loop {r:.0}/s"),
            None => closed_mode(&phase),
        };
        eprintln!("[{id}] victim beside the hostile store ({mode}), closed loop {:?}", phase.duration);
        let (target, add) = (target.clone(), add.clone());
        let attack = tokio::spawn(async move { driver::run(&hostile_target, &hostile_phase, hammer, page_served, None).await });
        let mixed = driver::run(&target, &phase, add, |a| a.status == 201, node.pid).await;
        let attacked = attack.await?;
        let name = format!("F1 victim add-to-cart, hostile store ({what}) at {mode}");
        let mut mixed = Row::from_measured(id, &name, closed_mode(&phase), &mixed).against(Some(&solo), rate.map(|_| 0.8));
        if rate.is_some() {
            mixed.target = format!("{}, 0 errors", mixed.target);
            mixed.meets_target = Some(mixed.meets_target.unwrap_or(false) && mixed.errors == 0);
        }
        let mut hostile_row = Row::from_measured(&format!("{id}-hostile"), &format!("F1 hostile store: {what}"), mode, &attacked);
        hostile_row.notes = format!("errors = 503 (refused); {}", hostile_row.notes);
        rows.push(mixed);
        rows.push(hostile_row);
    }
    Ok(rows)
}
