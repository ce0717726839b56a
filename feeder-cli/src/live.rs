//! The live view: a status block at the bottom of a terminal, redrawn about once a second,
//! with the log lines scrolling above it.
//!
//! Every log line goes through [`LogWriter`], which takes the block away, writes the line
//! and puts the block back, so the two never overwrite each other.

use std::io::Write as _;
use std::sync::Mutex;

use feeder_core::observe::Status;

/// The block on screen now: its lines, redrawn after each log line.
struct Screen {
    block: String,
    lines: usize,
}

static SCREEN: Mutex<Screen> = Mutex::new(Screen {
    block: String::new(),
    lines: 0,
});

fn screen() -> std::sync::MutexGuard<'static, Screen> {
    SCREEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves the cursor to the start of the block and clears from there down.
fn erase(out: &mut Vec<u8>, lines: usize) {
    if lines > 0 {
        // CSI n F: to the start of the line n lines up; CSI J: clear to the end of the screen.
        let _ = write!(out, "\x1b[{lines}F\x1b[J");
    }
}

/// Replaces the block on screen with `block` (lines ending in `\n`).
pub fn show(block: String) {
    let mut s = screen();
    let mut out = Vec::with_capacity(block.len() + 16);
    erase(&mut out, s.lines);
    out.extend_from_slice(block.as_bytes());
    s.lines = block.matches('\n').count();
    s.block = block;
    let _ = std::io::stderr().write_all(&out);
}

/// Leaves the block on screen as it is; later log lines go below it.
pub fn detach() {
    let mut s = screen();
    s.lines = 0;
    s.block.clear();
}

/// A log line's writer: buffers the line, then writes it above the block when dropped.
#[derive(Default)]
pub struct LogWriter {
    buf: Vec<u8>,
}

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let s = screen();
        let mut out = Vec::with_capacity(self.buf.len() + s.block.len() + 16);
        erase(&mut out, s.lines);
        out.append(&mut self.buf);
        out.extend_from_slice(s.block.as_bytes());
        let _ = std::io::stderr().write_all(&out);
    }
}

/// Makes a [`LogWriter`] per log line, for `tracing_subscriber`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeLogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeLogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter::default()
    }
}

/// Widest line of the block: wider lines would wrap and throw off the redraw.
const WIDTH: usize = 100;

/// The block for `status`: a head line, a line per stream, a line per writer.
pub fn render(status: &Status) -> String {
    let mut lines = Vec::with_capacity(2 + status.streams.len() + status.writers.len());
    let mem = status
        .process
        .resident_memory_bytes
        .map(|b| format!("  {:.1} MiB", b as f64 / 1048576.0))
        .unwrap_or_default();
    lines.push(format!(
        "── crypto-feeder {} {} · up {} · {:.1} trades/s{mem}",
        status.phase,
        if status.ready { "READY" } else { "NOT READY" },
        human(status.uptime_seconds),
        status.trades_per_second(),
    ));
    for s in &status.streams {
        lines.push(format!(
            "  {:<10} {:<10} {:<12} {:>9.1}/s  lag {:>7}  last {:>7}  gaps {}",
            s.exchange,
            s.symbol,
            s.state.to_string(),
            s.trades_per_second,
            s.watermark_lag_seconds
                .map(human)
                .unwrap_or_else(|| "-".into()),
            s.last_trade_age_seconds
                .map(human)
                .unwrap_or_else(|| "-".into()),
            s.gaps,
        ));
    }
    for w in &status.writers {
        lines.push(format!(
            "  writer {:<14} {:<8} queue {:>6} ({} KiB)  errors {}  dropped {}  {:.1} events/s",
            w.name,
            w.state.to_string(),
            w.queued_events,
            w.queued_bytes / 1024,
            w.errors,
            w.dropped,
            w.events_per_second,
        ));
    }
    let mut block = String::new();
    for l in lines {
        block.extend(l.chars().take(WIDTH));
        block.push('\n');
    }
    block
}

fn human(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", secs as u64 / 60, secs as u64 % 60)
    } else {
        format!("{}h{:02}m", secs as u64 / 3600, secs as u64 / 60 % 60)
    }
}
