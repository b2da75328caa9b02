//! Ring balance simulation: for clusters of 3 to 1,000 nodes and several virtual-node counts,
//! how evenly keys spread (max/mean keys per node) and how many keys move when one node joins
//! or leaves (ideal: 1/(N+1) and 1/N). Prints a Markdown table.
//!
//! `cargo run --release --bin vitrina-ring-sim -- [keys]`

use vitrina::cluster::Ring;

fn main() {
    let keys: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let keys: Vec<String> = (0..keys).map(|i| format!("shopper:store-{}:{:032x}", i % 50, i as u128 * 0x9e37_79b9_7f4a_7c15)).collect();
    println!("keys: {}\n", keys.len());
    println!("| nodes | vnodes | max/mean keys per node | min/mean | moved on join (ideal) | moved on leave (ideal) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for nodes in [3usize, 10, 30, 100, 300, 1000] {
        for vnodes in [16usize, 64, 128, 256] {
            let names = |n: usize| (0..n).map(|i| format!("node-{i}"));
            let ring = Ring::from_nodes(names(nodes), vnodes);
            let joined = Ring::from_nodes(names(nodes + 1), vnodes);
            let left = Ring::from_nodes(names(nodes - 1), vnodes);
            let mut load = std::collections::HashMap::<&str, usize>::new();
            let (mut moved_join, mut moved_leave) = (0usize, 0usize);
            for key in &keys {
                let owner = ring.owner_of_str(key).unwrap_or_default();
                *load.entry(owner).or_default() += 1;
                if joined.owner_of_str(key) != Some(owner) {
                    moved_join += 1;
                }
                if left.owner_of_str(key) != Some(owner) {
                    moved_leave += 1;
                }
            }
            let mean = keys.len() as f64 / nodes as f64;
            let max = load.values().copied().max().unwrap_or(0) as f64;
            let min = if load.len() < nodes { 0.0 } else { load.values().copied().min().unwrap_or(0) as f64 };
            let pct = |n: usize| 100.0 * n as f64 / keys.len() as f64;
            println!(
                "| {nodes} | {vnodes} | {:.2} | {:.2} | {:.2}% ({:.2}%) | {:.2}% ({:.2}%) |",
                max / mean,
                min / mean,
                pct(moved_join),
                100.0 / (nodes + 1) as f64,
                pct(moved_leave),
                100.0 / nodes as f64
            );
        }
    }
}
