//! The process's resident memory and CPU time, read from `/proc` on Linux.

use serde::Serialize;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`: the kernel's `USER_HZ`,
/// which is 100 on every architecture Linux exports it for.
const USER_HZ: f64 = 100.0;

/// The process at one moment. Each value is `None` where the system does not say (outside
/// Linux).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcessStatus {
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// User and system CPU time used, in seconds.
    pub cpu_seconds: Option<f64>,
}

impl ProcessStatus {
    /// Reads the current process.
    pub fn read() -> Self {
        Self {
            resident_memory_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| resident_bytes(&s)),
            cpu_seconds: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| cpu_seconds(&s)),
        }
    }
}

/// `VmRSS` of `/proc/self/status`, which the kernel gives in KiB.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `utime` + `stime` of `/proc/self/stat` (fields 14 and 15), in seconds. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name come field 3 (state) onwards: utime is the 12th of those.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (crypto feeder) S 1 4242 4242 0 -1 4194560 2913 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        let status = "Name:\tcrypto-feeder\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(resident_bytes(status), Some(12345 * 1024));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let p = ProcessStatus::read();
        assert!(p.resident_memory_bytes.is_some_and(|b| b > 0));
        assert!(p.cpu_seconds.is_some());
    }
}
