//! Physical ceilings the workloads are compared with, measured on the same machine in the same
//! run: the HTTP stack with nothing behind it, and the disk's fsync rate.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// `GET /` → `ok` on actix-web with one worker per core and no middleware: what one core pair
/// can answer over keep-alive HTTP/1.1 when a handler costs nothing.
pub fn serve_hello(listen: &str) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    actix_web::rt::System::new().block_on(async move {
        let listener = std::net::TcpListener::bind(listen)?;
        println!("hello listening on http://{}", listener.local_addr()?);
        HttpServer::new(|| App::new().route("/", web::get().to(|| async { HttpResponse::Ok().body("ok") })))
            .listen(listener)?
            .run()
            .await?;
        Ok(())
    })
}

fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

pub struct FsyncCeiling {
    pub files: usize,
    pub ops: u64,
    pub elapsed: Duration,
    /// Latency of one write + fdatasync, in microseconds.
    pub hist: Histogram<u64>,
    /// CPU time the syncing threads spent (user + system, mostly the kernel's sync path): the
    /// least CPU a durable write costs on this machine, whatever stands in front of it.
    pub cpu: Duration,
}

impl FsyncCeiling {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_us_per_op(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.ops.max(1) as f64
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What each fsync ceiling thread does in its loop.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Overwrite 4 KiB of a preallocated file and `fdatasync`: the least one SQLite WAL commit
    /// with `synchronous=FULL` costs (a page-sized write to a reused WAL, then a sync).
    Overwrite,
    /// Create a new file, write 4 KiB, `fsync`: the least a new actor's file costs, since the
    /// sync must also commit the file system journal (inode, directory entry) — on ext4 one
    /// journal shared by every file, which is why this does not scale like `Overwrite`.
    Create,
}

/// Deletes what `SyncKind::Create` runs left in `dir`. Not done by the measurement itself:
/// on ext4 without a journal (this machine's disk) a new inode is never one deleted in the last
/// few seconds — minutes while its inode table block is dirty — and the allocator scans past
/// each of them, so deleting the ~100k files of a create run made every file creation in the
/// workloads measured after it slower (the W2p profile: 17 % of the node's CPU in
/// `find_inode_bit`). The suite leaves them to its work directory's removal at the end.
pub fn remove_created_files(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("created-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Runs `kind` in a loop on `files` threads (one file or file series each) for `duration`.
pub fn fsync_ceiling(dir: &Path, files: usize, duration: Duration, kind: SyncKind) -> anyhow::Result<FsyncCeiling> {
    std::fs::create_dir_all(dir)?;
    const BLOCK: usize = 4096;
    const SLOTS: u64 = 256;
    let start = Instant::now();
    let deadline = start + duration;
    let threads: Vec<_> = (0..files.max(1))
        .map(|i| {
            let path = dir.join(format!("fsync-{i}.bin"));
            std::thread::spawn(move || -> anyhow::Result<(u64, Histogram<u64>, Duration)> {
                let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
                file.set_len(SLOTS * BLOCK as u64)?;
                file.sync_all()?;
                let block = [0x5au8; BLOCK];
                let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3)?;
                let mut ops = 0u64;
                let created = dir_of(&path).join(format!("created-{i}"));
                std::fs::create_dir_all(&created)?;
                let cpu_start = thread_cpu_time();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match kind {
                        SyncKind::Overwrite => {
                            file.write_all_at(&block, (ops % SLOTS) * BLOCK as u64)?;
                            file.sync_data()?;
                        }
                        SyncKind::Create => {
                            let f = OpenOptions::new().create_new(true).write(true).open(created.join(ops.to_string()))?;
                            f.write_all_at(&block, 0)?;
                            f.sync_all()?;
                        }
                    }
                    hist.record(t.elapsed().as_micros().max(1) as u64)?;
                    ops += 1;
                }
                let cpu = thread_cpu_time().saturating_sub(cpu_start);
                drop(file);
                let _ = std::fs::remove_file(&path);
                // The created files stay (see `remove_created_files`).
                Ok((ops, hist, cpu))
            })
        })
        .collect();
    let mut total = 0;
    let mut cpu = Duration::ZERO;
    let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    for t in threads {
        let (ops, h, c) = t.join().map_err(|_| anyhow::anyhow!("fsync thread panicked"))??;
        total += ops;
        cpu += c;
        hist.add(&h)?;
    }
    Ok(FsyncCeiling { files, ops: total, elapsed: start.elapsed(), hist, cpu })
}
