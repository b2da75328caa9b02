//! A client of etcd's JSON gateway (`/v3/...` on etcd's client port, part of etcd since 3.3).
//!
//! Chosen over a gRPC crate because every Rust etcd client generates code with `protoc` at
//! build time, and a plain `cargo build` must need nothing but the toolchain. The gateway maps
//! the gRPC API one to one: keys and values are base64, 64-bit numbers are JSON strings, and
//! fields at their default (0, false, empty) are left out of answers.
//!
//! Several endpoints: a call that cannot reach one (connection refused, timeout, 5xx) is tried
//! on the next, and the client stays on the endpoint that answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No endpoint answered (every one refused, timed out or was unavailable).
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// An endpoint answered with an error etcd reports (bad request, lease not found, ...).
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// A watch's start revision was compacted away: the caller must read the state afresh.
    #[error("etcd compacted revisions up to {0}")]
    Compacted(u64),
}

pub type GatewayResult<T> = Result<T, GatewayError>;

/// 64-bit numbers come as JSON strings (and sometimes as numbers); absent means 0.
fn num<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::String(s) => s.parse::<i64>().map(|n| n as u64).map_err(serde::de::Error::custom),
        Value::Number(n) => n.as_i64().map(|n| n as u64).or(n.as_u64()).ok_or_else(|| serde::de::Error::custom("bad number")),
        Value::Null => Ok(0),
        _ => Err(serde::de::Error::custom(format!("expected a number, got {v}"))),
    }
}

fn b64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
}

fn enc(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The end of the range of every key starting with `prefix` (etcd's `WithPrefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff (or empty): the range runs to the end of the keyspace.
    vec![0]
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "num")]
    pub revision: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(default, deserialize_with = "b64")]
    pub value: Vec<u8>,
    #[serde(default, deserialize_with = "num")]
    pub create_revision: u64,
    #[serde(default, deserialize_with = "num")]
    pub mod_revision: u64,
    #[serde(default, deserialize_with = "num")]
    pub lease: u64,
}

impl KeyValue {
    pub fn key_str(&self) -> &str {
        std::str::from_utf8(&self.key).unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
}

/// One comparison of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's create revision (0: the key does not exist).
    CreateRevision(Vec<u8>, u64),
    /// The key's value.
    Value(Vec<u8>, Vec<u8>),
    /// The key's lease.
    Lease(Vec<u8>, u64),
    /// The key's last modification (0: the key does not exist).
    ModRevision(Vec<u8>, u64),
}

