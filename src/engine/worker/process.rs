//! One render worker process as its render thread sees it: started with an empty environment
//! and its pipes, read and written only with timeouts (a stopped or wedged worker must not hang
//! its thread), its CPU clock, and a kill that reaps it.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::wire::{self, FromWorker};
use super::WorkerConfig;

pub(super) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Bytes read from the worker and not yet decoded: one read takes every answer waiting.
    unread: Vec<u8>,
    clock: libc::clockid_t,
    ready: bool,
    /// Its resident memory when it became ready, in KiB (`recycle`).
    pub ready_kib: u64,
    /// Store → the data version the worker was last sent: a hint (the worker answers
    /// `NeedData` when it no longer has them).
    pub sent: HashMap<String, u64>,
}

type Launch = (WorkerConfig, std::sync::mpsc::Sender<io::Result<WorkerProcess>>);

static LAUNCHER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Launch>>> = std::sync::OnceLock::new();

/// Starts the thread that starts workers. A child inherits the niceness of the thread that
/// forks it, and render threads may run at a lower priority (`render.nice`) than a worker's
/// V8 watchdog must; so workers are forked by this thread, made at startup by a thread at the
/// default priority. It lives as long as the process, which is what the workers'
/// parent-death signal is tied to.
pub(super) fn start_launcher() {
    let (tx, rx) = std::sync::mpsc::channel::<Launch>();
    let started = std::thread::Builder::new().name("render-launcher".into()).spawn(move || {
        for (config, reply) in rx {
            let _ = reply.send(WorkerProcess::start(&config));
        }
    });
    match started {
        Ok(_) => {
            let _ = LAUNCHER.set(std::sync::Mutex::new(tx));
        }
        Err(error) => tracing::warn!(%error, "cannot start the render worker launcher; workers start from render threads"),
    }
}

impl WorkerProcess {
    /// Starts a worker (through the launcher thread when there is one).
    pub fn spawn(config: &WorkerConfig) -> io::Result<WorkerProcess> {
        let Some(launcher) = LAUNCHER.get() else { return WorkerProcess::start(config) };
        let (reply, answer) = std::sync::mpsc::channel();
        let sent = launcher.lock().map_err(|_| io::Error::other("launcher poisoned"))?.send((config.clone(), reply));
        if sent.is_err() {
            return WorkerProcess::start(config);
        }
        answer.recv().map_err(|_| io::Error::other("the launcher is gone"))?
    }

