//! The demo store in a real browser (Debian's Chromium driven by playwright-core): the cart
//! works with the enhanced forms, with the seed block's `onclick="addToCart(…)"`, and with plain
//! form posts on the cart page. `.ci/run` installs Chromium and the driver; locally the test is
//! skipped with a message when either is missing (it fails under CI).

use std::path::Path;
use std::process::Command;

use test_support::*;

#[test]
fn the_demo_cart_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !Path::new(&chromium).exists() || !driver.exists() {
        if std::env::var_os("CI").is_some() {
            panic!("CI must install chromium and `npm ci --prefix tests/browser` (see .ci/run)");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: install chromium and run `npm ci --prefix tests/browser` for the browser test");
        return;
    }
    let node = TestNode::start_demo();
    let url = format!("http://demo.localhost:{}", node.addr.port());
    let shots = std::env::temp_dir();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/cart.mjs"))
        .arg(&url)
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("cart flow ok"), "browser run failed:\n{stdout}\n{stderr}");
}
