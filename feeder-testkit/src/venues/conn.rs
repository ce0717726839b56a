//! The WebSocket connection loop both mock venues share: subscriptions, trades from the
//! history, the venue's heartbeats, and injected faults.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use feeder_core::model::Symbol;
use tokio::sync::broadcast::error::RecvError;

use super::{Control, MockTrade, Shared, WsFault};
use crate::ws::WsConn;

/// What a connection subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    /// Symbols whose trades are sent.
    pub trades: HashSet<Symbol>,
    /// Symbols whose venue heartbeats are sent (Coinbase).
    pub heartbeats: HashSet<Symbol>,
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
    /// The venue's periodic heartbeats for `subs`, if it has any.
    fn heartbeat_frames(&self, shared: &Shared, subs: &Subs) -> Vec<String>;
    /// The venue's request to reconnect; `None` when it has none (a close frame is sent).
    fn reconnect_frame(&self) -> Option<String>;
    /// How often the venue sends heartbeats on its own, if it does.
    fn heartbeat_every(&self, shared: &Shared) -> Option<Duration>;
}

/// Where a connection stands with its fault.
#[derive(Debug)]
struct FaultState {
    fault: Option<WsFault>,
    sent: usize,
    skipping: usize,
}

enum Act {
    Continue,
    /// Stop serving (the connection was closed or went silent).
    End,
    /// Drop the TCP connection abruptly and stop.
    Drop,
}

/// Serves one connection until the client leaves, a fault ends it, or the mock is dropped.
pub(crate) async fn serve<W: Wire>(mut conn: WsConn, shared: Arc<Shared>, wire: Arc<W>) {
    let mut subs = Subs::default();
    let mut fs = FaultState {
        fault: shared.take_fault(),
        sent: 0,
        skipping: 0,
    };
    let mut published = shared.subscribe_published();
    let mut control = shared.subscribe_control();
    let mut cursor = *published.borrow_and_update();
    let every = wire.heartbeat_every(&shared);
    let mut heartbeat = tokio::time::interval(every.unwrap_or(Duration::from_secs(3_600)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick of an interval is immediate; the venue's first heartbeat comes later.
    heartbeat.reset();

    loop {
        tokio::select! {
            msg = conn.recv() => {
                let Some(msg) = msg else { return };
                let Some(text) = msg.as_text() else { continue };
                let reply = wire.on_message(&shared, text, &mut subs);
                if reply.subscribed {
                    // Trades published before the subscription are not this client's.
                    cursor = shared.published_count();
                }
                for f in reply.frames {
                    if conn.send_text(f).await.is_err() {
                        return;
                    }
                }
                if reply.subscribed {
                    shared.subscription_acked();
                    match apply_due(&mut conn, &wire, &mut fs).await {
                        Act::Continue => {}
                        Act::End => return,
                        Act::Drop => return conn.drop_abruptly(),
                    }
                }
            }
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
                let len = *published.borrow_and_update();
                let frames = shared.with_history(|h| {
                    h.get(cursor..len)
                        .unwrap_or_default()
                        .iter()
                        .filter(|e| subs.trades.contains(&e.trade.symbol))
                        .map(|e| (e.silent, wire.trade_frame(&shared, &e.trade)))
                        .collect::<Vec<_>>()
                });
                cursor = len.max(cursor);
                for (silent, frame) in frames {
                    if silent {
                        continue;
                    }
                    if fs.skipping > 0 {
                        fs.skipping -= 1;
                        continue;
                    }
                    if conn.send_text(frame).await.is_err() {
                        return;
                    }
                    fs.sent += 1;
                    match apply_due(&mut conn, &wire, &mut fs).await {
                        Act::Continue => {}
                        Act::End => return,
                        Act::Drop => return conn.drop_abruptly(),
                    }
                }
            }
            _ = heartbeat.tick(), if every.is_some() => {
                for f in wire.heartbeat_frames(&shared, &subs) {
                    if conn.send_text(f).await.is_err() {
                        return;
                    }
                }
            }
            c = control.recv() => {
                let c = match c {
                    Ok(c) => c,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let ok = match c {
                    Control::Drop => {
                        conn.drop_abruptly();
                        return;
                    }
                    Control::Malformed => conn.send_text(wire.malformed_frame()).await.is_ok(),
                    Control::Heartbeat => {
                        let mut ok = true;
                        for f in wire.heartbeat_frames(&shared, &subs) {
                            ok = ok && conn.send_text(f).await.is_ok();
                        }
                        ok
                    }
                    Control::RequestReconnect => match wire.reconnect_frame() {
                        Some(f) => conn.send_text(f).await.is_ok(),
                        None => {
                            let _ = conn.close().await;
                            return;
                        }
                    },
                };
                if !ok {
                    return;
                }
            }
        }
    }
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
        WsFault::SkipAfter { after, .. } => fs.sent >= after,
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
            conn.stall().await;
            Act::End
        }
        WsFault::MalformedAfter(_) => {
            if conn.send_text(wire.malformed_frame()).await.is_err() {
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
                if conn.send_text(f).await.is_ok() {
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