    fn start(config: &WorkerConfig) -> io::Result<WorkerProcess> {
        let mut command = Command::new(&config.program);
        // Named as the node's executable in process listings, whatever path started it.
        command.arg0(std::env::current_exe().unwrap_or_else(|_| config.program.clone()));
        command.args(&config.args).arg(format!("--pooled-limit={}", crate::engine::pooled::limit() / config.workers.max(1)));
        // Nothing of the node's environment (credentials, tokens) reaches merchant code's process.
        command.env_clear();
        if let Ok(filter) = std::env::var("VITRINA_LOG") {
            command.env("VITRINA_LOG", filter);
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe; between fork and exec this touches nothing else.
        // The worker is killed when the thread that forked it ends (the node's exit included).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("worker pipes missing"));
        };
        set_nonblocking(stdin.as_raw_fd())?;
        set_nonblocking(stdout.as_raw_fd())?;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `clock` is a valid out pointer; the pid is our own live child.
        let found = unsafe { libc::clock_getcpuclockid(child.id() as libc::pid_t, &mut clock) };
        if found != 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::from_raw_os_error(found));
        }
        crate::metrics::incr("vitrina_render_workers_started_total", &[]);
        Ok(WorkerProcess { child, stdin, stdout, unread: Vec::new(), clock, ready: false, ready_kib: 0, sent: HashMap::new() })
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the worker has used, all its threads together.
    pub fn cpu(&self) -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec; a clock of an exited child reads as an error, left 0.
        unsafe { libc::clock_gettime(self.clock, &mut ts) };
        Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
    }

    /// Waits for the worker's `Ready` the first time; its start-up CPU is not a page's.
    pub fn await_ready(&mut self, timeout: Duration) -> io::Result<()> {
        if self.ready {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        match self.receive_until(deadline)? {
            Some(FromWorker::Ready) => {
                self.ready = true;
                self.ready_kib = super::recycle::rss_kib(self.pid()).unwrap_or(0);
                Ok(())
            }
            Some(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "worker spoke before it was ready")),
            None => Err(io::Error::new(io::ErrorKind::TimedOut, "worker did not get ready")),
        }
    }

    /// Sends one framed message ([`wire::ToWorker::frame`]) in one write.
    pub fn send(&mut self, frame: &[u8], timeout: Duration) -> io::Result<()> {
        write_all(self.stdin.as_raw_fd(), frame, Instant::now() + timeout)
    }

    /// The next answer if one arrives within `wait` (a message begun is then read whole within
    /// `io_timeout`); `None` if none did. An error: the worker is gone or broke the protocol.
    pub fn receive(&mut self, wait: Duration, io_timeout: Duration) -> io::Result<Option<FromWorker>> {
        if let Some(answer) = self.decode_unread()? {
            return Ok(Some(answer));
        }
        if !wait_for(self.stdout.as_raw_fd(), libc::POLLIN, wait)? {
            return Ok(None);
        }
        self.receive_until(Instant::now() + io_timeout)
    }

    fn receive_until(&mut self, deadline: Instant) -> io::Result<Option<FromWorker>> {
        loop {
            if let Some(answer) = self.decode_unread()? {
                return Ok(Some(answer));
            }
            let had = self.unread.len();
            if !read_some(self.stdout.as_raw_fd(), &mut self.unread, deadline)? {
                if had == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(io::ErrorKind::TimedOut, "worker stopped mid-message"));
            }
        }
    }

    /// The first whole message in `unread`, taken out of it.
    fn decode_unread(&mut self) -> io::Result<Option<FromWorker>> {
        let Some(head) = self.unread.get(..4) else { return Ok(None) };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > wire::MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
        }
        if self.unread.len() < 4 + len {
            return Ok(None);
        }
        let answer = FromWorker::decode(&self.unread[4..4 + len]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        self.unread.drain(..4 + len);
        answer.map(Some)
    }

    /// Kills the worker and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the worker has exited (reaped if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Whether the worker ends, within `within`, by a SIGKILL this process did not send (an
    /// operator, the OOM killer): a block cannot raise it, a crash of the worker's own is
    /// another signal or an exit code. Polls: a dying worker closes its pipes before it has
    /// finished unmapping its heap.
    pub fn killed_from_outside(&mut self, within: Duration) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.signal() == Some(libc::SIGKILL),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                _ => return false,
            }
        }
    }
}

impl Drop for WorkerProcess {
    /// Every way a worker ends (killed, exited, replaced, recycled) ends here: its isolates go
    /// with it.
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        super::recycle::worker_gone();
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` became ready for `events` within `wait` (a hang-up or error counts as ready:
/// the read or write that follows reports it).
fn wait_for(fd: RawFd, events: libc::c_short, wait: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Appends what the pipe holds (at least one byte) to `buf`, waiting until `deadline`;
/// `false` if nothing arrived by then.
fn read_some(fd: RawFd, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<bool> {
    const CHUNK: usize = 64 * 1024;
    loop {
        buf.reserve(CHUNK);
        let spare = buf.spare_capacity_mut();
        // SAFETY: reads at most `spare.len()` bytes into `buf`'s unused capacity.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
        if n > 0 {
            // SAFETY: the kernel initialised these `n` bytes.
            unsafe { buf.set_len(buf.len() + n as usize) };
            return Ok(true);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "worker exited"));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !wait_for(fd, libc::POLLIN, left)? {
                    return Ok(false);
                }
            }
            _ => return Err(e),
        }
    }
}

fn write_all(fd: RawFd, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf = &buf[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !wait_for(fd, libc::POLLOUT, left)? {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "worker does not take its input"));
                }
            }
            _ => return Err(e),
        }
    }
    Ok(())
}
