//! The WebSocket connection loop both mock venues share: subscriptions, trades from the
//! history, the venue's heartbeats, and injected faults.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::Symbol;
use tokio::sync::broadcast::error::RecvError;

use super::{Control, MockTrade, Shared, WsFault};
use crate::ws::{WsConn, WsError};

/// What a connection subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    /// Symbols whose trades are sent.
    pub trades: HashSet<Symbol>,
    /// Symbols whose venue heartbeats are sent (Coinbase).
    pub heartbeats: HashSet<Symbol>,
    /// The channel id of each subscribed symbol, on venues that number channels per
    /// connection (Bitfinex).
    pub channels: HashMap<Symbol, u64>,
}

/// A frame as it goes on the wire.
#[derive(Debug)]
pub(crate) enum Encoded {
    /// A text frame.
    Text(String),
    /// A binary frame (Huobi gzips every frame).
    Binary(Vec<u8>),
}

/// The answer to a client message.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    /// Frames to send back, in order.
    pub frames: Vec<String>,
    /// A subscription was acknowledged.
    pub subscribed: bool,
}

/// A venue's wire format.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Handles a text message from the client.
    fn on_message(&self, shared: &Shared, text: &str, subs: &mut Subs) -> Reply;
    /// A trade as a frame.
    fn trade_frame(&self, shared: &Shared, trade: &MockTrade) -> String;
    /// A frame the client cannot parse.
    fn malformed_frame(&self) -> String;
    /// The venue's heartbeats for `subs`, vouching for the history up to `upto`, if it has
    /// any.
    fn heartbeat_frames(&self, shared: &Shared, subs: &Subs, upto: usize) -> Vec<String>;
    /// The venue's request to reconnect; `None` when it has none (a close frame is sent).
    fn reconnect_frame(&self) -> Option<String>;
    /// How often the venue sends heartbeats on its own, if it does.
    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration>;

    /// What the venue sends as soon as a client connects (Bitfinex's `info`); nothing by
    /// default.
    fn greeting(&self, _shared: &Shared) -> Vec<String> {
        Vec::new()
    }

    /// The frames of one trade on a connection with these subscriptions: by default the
    /// single [`Wire::trade_frame`]. A venue that numbers channels per connection or sends a
    /// trade twice (Bitfinex's `te` and `tu`) overrides this. Faults count trades, not
    /// frames.
    fn trade_frames(&self, shared: &Shared, _subs: &Subs, trade: &MockTrade) -> Vec<String> {
        vec![self.trade_frame(shared, trade)]
    }

    /// How a frame goes on the wire: as text by default.
    fn encode(&self, frame: String) -> Encoded {
        Encoded::Text(frame)
    }

    /// Handles a new connection before any message, given the path and query of its upgrade
    /// request (venues that take their subscriptions in the URL, such as Binance).
    fn on_connect(&self, _shared: &Shared, _path: &str, _subs: &mut Subs) -> Reply {
        Reply::default()
    }

    /// True when the venue's heartbeat is a protocol ping (Binance) sent alongside any
    /// heartbeat frames.
    fn protocol_ping(&self) -> bool {
        false
    }

    /// How many trades of one symbol the venue puts in one frame, at most. Above 1, trades
    /// go out through [`Wire::batch_frame`] rather than [`Wire::trade_frames`].
    fn max_batch(&self) -> usize {
        1
    }

    /// One to `max_batch` trades of one symbol as one frame; only called when
    /// [`Wire::max_batch`] is above 1.
    fn batch_frame(&self, shared: &Shared, trades: &[MockTrade]) -> String {
        trades
            .first()
            .map(|t| self.trade_frame(shared, t))
            .unwrap_or_default()
    }
}

/// Sends `frame` the way the venue does.
async fn send<W: Wire>(conn: &mut WsConn, wire: &W, frame: String) -> Result<(), WsError> {
    match wire.encode(frame) {
        Encoded::Text(t) => conn.send_text(t).await,
        Encoded::Binary(b) => conn.send_binary(b).await,
    }
}

/// Where a connection stands with its fault.
#[derive(Debug)]
struct FaultState {
    fault: Option<WsFault>,
    sent: usize,
    skipping: usize,
}

