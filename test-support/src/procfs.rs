//! What `/proc` says about a node: CPU time, resident memory, open files. A node runs its
//! blocks in render worker processes (its children), so CPU and memory are the whole process
//! tree's: what the node costs the machine.

use std::time::Duration;

/// `pid` and its descendants, parents first.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut at = 0;
    while at < all.len() {
        let parent = all[at];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) {
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                all.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
        at += 1;
    }
    all
}

/// The node's children: its render workers.
pub fn children(pid: u32) -> Vec<u32> {
    tree(pid).into_iter().skip(1).collect()
}

/// Fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// contain spaces): field N of the whole line is index N - 3 here.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// User + system CPU time of `pid` itself (not its children).
pub fn own_cpu_time(pid: u32) -> Option<Duration> {
    let own = stat_fields(pid)?;
    Some(ticks_to_duration(own.get(11)? + own.get(12)?))
}

/// User + system CPU time of `pid` so far, with that of its live descendants and of the
/// children it has reaped (render workers that were killed and replaced).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let own = stat_fields(pid)?;
    // utime, stime, cutime, cstime are fields 14-17.
    let mut ticks = own.get(11)? + own.get(12)? + own.get(13)? + own.get(14)?;
    for child in children(pid) {
        if let Some(f) = stat_fields(child) {
            ticks += f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
        }
    }
    Some(ticks_to_duration(ticks))
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().next()?.parse().ok()
}

/// Resident set size of `pid` and its descendants together, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let own = status_kib(pid, "VmRSS:")?;
    Some(own + children(pid).into_iter().filter_map(|c| status_kib(c, "VmRSS:")).sum::<u64>())
}

/// Peak resident set size (`VmHWM`) of `pid` plus each live descendant's, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let own = status_kib(pid, "VmHWM:")?;
    Some(own + children(pid).into_iter().filter_map(|c| status_kib(c, "VmHWM:")).sum::<u64>())
}

/// Resets the peak the kernel keeps (`VmHWM`) for `pid` and its descendants.
pub fn reset_peak(pid: u32) {
    for p in tree(pid) {
        let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
}

/// Open file descriptors of `pid` (the node itself).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}
