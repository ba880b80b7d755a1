//! What the benches read from `/proc`: CPU time of a process (all its
//! threads) and the host's busy time, so CPU cost is measured from the
//! outside, the same way for the server, ffmpeg and nginx.

#![allow(dead_code, reason = "each bench uses a different part of the helpers")]

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// utime + stime of a process (every thread of it), in seconds; 0 when it
/// is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / USER_HZ
}

/// The parent pid of a process (field 4 of `/proc/PID/stat`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size in MB.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// (busy, total) ticks of all CPUs from the first line of `/proc/stat`;
/// idle and iowait count as not busy. The difference of two samples shows
/// how loaded the whole (shared) machine was in between.
pub fn host_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal (guest is in user).
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Whether this process is in a network namespace with no interface but
/// loopback (`/proc/self/net/dev` is per namespace; `/sys/class/net` is
/// not, unless sysfs was mounted in it).
pub fn loopback_only_netns() -> bool {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    names == ["lo"]
}