impl FaultState {
    /// How many more trades may go out before the fault is due (at least 1).
    fn room(&self) -> usize {
        let at = match self.fault {
            None => return usize::MAX,
            Some(
                WsFault::DropAfter(n)
                | WsFault::CloseAfter(n)
                | WsFault::StallAfter(n)
                | WsFault::MalformedAfter(n)
                | WsFault::RequestReconnectAfter(n),
            ) => n,
            Some(WsFault::SkipAfter { after, .. } | WsFault::HangAfter { after, .. }) => after,
        };
        at.saturating_sub(self.sent).max(1)
    }
}

enum Act {
    Continue,
    /// Stop serving (the connection was closed or went silent).
    End,
    /// Drop the TCP connection abruptly and stop.
    Drop,
}

/// Where one connection stands.
struct ConnState {
    subs: Subs,
    fs: FaultState,
    /// History entries up to here were delivered (or deliberately left out).
    cursor: usize,
}

/// Serves one connection until the client leaves, a fault ends it, or the mock is dropped.
pub(crate) async fn serve<W: Wire>(mut conn: WsConn, shared: Arc<Shared>, wire: Arc<W>) {
    let mut published = shared.subscribe_published();
    let mut control = shared.subscribe_control();
    let mut st = ConnState {
        subs: Subs::default(),
        fs: FaultState {
            fault: shared.take_fault(),
            sent: 0,
            skipping: 0,
        },
        // Trades published before the connection are not its client's.
        cursor: *published.borrow_and_update(),
    };
    let every = wire.heartbeat_every(&shared);
    let mut heartbeat = tokio::time::interval(every.unwrap_or(Duration::from_secs(3_600)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick of an interval is immediate; the venue's first heartbeat comes later.
    heartbeat.reset();
    for f in wire.greeting(&shared) {
        if send(&mut conn, &*wire, f).await.is_err() {
            return;
        }
    }

    let path = conn.path().to_owned();
    let reply = wire.on_connect(&shared, &path, &mut st.subs);
    for f in reply.frames {
        if send(&mut conn, &*wire, f).await.is_err() {
            return;
        }
    }
    if reply.subscribed {
        shared.subscription_acked();
        if let act @ (Act::End | Act::Drop) = apply_due(&mut conn, &wire, &mut st.fs).await {
            return finish(conn, act);
        }
    }

    loop {
        let act = tokio::select! {
            msg = conn.recv() => {
                let Some(msg) = msg else { return };
                let Some(text) = msg.as_text() else { continue };
                // Deliver what the current subscriptions are owed first, so a new
                // subscription neither skips nor replays anything.
                match deliver(&mut conn, &shared, &wire, &mut st).await {
                    Act::Continue => {}
                    other => return finish(conn, other),
                }
                let reply = wire.on_message(&shared, text, &mut st.subs);
                let mut act = Act::Continue;
                for f in reply.frames {
                    if send(&mut conn, &*wire, f).await.is_err() {
                        return;
                    }
                }
                if reply.subscribed {
                    shared.subscription_acked();
                    act = apply_due(&mut conn, &wire, &mut st.fs).await;
                }
                act
            }
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
                published.borrow_and_update();
                deliver(&mut conn, &shared, &wire, &mut st).await
            }
            _ = heartbeat.tick(), if every.is_some() => {
                send_heartbeats(&mut conn, &shared, &wire, &mut st).await
            }
            c = control.recv() => {
                let c = match c {
                    Ok(c) => c,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                match c {
                    Control::Drop => Act::Drop,
                    Control::Malformed => {
                        if send(&mut conn, &*wire, wire.malformed_frame()).await.is_ok() {
                            Act::Continue
                        } else {
                            Act::End
                        }
                    }
                    Control::Heartbeat => send_heartbeats(&mut conn, &shared, &wire, &mut st).await,
                    Control::RequestReconnect => match wire.reconnect_frame() {
                        Some(f) => {
                            if send(&mut conn, &*wire, f).await.is_ok() {
                                Act::Continue
                            } else {
                                Act::End
                            }
                        }
                        None => {
                            let _ = conn.close().await;
                            Act::End
                        }
                    },
                }
            }
        };
        match act {
            Act::Continue => {}
            other => return finish(conn, other),
        }
    }
}

fn finish(conn: WsConn, act: Act) {
    if let Act::Drop = act {
        conn.drop_abruptly();
    }
}

/// Sends the subscribed trades published since the cursor, applying the fault on the way.
async fn deliver<W: Wire>(
    conn: &mut WsConn,
    shared: &Shared,
    wire: &Arc<W>,
    st: &mut ConnState,
) -> Act {
    let len = shared.published_count();
    let due = shared.with_history(|h| {
        h.get(st.cursor..len)
            .unwrap_or_default()
            .iter()
            .filter(|e| !e.silent && st.subs.trades.contains(&e.trade.symbol))
            .map(|e| e.trade.clone())
            .collect::<Vec<_>>()
    });
    st.cursor = len.max(st.cursor);
    let max_batch = wire.max_batch().max(1);
    let due = if max_batch > 1 { by_symbol(due) } else { due };
    let mut due = due.into_iter().peekable();
    while let Some(first) = due.next() {
        if st.fs.skipping > 0 {
            st.fs.skipping -= 1;
            continue;
        }
        // Trades of one symbol share a frame where the venue batches, but never past the
        // point where the connection's fault is due.
        let limit = max_batch.min(st.fs.room());
        let symbol = first.symbol.clone();
        let mut batch = vec![first];
        while batch.len() < limit {
            match due.next_if(|t| t.symbol == symbol) {
                Some(t) => batch.push(t),
                None => break,
            }
        }
        let frames = match batch.as_slice() {
            [one] if max_batch == 1 => wire.trade_frames(shared, &st.subs, one),
            many => vec![wire.batch_frame(shared, many)],
        };
        for frame in frames {
            if send(conn, &**wire, frame).await.is_err() {
                return Act::End;
            }
        }
        st.fs.sent += batch.len();
        match apply_due(conn, wire, &mut st.fs).await {
            Act::Continue => {}
            other => return other,
        }
    }
    Act::Continue
}

/// The trades grouped by symbol (in order of each symbol's first trade), each symbol's in
/// their published order: a venue that batches pushes one symbol's trades together.
fn by_symbol(trades: Vec<MockTrade>) -> Vec<MockTrade> {
    let mut groups: Vec<Vec<MockTrade>> = Vec::new();
    for t in trades {
        match groups
            .iter_mut()
            .find(|g| g.first().is_some_and(|f| f.symbol == t.symbol))
        {
            Some(g) => g.push(t),
            None => groups.push(vec![t]),
        }
    }
    groups.into_iter().flatten().collect()
}

/// Sends the venue's heartbeats, after the trades they vouch for.
async fn send_heartbeats<W: Wire>(
    conn: &mut WsConn,
    shared: &Shared,
    wire: &Arc<W>,
    st: &mut ConnState,
) -> Act {
    match deliver(conn, shared, wire, st).await {
        Act::Continue => {}
        other => return other,
    }
    for f in wire.heartbeat_frames(shared, &st.subs, st.cursor) {
        if send(conn, &**wire, f).await.is_err() {
            return Act::End;
        }
    }
    if wire.protocol_ping() && conn.send_ping(b"mock".to_vec()).await.is_err() {
        return Act::End;
    }
    Act::Continue
}

/// Applies the connection's fault when its count is reached.
async fn apply_due<W: Wire>(conn: &mut WsConn, wire: &Arc<W>, fs: &mut FaultState) -> Act {
    let Some(fault) = fs.fault else {
        return Act::Continue;
    };
    let due = match fault {
        WsFault::DropAfter(n)
        | WsFault::CloseAfter(n)
        | WsFault::StallAfter(n)
        | WsFault::MalformedAfter(n)
        | WsFault::RequestReconnectAfter(n) => fs.sent >= n,
        WsFault::SkipAfter { after, .. } | WsFault::HangAfter { after, .. } => fs.sent >= after,
    };
    if !due {
        return Act::Continue;
    }
    fs.fault = None;
    match fault {
        WsFault::DropAfter(_) => Act::Drop,
        WsFault::CloseAfter(_) => {
            let _ = conn.close().await;
            Act::End
        }
        WsFault::StallAfter(_) => {
            // A hung venue: no data, no heartbeats, no answers, not even to protocol pings.
            conn.freeze().await;
            Act::End
        }
        WsFault::HangAfter { ping_every, .. } => {
            conn.hang_pinging(ping_every).await;
            Act::End
        }
        WsFault::MalformedAfter(_) => {
            if send(conn, &**wire, wire.malformed_frame()).await.is_err() {
                return Act::End;
            }
            Act::Continue
        }
        WsFault::SkipAfter { skip, .. } => {
            fs.skipping = skip;
            Act::Continue
        }
        WsFault::RequestReconnectAfter(_) => match wire.reconnect_frame() {
            Some(f) => {
                if send(conn, &**wire, f).await.is_ok() {
                    Act::Continue
                } else {
                    Act::End
                }
            }
            None => {
                let _ = conn.close().await;
                Act::End
            }
        },
    }
}
