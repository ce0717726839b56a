//! The loopback venue server: accepts one WebSocket client on 127.0.0.1 and sends it exactly
//! `trades` trade frames of one venue, as fast as the socket takes them or at a fixed rate.
//!
//! It runs in a process of its own (`feeder-bench serve`) so that its CPU time is not counted
//! as the feeder's. It never parses what the client sends (subscriptions, pings): the frames
//! go out regardless, which is what a busy venue does too.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use feeder_core::model::Timestamp;
use tokio_tungstenite::tungstenite;

use crate::wire::{Chunk, Clock, Venue, CHUNK_FRAMES};

/// How long the server waits for its client to connect.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
/// A write that makes no progress for this long means the client stalled: give up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After the last trade, how long the connection is held open for the client to finish.
const LINGER: Duration = Duration::from_secs(900);

/// What to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The venue's wire format.
    pub venue: Venue,
    /// Trades to send in all.
    pub trades: u64,
    /// Trades per second; 0 sends as fast as the client reads.
    pub rate: u64,
    /// Symbols, round-robin.
    pub symbols: usize,
    /// Microseconds of trade time between consecutive trades.
    pub step_micros: i64,
}

/// Binds 127.0.0.1:0 and reports the address through `listening`, then serves one client.
pub fn serve(opts: &ServeOptions, listening: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let symbols = opts.venue.symbols(opts.symbols)?;
    let now_micros = Timestamp::now().unix_nanos() / 1_000;
    let clock = Clock {
        start_micros: now_micros,
        step_micros: opts.step_micros.max(1),
    };
    let mut chunk = Chunk::new(opts.venue, &symbols, CHUNK_FRAMES, clock)?;

    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    listening(listener.local_addr()?);
    let stream = accept(&listener)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let ws = tungstenite::accept(stream).map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    // The raw socket, for pre-encoded frames; `ws` keeps the connection open meanwhile.
    let mut out = ws.get_ref().try_clone()?;
    out.set_write_timeout(Some(WRITE_TIMEOUT))?;
    match send(&mut chunk, &mut out, opts.trades, opts.rate) {
        Ok(()) => {}
        // The client hung up: it had what it wanted (the memory check stops by time), or it
        // failed and says so itself.
        Err(e) if client_left(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    out.flush()?;
    linger(&mut out);
    drop(ws);
    Ok(())
}

fn client_left(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    })
}

fn accept(listener: &TcpListener) -> anyhow::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("no client connected within {ACCEPT_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("accepting the client"),
        }
    }
}

/// Sends trades `0..total`, a chunk at a time, paced to `rate` per second when it is not 0.
fn send(chunk: &mut Chunk, out: &mut TcpStream, total: u64, rate: u64) -> anyhow::Result<()> {
    let per_chunk = chunk.frames() as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    // Trade index of the chunk's first frame.
    let mut base = 0u64;
    while sent < total {
        let due = if rate == 0 {
            total
        } else {
            let elapsed = start.elapsed().as_secs_f64();
            total.min((elapsed * rate as f64) as u64)
        };
        if due <= sent {
            // Paced and ahead of schedule: wait for the next trade's turn, briefly.
            let next_at = Duration::from_secs_f64((sent + 1) as f64 / rate.max(1) as f64);
            let wait = next_at.saturating_sub(start.elapsed());
            std::thread::sleep(wait.clamp(Duration::from_micros(20), Duration::from_millis(1)));
            continue;
        }
        let from = (sent - base) as usize;
        let to = (due - base).min(per_chunk) as usize;
        out.write_all(chunk.frame_bytes(from..to)?)
            .context("sending trades (did the client stall or go away?)")?;
        sent = base + to as u64;
        if to as u64 == per_chunk {
            base += per_chunk;
            chunk.advance_to(base)?;
        }
    }
    Ok(())
}

/// Keeps the connection open until the client closes it, reading and dropping whatever it
/// sends (its close frame included), for at most [`LINGER`].
fn linger(out: &mut TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match out.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
