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

pub struct FsyncCeiling {
    pub files: usize,
    pub ops: u64,
    pub elapsed: Duration,
    /// Latency of one write + fdatasync, in microseconds.
    pub hist: Histogram<u64>,
}

impl FsyncCeiling {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Overwrites 4 KiB and `fdatasync`s, in a loop, on `files` files in parallel (one thread each)
/// for `duration`. This is what one SQLite WAL commit with `synchronous=FULL` costs at least:
/// a page-sized write to a reused WAL file followed by a sync. Files are preallocated so the
/// sync does not also have to persist a size change.
pub fn fsync_ceiling(dir: &Path, files: usize, duration: Duration) -> anyhow::Result<FsyncCeiling> {
    std::fs::create_dir_all(dir)?;
    const BLOCK: usize = 4096;
    const SLOTS: u64 = 256;
    let start = Instant::now();
    let deadline = start + duration;
    let threads: Vec<_> = (0..files.max(1))
        .map(|i| {
            let path = dir.join(format!("fsync-{i}.bin"));
            std::thread::spawn(move || -> anyhow::Result<(u64, Histogram<u64>)> {
                let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
                file.set_len(SLOTS * BLOCK as u64)?;
                file.sync_all()?;
                let block = [0x5au8; BLOCK];
                let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3)?;
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    file.write_all_at(&block, (ops % SLOTS) * BLOCK as u64)?;
                    file.sync_data()?;
                    hist.record(t.elapsed().as_micros().max(1) as u64)?;
                    ops += 1;
                }
                drop(file);
                let _ = std::fs::remove_file(&path);
                Ok((ops, hist))
            })
        })
        .collect();
    let mut total = 0;
    let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    for t in threads {
        let (ops, h) = t.join().map_err(|_| anyhow::anyhow!("fsync thread panicked"))??;
        total += ops;
        hist.add(&h)?;
    }
    Ok(FsyncCeiling { files, ops: total, elapsed: start.elapsed(), hist })
}
