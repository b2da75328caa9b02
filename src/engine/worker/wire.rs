//! The messages between a render thread and its worker process, and their byte encoding.
//!
//! A frame is a little-endian `u32` length and that many bytes; a message is one frame whose
//! first byte names it. Strings are a `u32` length and UTF-8 bytes. Hand-written rather than
//! serde: every render crosses this pipe twice, the store's catalog JSON (megabytes) is sent
//! as it is instead of escaped into another JSON document, and a worker's answers are checked
//! field by field because a worker runs merchant code and is trusted no more than it.

use std::io::{self, Read, Write};

use crate::block_limits::RenderLimits;
use crate::engine::{BlockFailure, BlockOutcome, BlockToRender};

/// Largest frame either side accepts: a store's catalog JSON is bounded far below this by the
/// store limits; anything larger is a broken or hostile peer.
pub const MAX_FRAME: usize = 512 << 20;

const RENDER: u8 = b'R';
const DROP: u8 = b'X';
const READY: u8 = b'H';
const NEED_DATA: u8 = b'N';
const BLOCK: u8 = b'B';
const DONE: u8 = b'D';

/// One page for an engine in the worker.
#[derive(Debug)]
pub struct RenderRequest<'a> {
    /// The parent's id for the engine; the worker creates one on first use.
    pub engine: u64,
    pub store: &'a str,
    pub version: u64,
    /// `(storefront_json, products_json)` of `version`, sent when the worker may not have them.
    pub data: Option<(&'a str, &'a str)>,
    pub ctx_json: &'a str,
    pub blocks: &'a [BlockToRender<'a>],
    pub limits: RenderLimits,
}

/// What the parent sends.
#[derive(Debug)]
pub enum ToWorker<'a> {
    Render(RenderRequest<'a>),
    /// The actor let go of this engine: its isolate may go.
    Drop {
        engine: u64,
    },
}

/// What a worker answers.
#[derive(Debug, PartialEq)]
pub enum FromWorker {
    /// Sent once, after V8 and the startup snapshot are ready.
    Ready,
    /// The worker lacks the store data of the request's version: send it again with them.
    NeedData,
    /// The outcome of block `index` of the page being rendered, as soon as it is known.
    Block { index: u32, outcome: BlockOutcome },
    /// The page is done; `measured`: the engine's isolate, when it measured it this time;
    /// `prewarmed`, `reused`: isolates the engine took from the worker's pools for it.
    Done { measured: Option<u64>, prewarmed: u32, reused: u32 },
}

/// A message that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed render worker message: {0}")]
pub struct Malformed(&'static str);

pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(payload)?;
    out.flush()
}

pub fn read_frame(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
    }
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload)?;
    Ok(payload)
}

impl ToWorker<'_> {
    /// The message as a whole frame, length first: written as it is, with no copy.
    pub fn frame(&self) -> Vec<u8> {
        let mut e = Encoder(vec![0; 4]);
        self.encode_into(&mut e);
        let len = (e.0.len() - 4) as u32;
        e.0[..4].copy_from_slice(&len.to_le_bytes());
        e.0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        self.encode_into(&mut e);
        e.0
    }

    fn encode_into(&self, e: &mut Encoder) {
        match self {
            ToWorker::Drop { engine } => {
                e.u8(DROP);
                e.u64(*engine);
            }
            ToWorker::Render(r) => {
                e.u8(RENDER);
                e.u64(r.engine);
                e.str(r.store);
                e.u64(r.version);
                match r.data {
                    Some((storefront, products)) => {
                        e.u8(1);
                        e.str(storefront);
                        e.str(products);
                    }
                    None => e.u8(0),
                }
                e.str(r.ctx_json);
                e.u64(r.limits.block_cpu_ms);
                e.u64(r.limits.page_cpu_ms);
                e.u64(r.limits.heap_mb as u64);
                e.u64(r.limits.output_kb as u64);
                e.u32(r.blocks.len() as u32);
                for b in r.blocks {
                    e.str(b.id);
                    e.str(b.block_type);
                    match b.code {
                        Some(code) => {
                            e.u8(1);
                            e.str(code);
                        }
                        None => e.u8(0),
                    }
                    e.u64(b.code_version);
                    e.str(b.config_json);
                }
            }
        }
    }
}

