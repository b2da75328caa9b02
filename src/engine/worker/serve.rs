//! The worker's side: `vitrina render-worker`, started by a render thread of the node.
//!
//! It renders pages for the engines its render thread places here, one at a time, in the
//! order they come, and answers each block's outcome as soon as it is known. It holds each
//! engine's isolate and each store's data until told to drop them (or until it is killed). The
//! protocol goes over a private copy of stdout: file descriptor 1 is pointed at stderr, so
//! anything V8 or a library prints cannot corrupt a message.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd};

use anyhow::Context;
use tokio::io::AsyncReadExt;

use super::outbox::Outbox;
use super::wire::{self, decode_request, FromWorker, Request};
use crate::engine::js::V8Engine;
use crate::engine::{BlockEngine, StoreRenderData};

/// What the node tells a worker when it starts it.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// The operator's extra V8 flags (`Settings::v8_flags`).
    pub v8_flags: String,
    /// Bytes this worker's pools of spare and ready isolates may hold.
    pub pooled_limit: usize,
    /// Scheduling niceness (`render.nice`).
    pub nice: i32,
}

/// Runs the worker until its input closes (the node let go of it or exited).
pub fn serve(options: &WorkerOptions) -> anyhow::Result<()> {
    let answers = protocol_output().context("cannot set up the worker's output")?;
    crate::engine::init(&options.v8_flags);
    crate::engine::pooled::set_limit(options.pooled_limit);
    crate::engine::js::prepare_snapshot();
    if options.nice > 0 {
        // Only this thread, where blocks run: V8's watchdog and helper threads, started above,
        // keep their priority so that deadlines fire on time.
        // SAFETY: setpriority on this thread's own id; no pointer involved.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t, options.nice.clamp(0, 19)) };
    }
    actix_rt::System::new().block_on(run(answers))
}

/// A private descriptor for the protocol, and fd 1 pointed at stderr.
fn protocol_output() -> io::Result<File> {
    // SAFETY: dup/dup2 on the standard descriptors; the new one is owned by the File.
    unsafe {
        let private = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if private < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(private))
    }
}

struct Worker {
    answers: Outbox,
    engines: HashMap<u64, (String, V8Engine)>,
    stores: HashMap<String, StoreRenderData>,
}

async fn run(output: File) -> anyhow::Result<()> {
    let answers = Outbox::new(output)?;
    let stdin = tokio::net::unix::pipe::Receiver::from_file(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
        .context("stdin is not a pipe")?;
    let mut input = tokio::io::BufReader::with_capacity(64 * 1024, stdin);
    let mut worker = Worker { answers, engines: HashMap::new(), stores: HashMap::new() };
    worker.answer(&FromWorker::Ready)?;
    actix_rt::spawn(super::trim::trim_when_idle());
    loop {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(len) as usize;
        anyhow::ensure!(len <= wire::MAX_FRAME, "frame too large");
        let mut frame = vec![0u8; len];
        input.read_exact(&mut frame).await?;
        super::trim::busy();
        worker.handle(&frame)?;
    }
}

impl Worker {
    fn handle(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let mut blocks = Vec::new();
        match decode_request(frame, &mut blocks)? {
            Request::Drop { engine } => {
                if let Some((store, engine)) = self.engines.remove(&engine) {
                    drop(engine);
                    crate::memory::note_released();
                    if !self.engines.values().any(|(s, _)| *s == store) {
                        self.stores.remove(&store);
                    }
                }
                Ok(())
            }
            Request::Render(r) => {
                if let Some((storefront, products)) = r.data {
                    let data = StoreRenderData { version: r.version, storefront_json: storefront.into(), products_json: products.into() };
                    self.stores.insert(r.store.to_string(), data);
                }
                let Some(data) = self.stores.get(r.store).filter(|d| d.version == r.version) else {
                    return self.answer(&FromWorker::NeedData);
                };
                let (_, engine) = self.engines.entry(r.engine).or_insert_with(|| (r.store.to_string(), V8Engine::for_store(r.store)));
                let before = engine.stats();
                let answers = &self.answers;
                engine.render_each(data, r.ctx_json, r.blocks, &r.limits, &mut |index, outcome| {
                    answers.buffer(&wire::block_answer(index as u32, outcome));
                });
                let measured = engine.take_measured_bytes().map(|m| m as u64);
                let after = engine.stats();
                let delta = |a: u64, b: u64| a.saturating_sub(b).min(u32::MAX as u64) as u32;
                self.answer(&FromWorker::Done {
                    measured,
                    prewarmed: delta(after.isolates_prewarmed, before.isolates_prewarmed),
                    reused: delta(after.isolates_reused, before.isolates_reused),
                })
            }
        }
    }

    fn answer(&mut self, answer: &FromWorker) -> anyhow::Result<()> {
        Ok(self.answers.send(&answer.encode())?)
    }
}
