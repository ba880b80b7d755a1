//! CPU time and memory of processes and threads, from /proc. USER_HZ is
//! 100 on Linux, so CPU times have 10 ms resolution: windows of seconds.

/// utime + stime in seconds from the text of a `stat` file.
pub fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the ")" that ends the command name; utime and stime
    // are fields 14 and 15 of the file, 12 and 13 after the name.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds of a process (all its threads).
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds of this process.
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// CPU seconds of each thread of a process, by thread id.
pub fn thread_cpu_seconds(pid: u32) -> Vec<(u32, f64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            Some((tid, stat_cpu_seconds(&stat)))
        })
        .collect()
}

/// The largest CPU share (percent of one core) any thread used between
/// two [`thread_cpu_seconds`] readings `seconds` apart.
pub fn busiest_thread_pct(before: &[(u32, f64)], after: &[(u32, f64)], seconds: f64) -> f64 {
    after
        .iter()
        .map(|(tid, cpu)| {
            let start = before
                .iter()
                .find(|(t, _)| t == tid)
                .map_or(0.0, |(_, c)| *c);
            (cpu - start) * 100.0 / seconds.max(1e-9)
        })
        .fold(0.0, f64::max)
}

/// Resident set size of a process, MB.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// UDP datagrams the kernel dropped for full receive buffers in this
/// network namespace (`/proc/net/snmp`, Udp RcvbufErrors): on loopback
/// the server's and the clients' sockets alike.
pub fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