/// A decoded [`ToWorker`] whose strings borrow the frame.
pub enum Request<'a> {
    Render(RenderRequest<'a>),
    Drop { engine: u64 },
}

/// Decodes a parent's message; `blocks` is where the render request's blocks are kept.
pub fn decode_request<'a>(frame: &'a [u8], blocks: &'a mut Vec<BlockToRender<'a>>) -> Result<Request<'a>, Malformed> {
    let mut d = Decoder(frame);
    match d.u8()? {
        DROP => Ok(Request::Drop { engine: d.u64()? }),
        RENDER => {
            let engine = d.u64()?;
            let store = d.str()?;
            let version = d.u64()?;
            let data = match d.u8()? {
                0 => None,
                _ => Some((d.str()?, d.str()?)),
            };
            let ctx_json = d.str()?;
            let limits =
                RenderLimits { block_cpu_ms: d.u64()?, page_cpu_ms: d.u64()?, heap_mb: d.u64()? as usize, output_kb: d.u64()? as usize };
            let count = d.u32()? as usize;
            blocks.clear();
            for _ in 0..count {
                let id = d.str()?;
                let block_type = d.str()?;
                let code = match d.u8()? {
                    0 => None,
                    _ => Some(d.str()?),
                };
                let code_version = d.u64()?;
                let config_json = d.str()?;
                blocks.push(BlockToRender { id, block_type, code, code_version, config_json });
            }
            Ok(Request::Render(RenderRequest { engine, store, version, data, ctx_json, blocks: &blocks[..], limits }))
        }
        _ => Err(Malformed("unknown request")),
    }
}

impl FromWorker {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        match self {
            FromWorker::Ready => e.u8(READY),
            FromWorker::NeedData => e.u8(NEED_DATA),
            FromWorker::Done { measured, prewarmed, reused } => {
                e.u8(DONE);
                e.u64(measured.map_or(0, |m| m.saturating_add(1)));
                e.u32(*prewarmed);
                e.u32(*reused);
            }
            FromWorker::Block { index, outcome } => return block_answer(*index, outcome),
        }
        e.0
    }

    pub fn decode(frame: &[u8]) -> Result<FromWorker, Malformed> {
        let mut d = Decoder(frame);
        let message = match d.u8()? {
            READY => FromWorker::Ready,
            NEED_DATA => FromWorker::NeedData,
            DONE => FromWorker::Done { measured: d.u64()?.checked_sub(1), prewarmed: d.u32()?, reused: d.u32()? },
            BLOCK => {
                let index = d.u32()?;
                let kind = d.u8()?;
                let text = d.str()?.to_string();
                let outcome = match kind {
                    0 => Ok(text),
                    1 => Err(BlockFailure::Timeout),
                    2 => Err(BlockFailure::HeapLimit),
                    3 => Err(BlockFailure::OutputTooLarge),
                    4 => Err(BlockFailure::Error(text)),
                    5 => Err(BlockFailure::Skipped),
                    6 => Err(BlockFailure::Crashed),
                    _ => return Err(Malformed("unknown outcome")),
                };
                FromWorker::Block { index, outcome }
            }
            _ => return Err(Malformed("unknown answer")),
        };
        if !d.0.is_empty() {
            return Err(Malformed("trailing bytes"));
        }
        Ok(message)
    }
}

