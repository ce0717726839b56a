//! Starting the pipeline's state again from the stores in the middle of a run, for a
//! source whose streams another process may have written meanwhile (see [`Resync`]).

use std::sync::Arc;

use crate::exchange::{Cursor, Resync};
use crate::model::{Event, Symbol};
use crate::writer::{ErrorChain, WriterHandle};

use super::stage::{StageTotals, Stages};

/// Does what [`Resync`] says: asks every writer where its store left off (each after writing
/// what is queued before), starts the valve and the candles again from the oldest point of
/// each stream, and rebuilds the open candles from the first store (oldest point first) that
/// can read them back, as a start-up does. Returns the candles to fan out. On a store that
/// cannot say where it left off, the state is dropped all the same and `done` fails.
pub(super) async fn resync(
    stages: &mut Stages,
    writers: &[WriterHandle],
    resync: Resync,
    totals: &mut StageTotals,
) -> Vec<Event> {
    let Resync { streams, done } = resync;
    let mut points = Vec::with_capacity(writers.len());
    for w in writers {
        match w.resume(streams.clone()).await {
            Some(Ok(p)) => points.push(p),
            Some(Err(e)) => {
                tracing::error!(writer = w.name(), error = %ErrorChain(&e), "cannot start the streams again from the stores");
                stages.restart(&[]);
                done.fail();
                return Vec::new();
            }
            None => {
                tracing::error!(
                    writer = w.name(),
                    "the writer is gone: cannot start the streams again"
                );
                stages.restart(&[]);
                done.fail();
                return Vec::new();
            }
        }
    }
    let mut seeds: Vec<(Arc<str>, Symbol, Cursor)> = Vec::new();
    for (ex, sym) in &streams {
        let oldest = points
            .iter()
            .flatten()
            .filter(|(e, s, _)| e == ex && s == sym)
            .map(|(_, _, c)| c)
            .min_by(|a, b| super::cursor_order(a, b));
        if let Some(c) = oldest {
            seeds.push((ex.clone(), sym.clone(), c.clone()));
        }
    }
    stages.restart(&seeds);
    let mut rebuilt_streams = 0usize;
    for (ex, sym, upto) in &seeds {
        let Some(from) = stages.rebuild_from(upto.timestamp) else {
            break;
        };
        let mut order: Vec<(usize, &Cursor)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (_, _, c) = p.iter().find(|(e, s, _)| e == ex && s == sym)?;
                Some((i, c))
            })
            .collect();
        order.sort_by(|a, b| super::cursor_order(a.1, b.1));
        for (i, _) in order {
            let w = &writers[i];
            match w.replay(ex.clone(), sym.clone(), from, upto.clone()).await {
                Some(Ok(Some(events))) => {
                    for e in &events {
                        stages.rebuild(ex, sym, e);
                    }
                    stages.rebuilt(ex, sym, from, upto.timestamp, true);
                    rebuilt_streams += 1;
                    break;
                }
                Some(Ok(None)) | None => stages.rebuilt(ex, sym, from, upto.timestamp, false),
                Some(Err(e)) => {
                    tracing::warn!(
                        exchange = %ex, symbol = %sym, writer = w.name(), error = %ErrorChain(&e),
                        "cannot read the stored trades back; the interrupted candles are marked incomplete"
                    );
                    stages.rebuilt(ex, sym, from, upto.timestamp, false);
                }
            }
        }
    }
    tracing::info!(
        streams = streams.len(),
        resumed = seeds.len(),
        rebuilt = rebuilt_streams,
        "started the streams again from the stores"
    );
    done.confirm();
    stages.take_candles(totals)
}
