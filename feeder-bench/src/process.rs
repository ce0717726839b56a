//! This process's resource use, and the child processes the benchmark runs.
//!
//! Every scenario runs in a fresh process so that its peak memory is its own, and the venue
//! server runs in a process of its own so that the feeder's CPU time can be read for the
//! feeder alone. Children are killed when their handle is dropped, and a child started with
//! `--watch-parent` exits by itself when its parent dies (its stdin closes).

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// Linux reports `utime` and `stime` in `/proc` in units of `USER_HZ`, which is 100 on every
/// architecture (it is part of the kernel's user-space ABI, independent of the kernel's tick).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) used so far by this process, all threads, including threads
/// that have already exited. Resolution: 10 ms.
pub fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let ticks = |field: usize| -> anyhow::Result<u64> {
        fields
            .get(field - 3)
            .context("short /proc/self/stat")?
            .parse::<u64>()
            .context("non-numeric /proc/self/stat field")
    };
    Ok((ticks(14)? + ticks(15)?) as f64 / USER_HZ)
}

/// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(key: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/self/status"))
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> anyhow::Result<u64> {
    status_kib("VmRSS")
}

/// Peak resident memory of this process so far, in KiB.
pub fn peak_rss_kib() -> anyhow::Result<u64> {
    status_kib("VmHWM")
}

/// Exits this process when stdin reaches its end: the parent that holds the other end died
/// (or dropped its handle to this child), so nobody is left to read the results.
pub fn exit_with_parent() {
    let spawned = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(|| {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => std::process::exit(3),
                    Ok(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the parent process");
    }
}

/// A child process of this same binary, killed (and reaped) when dropped.
pub struct ChildProc {
    child: Child,
    what: String,
    /// Lines of the child's stdout, read by a thread.
    lines: mpsc::Receiver<String>,
}

impl std::fmt::Debug for ChildProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProc")
            .field("what", &self.what)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl ChildProc {
    /// Starts `<this binary> <args> --watch-parent`, with stdout captured line by line and
    /// stderr shared with this process.
    pub fn spawn(what: &str, args: &[String]) -> anyhow::Result<ChildProc> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(args).arg("--watch-parent");
        ChildProc::from_command(what, cmd)
    }

    /// Starts `cmd` (any program), with stdin piped, stdout captured line by line and
    /// stderr shared with this process.
    pub fn from_command(what: &str, mut cmd: Command) -> anyhow::Result<ChildProc> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {what} process"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, lines) = mpsc::channel();
        spawn_reader(stdout, tx)?;
        Ok(ChildProc {
            child,
            what: what.to_owned(),
            lines,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin: its signal to shut down gracefully.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
    }

    /// The next stdout line that starts with `prefix` (the prefix removed), waiting at most
    /// `timeout`.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "the {} process printed no {prefix:?} line within {timeout:?}",
                        self.what
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!(
                        "the {} process ended ({}) without a {prefix:?} line",
                        self.what,
                        status.map_or("unknown status".to_owned(), |s| s.to_string())
                    )
                }
            }
        }
    }

    /// Waits for the process to exit by itself, at most `timeout`; kills it after that.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("the {} process failed: {status}", self.what);
            }
            if Instant::now() >= deadline {
                bail!("the {} process did not exit within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn spawn_reader(stdout: ChildStdout, tx: mpsc::Sender<String>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("child-stdout".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .context("starting a reader thread")?;
    Ok(())
}