/// [`FromWorker::Block`] encoded, without owning the outcome.
pub fn block_answer(index: u32, outcome: &BlockOutcome) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u8(BLOCK);
    e.u32(index);
    let (kind, text) = match outcome {
        Ok(html) => (0, html.as_str()),
        Err(BlockFailure::Timeout) => (1, ""),
        Err(BlockFailure::HeapLimit) => (2, ""),
        Err(BlockFailure::OutputTooLarge) => (3, ""),
        Err(BlockFailure::Error(message)) => (4, message.as_str()),
        Err(BlockFailure::Skipped) => (5, ""),
        Err(BlockFailure::Crashed) => (6, ""),
    };
    e.u8(kind);
    e.str(text);
    e.0
}

#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut v = [0u8; 8];
        v.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(v))
    }
    fn str(&mut self) -> Result<&'a str, Malformed> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed("invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_request_decodes_to_what_was_encoded() {
        let blocks = [
            BlockToRender { id: "b1", block_type: "custom", code: Some("function f(){return 'é'}"), code_version: 7, config_json: "{}" },
            BlockToRender { id: "b2", block_type: "hero", code: None, code_version: 0, config_json: "{\"x\":1}" },
        ];
        let limits = RenderLimits { block_cpu_ms: 50, page_cpu_ms: 1000, heap_mb: 64, output_kb: 512 };
        let sent = ToWorker::Render(RenderRequest {
            engine: 42,
            store: "shop",
            version: 9,
            data: Some(("{\"id\":\"shop\"}", "[]")),
            ctx_json: "{\"cart\":[]}",
            blocks: &blocks,
            limits,
        })
        .encode();
        let mut decoded_blocks = Vec::new();
        let Ok(Request::Render(r)) = decode_request(&sent, &mut decoded_blocks) else { panic!("not a render") };
        assert_eq!((r.engine, r.store, r.version, r.ctx_json, r.limits), (42, "shop", 9, "{\"cart\":[]}", limits));
        assert_eq!(r.data, Some(("{\"id\":\"shop\"}", "[]")));
        assert_eq!(r.blocks.len(), 2);
        assert_eq!((r.blocks[0].code, r.blocks[0].code_version, r.blocks[1].code), (Some("function f(){return 'é'}"), 7, None));
        assert_eq!(r.blocks[1].config_json, "{\"x\":1}");
    }

    #[test]
    fn answers_round_trip_and_garbage_is_refused() {
        for answer in [
            FromWorker::Ready,
            FromWorker::NeedData,
            FromWorker::Done { measured: None, prewarmed: 0, reused: 0 },
            FromWorker::Done { measured: Some(0), prewarmed: 1, reused: 2 },
            FromWorker::Block { index: 3, outcome: Ok("<p>x</p>".into()) },
            FromWorker::Block { index: 0, outcome: Err(BlockFailure::Error("boom".into())) },
            FromWorker::Block { index: 1, outcome: Err(BlockFailure::HeapLimit) },
        ] {
            assert_eq!(FromWorker::decode(&answer.encode()).unwrap(), answer);
        }
        assert!(FromWorker::decode(&[BLOCK, 1, 0]).is_err());
        assert!(FromWorker::decode(b"?").is_err());
        assert!(FromWorker::decode(&[BLOCK, 0, 0, 0, 0, 0, 255, 255, 255, 255]).is_err());
        let mut bad_utf8 = vec![BLOCK, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        bad_utf8.push(0xff);
        assert!(FromWorker::decode(&bad_utf8).is_err());
    }

    #[test]
    fn a_frame_is_the_length_then_the_message() {
        let message = ToWorker::Drop { engine: 7 };
        let (frame, payload) = (message.frame(), message.encode());
        assert_eq!(frame[..4], (payload.len() as u32).to_le_bytes());
        assert_eq!(frame[4..], payload[..]);
        let mut input: &[u8] = &frame;
        assert_eq!(read_frame(&mut input).unwrap(), payload);
    }

    #[test]
    fn an_oversized_frame_is_refused_before_allocating() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut input).is_err());
    }
}
