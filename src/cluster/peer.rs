//! Calls from this node to another: signed with the cluster secret (`auth`), over one pooled
//! HTTP client shared by hand-offs, store snapshots, catalog copies and forwarded requests.

use std::time::Duration;

use serde::Serialize;

use super::auth;
use super::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster call to {0} failed: {1}")]
    Call(String, String),
    #[error("{0}")]
    Refused(String),
}

pub struct Peers {
    id: NodeId,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl Peers {
    pub fn new(id: NodeId, secret: Vec<u8>) -> anyhow::Result<Peers> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(20))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Peers { id, secret, client })
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A signed internal call to the node at `addr`.
    pub async fn call(&self, addr: &str, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<reqwest::Response, ClusterError> {
        let (ts, sig) = auth::sign(&self.secret, method.as_str(), path, &body);
        self.client
            .request(method, format!("http://{addr}{path}"))
            .header(auth::NODE_HEADER, self.id.as_str())
            .header(auth::TS_HEADER, ts)
            .header(auth::AUTH_HEADER, sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ClusterError::Call(addr.to_string(), e.to_string()))
    }

    /// A signed call whose JSON answer is `T`; a non-2xx answer is `Refused` with its body.
    pub async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClusterError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let res = self.call(addr, method, path, bytes).await?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(ClusterError::Refused(format!("{addr}{path} answered {status}: {text}")));
        }
        res.json().await.map_err(|e| ClusterError::Call(addr.to_string(), e.to_string()))
    }
}
