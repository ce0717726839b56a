//! Resource use of another process, read from `/proc/<pid>`: what the real-load check knows
//! of the feeder and of the programs it is compared with, measured from outside alike.

use std::time::Instant;

use anyhow::{anyhow, Context as _};

/// Linux reports `utime` and `stime` in units of `USER_HZ`, 100 on every architecture.
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// CPU seconds (user + system) of every thread so far, exited ones included.
    pub cpu_seconds: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Peak resident memory so far, KiB.
    pub peak_rss_kib: u64,
    /// Voluntary context switches of the live threads: each is a thread going to sleep to
    /// wait for something, so each is followed by a wake-up.
    pub voluntary_switches: u64,
    /// Involuntary context switches of the live threads (preempted while runnable).
    pub involuntary_switches: u64,
}

/// Reads process `pid` now.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| -> anyhow::Result<u64> {
        fields
            .get(field - 3)
            .context("short /proc/<pid>/stat")?
            .parse::<u64>()
            .context("non-numeric /proc/<pid>/stat field")
    };
    let cpu_seconds = (ticks(14)? + ticks(15)?) as f64 / USER_HZ;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let (mut voluntary_switches, mut involuntary_switches) = (0, 0);
    // Per thread: the process's own status counts its main thread only.
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let Ok(s) = std::fs::read_to_string(task.path().join("status")) else {
                // The thread exited in between.
                continue;
            };
            voluntary_switches += field(&s, "voluntary_ctxt_switches").unwrap_or(0);
            involuntary_switches += field(&s, "nonvoluntary_ctxt_switches").unwrap_or(0);
        }
    }
    Ok(ProcSample {
        at,
        cpu_seconds,
        rss_kib: field(&status, "VmRSS").ok_or_else(|| anyhow!("no VmRSS for {pid}"))?,
        peak_rss_kib: field(&status, "VmHWM").ok_or_else(|| anyhow!("no VmHWM for {pid}"))?,
        voluntary_switches,
        involuntary_switches,
    })
}

/// The number after `key:` in a `/proc` status file.
fn field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The machine's load averages (1, 5, 15 minutes), as `uptime` shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Least-squares slope of `ys` over `xs`, per unit of `xs`; 0 with fewer than two points.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.peak_rss_kib >= s.rss_kib);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        // Above the kernel's largest pid (4194304).
        assert!(sample(u32::MAX - 1).is_err());
    }

    #[test]
    fn slope_of_a_line_and_of_too_few_points() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&line[..1]), 0.0);
        let flat: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 7.0)).collect();
        assert_eq!(slope(&flat), 0.0);
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nVmRSS:\t  1234 kB\nvoluntary_ctxt_switches:\t17\n";
        assert_eq!(field(s, "VmRSS"), Some(1234));
        assert_eq!(field(s, "voluntary_ctxt_switches"), Some(17));
        assert_eq!(field(s, "VmHWM"), None);
    }
}
