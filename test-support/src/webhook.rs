//! Generic webhooks as a commerce backend sends them: `Vitrina-Signature: t=<unix>,v1=<hex>`,
//! an HMAC-SHA256 of `"{t}.{body}"` with the store's webhook secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::TestNode;

/// The `Vitrina-Signature` header value for `body` signed with `secret` at unix time `t`.
pub fn generic_signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Seconds since the Unix epoch, as a sender stamps a webhook.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

impl TestNode {
    /// POSTs a generic webhook for `store` to this node, signed with `secret` at unix time `t`.
    pub async fn generic_webhook(&self, store: &str, secret: &str, t: i64, body: &str) -> reqwest::Response {
        self.plain()
            .post(format!("http://{}/webhooks/generic", self.addr))
            .header("content-type", "application/json")
            .header("vitrina-store", store)
            .header("vitrina-signature", generic_signature(secret, t, body))
            .body(body.to_string())
            .send()
            .await
            .expect("webhook sent")
    }
}