impl Compare {
    fn to_json(&self) -> Value {
        match self {
            Compare::CreateRevision(k, rev) => {
                json!({"key": enc(k), "target": "CREATE", "result": "EQUAL", "create_revision": rev.to_string()})
            }
            Compare::Value(k, v) => json!({"key": enc(k), "target": "VALUE", "result": "EQUAL", "value": enc(v)}),
            Compare::Lease(k, lease) => json!({"key": enc(k), "target": "LEASE", "result": "EQUAL", "lease": lease.to_string()}),
            Compare::ModRevision(k, rev) => {
                json!({"key": enc(k), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
            }
        }
    }
}

/// One operation of a transaction's branch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put `value` at `key`, on `lease` (0: none).
    Put(Vec<u8>, Vec<u8>, u64),
    Delete(Vec<u8>),
    Get(Vec<u8>),
}

impl Op {
    fn to_json(&self) -> Value {
        match self {
            Op::Put(k, v, 0) => json!({"request_put": {"key": enc(k), "value": enc(v)}}),
            Op::Put(k, v, lease) => json!({"request_put": {"key": enc(k), "value": enc(v), "lease": lease.to_string()}}),
            Op::Delete(k) => json!({"request_delete_range": {"key": enc(k)}}),
            Op::Get(k) => json!({"request_range": {"key": enc(k)}}),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<Value>,
}

impl TxnResponse {
    /// The key-values the `Get` operations of the branch that ran returned, in order.
    pub fn ranges(&self) -> Vec<RangeResponse> {
        self.responses
            .iter()
            .filter_map(|r| r.get("response_range"))
            .filter_map(|r| serde_json::from_value::<RangeResponse>(r.clone()).ok())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    kv: KeyValue,
}

#[derive(Debug, Deserialize)]
struct RawWatchResult {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    events: Vec<RawEvent>,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "num")]
    compact_revision: u64,
    #[serde(default)]
    cancel_reason: Option<String>,
}

/// What one message of a watch stream says.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The store's revision when the batch was sent (a batch may have no events: progress).
    pub revision: u64,
    pub events: Vec<Event>,
}

/// A watch stream. When it fails (the endpoint died, the stream was cut), open a new one from
/// the revision after the last one seen: etcd replays what happened in between.
pub struct Watch {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Watch {
    /// The next batch of events; `Err` when the stream ended or broke.
    pub async fn next(&mut self) -> GatewayResult<WatchBatch> {
        loop {
            if let Some(batch) = self.parse_buffered()? {
                if let Some(batch) = batch {
                    return Ok(batch);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Err(GatewayError::Unreachable("watch stream ended".into())),
                Err(e) => return Err(GatewayError::Unreachable(format!("watch stream broke: {e}"))),
            }
        }
    }

    /// `Ok(None)`: no whole message buffered; `Ok(Some(None))`: a message without news (the
    /// creation acknowledgement); `Ok(Some(Some(batch)))`: a batch.
    fn parse_buffered(&mut self) -> GatewayResult<Option<Option<WatchBatch>>> {
        let mut stream = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
        let message = match stream.next() {
            None => return Ok(None),
            Some(Err(e)) if e.is_eof() => return Ok(None),
            Some(Err(e)) => return Err(GatewayError::Refused(format!("bad watch message: {e}"))),
            Some(Ok(v)) => v,
        };
        let used = stream.byte_offset();
        self.buffer.drain(..used);
        if let Some(error) = message.get("error") {
            return Err(GatewayError::Unreachable(format!("watch failed: {error}")));
        }
        let raw: RawWatchResult = serde_json::from_value(message.get("result").cloned().unwrap_or(Value::Null))
            .map_err(|e| GatewayError::Refused(format!("bad watch message: {e}")))?;
        if raw.compact_revision > 0 {
            return Err(GatewayError::Compacted(raw.compact_revision));
        }
        if raw.canceled {
            return Err(GatewayError::Unreachable(format!("watch canceled: {}", raw.cancel_reason.unwrap_or_default())));
        }
        // The creation acknowledgement carries the store's current revision, not the last one
        // the watch delivered: not a resume point.
        if raw.created || (raw.events.is_empty() && raw.header.revision == 0) {
            return Ok(Some(None));
        }
        let events = raw
            .events
            .into_iter()
            .map(|e| Event { kind: if e.kind.as_deref() == Some("DELETE") { EventKind::Delete } else { EventKind::Put }, kv: e.kv })
            .collect();
        Ok(Some(Some(WatchBatch { revision: raw.header.revision, events })))
    }
}

pub struct Gateway {
    endpoints: Vec<String>,
    current: AtomicUsize,
    http: reqwest::Client,
    /// A client without a total timeout, for watch streams.
    streaming: reqwest::Client,
}

impl Gateway {
    /// `endpoints`: `host:port` or `http://host:port`, at least one. `timeout` bounds each
    /// call on one endpoint.
    pub fn new(endpoints: &[String], timeout: Duration) -> anyhow::Result<Gateway> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .map(|e| if e.contains("://") { e } else { format!("http://{e}") })
            .collect();
        anyhow::ensure!(!endpoints.is_empty(), "no etcd endpoint given");
        let http = reqwest::Client::builder().connect_timeout(timeout.min(Duration::from_secs(1))).timeout(timeout).build()?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .tcp_keepalive(Duration::from_secs(2))
            .build()?;
        Ok(Gateway { endpoints, current: AtomicUsize::new(0), http, streaming })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POSTs `body` to `path` on the current endpoint, moving on to the next ones while an
    /// endpoint cannot answer. Returns the response of the endpoint that did.
    async fn send(&self, client: &reqwest::Client, path: &str, body: &Value) -> GatewayResult<reqwest::Response> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..self.endpoints.len() {
            let index = (start + i) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[index]);
            match client.post(&url).json(body).send().await {
                Ok(res) if res.status().is_server_error() && res.status() != reqwest::StatusCode::INTERNAL_SERVER_ERROR => {
                    last = format!("{url}: {}", res.status());
                }
                Ok(res) if res.status() == reqwest::StatusCode::INTERNAL_SERVER_ERROR => {
                    // The gateway maps gRPC errors to statuses; "no leader" and timeouts come as
                    // 500/503 with a message: those are the member's, another may serve.
                    let text = res.text().await.unwrap_or_default();
                    if is_member_unavailable(&text) {
                        last = format!("{url}: {text}");
                        continue;
                    }
                    return Err(GatewayError::Refused(text));
                }
                Ok(res) => {
                    if index != start {
                        self.current.store(index, Ordering::Relaxed);
                    }
                    return Ok(res);
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        // Start from the next endpoint next time.
        self.current.store((start + 1) % self.endpoints.len(), Ordering::Relaxed);
        Err(GatewayError::Unreachable(last))
    }

    async fn call(&self, path: &str, body: Value) -> GatewayResult<Value> {
        let res = self.send(&self.http, path, &body).await?;
        let status = res.status();
        let text = res.text().await.map_err(|e| GatewayError::Unreachable(e.to_string()))?;
        if !status.is_success() {
            return Err(GatewayError::Refused(format!("{path}: {status}: {text}")));
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| GatewayError::Refused(format!("{path}: bad answer: {e}")))?;
        if let Some(error) = value.get("error") {
            return Err(GatewayError::Refused(format!("{path}: {error}")));
        }
        Ok(value)
    }

    fn parse<T: serde::de::DeserializeOwned>(path: &str, value: Value) -> GatewayResult<T> {
        serde_json::from_value(value).map_err(|e| GatewayError::Refused(format!("{path}: unexpected answer: {e}")))
    }

    /// The key `key` (or, with `prefix`, every key starting with it).
    pub async fn range(&self, key: &[u8], prefix: bool) -> GatewayResult<RangeResponse> {
        let mut body = json!({"key": enc(key)});
        if prefix {
            body["range_end"] = json!(enc(&prefix_end(key)));
        }
        Self::parse("/v3/kv/range", self.call("/v3/kv/range", body).await?)
    }

    /// Puts `value` at `key` (on `lease` unless 0); returns the revision of the write.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: u64) -> GatewayResult<u64> {
        let mut body = json!({"key": enc(key), "value": enc(value)});
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        let r: RangeResponse = Self::parse("/v3/kv/put", self.call("/v3/kv/put", body).await?)?;
        Ok(r.header.revision)
    }

