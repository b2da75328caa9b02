//! Graceful shutdown (issue 21, item 4): SIGTERM closes every actor's file and exits 0 within
//! the deadline, and a restart finds everything acknowledged.

use std::time::Duration;

use reqwest::StatusCode;
use test_support::*;

/// Non-empty write-ahead logs under `dir`: what a process left unmerged into its databases.
fn wal_files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with("-wal") && entry.metadata().map(|m| m.len() > 0).unwrap_or(false) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn sigterm_closes_every_actor_and_exits_zero() {
    let mut node = TestNode::start_with(&[("VITRINA_HTTP__SHUTDOWN_DEADLINE_SECS", "10")]);
    node.seed_store("shop", "Shop").await;
    let shopper = node.shopper("shop");
    assert_eq!(shopper.add_to_cart("mug", 2).await.status, StatusCode::CREATED);
    assert!(!wal_files(&node.data_dir).is_empty(), "a live actor keeps its WAL");

    let status = node.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "exit status {status:?}");
    assert_eq!(wal_files(&node.data_dir), Vec::<String>::new(), "every file was checkpointed and closed");

    let node = node.start_again();
    assert_eq!(shopper.cart().await["count"], 2, "the acknowledged add is there after the restart");
    drop(node);
}