    /// Deletes `key` (or every key under it, with `prefix`); returns the revision after.
    pub async fn delete(&self, key: &[u8], prefix: bool) -> GatewayResult<u64> {
        let mut body = json!({"key": enc(key)});
        if prefix {
            body["range_end"] = json!(enc(&prefix_end(key)));
        }
        let r: RangeResponse = Self::parse("/v3/kv/deleterange", self.call("/v3/kv/deleterange", body).await?)?;
        Ok(r.header.revision)
    }

    /// If every comparison holds, runs `success`, else `failure`; atomically.
    pub async fn txn(&self, compare: &[Compare], success: &[Op], failure: &[Op]) -> GatewayResult<TxnResponse> {
        let body = json!({
            "compare": compare.iter().map(Compare::to_json).collect::<Vec<_>>(),
            "success": success.iter().map(Op::to_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(Op::to_json).collect::<Vec<_>>(),
        });
        Self::parse("/v3/kv/txn", self.call("/v3/kv/txn", body).await?)
    }

    /// A new lease of `ttl_secs`; returns its id and the TTL etcd granted.
    pub async fn lease_grant(&self, ttl_secs: u64) -> GatewayResult<(u64, u64)> {
        #[derive(Deserialize)]
        struct Granted {
            #[serde(rename = "ID", deserialize_with = "num")]
            id: u64,
            #[serde(rename = "TTL", default, deserialize_with = "num")]
            ttl: u64,
        }
        let g: Granted = Self::parse("/v3/lease/grant", self.call("/v3/lease/grant", json!({"TTL": ttl_secs.to_string()})).await?)?;
        Ok((g.id, g.ttl))
    }

    /// Renews `lease`; returns the TTL it has again, or `None` when it has expired (or never
    /// existed): whatever was on it is gone.
    pub async fn lease_keepalive(&self, lease: u64) -> GatewayResult<Option<u64>> {
        let value = self.call("/v3/lease/keepalive", json!({"ID": lease.to_string()})).await?;
        #[derive(Deserialize)]
        struct Kept {
            #[serde(rename = "TTL", default, deserialize_with = "num")]
            ttl: u64,
        }
        let kept: Kept = Self::parse("/v3/lease/keepalive", value.get("result").cloned().unwrap_or(Value::Null))?;
        Ok((kept.ttl > 0).then_some(kept.ttl))
    }

    /// Ends `lease` now, deleting the keys on it.
    pub async fn lease_revoke(&self, lease: u64) -> GatewayResult<()> {
        match self.call("/v3/lease/revoke", json!({"ID": lease.to_string()})).await {
            Ok(_) => Ok(()),
            // Already gone: what the caller wanted.
            Err(GatewayError::Refused(m)) if m.contains("lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watches every key under `prefix` from `start_revision` (0: from now on).
    pub async fn watch(&self, prefix: &[u8], start_revision: u64) -> GatewayResult<Watch> {
        let mut create = json!({"key": enc(prefix), "range_end": enc(&prefix_end(prefix))});
        if start_revision > 0 {
            create["start_revision"] = json!(start_revision.to_string());
        }
        let body = json!({"create_request": create});
        let res = self.send(&self.streaming, "/v3/watch", &body).await?;
        if !res.status().is_success() {
            return Err(GatewayError::Refused(format!("/v3/watch: {}", res.status())));
        }
        Ok(Watch { response: res, buffer: Vec::new() })
    }
}

/// Errors that say this member cannot serve now (another member may).
fn is_member_unavailable(text: &str) -> bool {
    ["no leader", "timed out", "leader changed", "not capable", "stopped", "too many requests"].iter().any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bump_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"a/b"), b"a/c".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn numbers_come_as_strings_or_numbers_or_not_at_all() {
        let kv: KeyValue = serde_json::from_str(r#"{"key":"Zm9v","create_revision":"7","mod_revision":9}"#).unwrap();
        assert_eq!((kv.key_str(), kv.create_revision, kv.mod_revision, kv.lease), ("foo", 7, 9, 0));
    }
}
