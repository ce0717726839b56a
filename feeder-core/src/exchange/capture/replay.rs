//! A source that plays a capture back through the venue's own parsers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::format::{decode_http, parse_headers, CaptureError, Direction, Kind, Reader, Record};
use super::writer::capture_files;
use crate::error::ExchangeError;
use crate::exchange::rest::sort_unique;
use crate::exchange::{
    Completeness, Exchange, ExchangeContext, ExchangeStats, HttpResponse, PollVenue, StreamVenue,
};
use crate::model::{Gap, Symbol, Timestamp, Trade};
use crate::pipeline::{IdJumpLimit, Watermark};

/// How fast a capture is played back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speed {
    /// As fast as the pipeline takes it.
    Max,
    /// This many times as fast as it was recorded (1: at the pace it was recorded).
    Times(u32),
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// `max`, or a factor like `1x`, `10x`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        s.strip_suffix('x')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .map(Speed::Times)
            .ok_or_else(|| format!("{s:?} is not a speed: max, or a factor like 1x or 10x"))
    }
}

/// What to play back: the directory of the capture files, a window of receive times and a
/// pace. Shared by the exchanges of one replay.
#[derive(Clone, Debug)]
pub struct ReplaySource {
    dir: PathBuf,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    speed: Speed,
    /// Counts the exchanges whose replay ended.
    finished: Arc<tokio::sync::watch::Sender<usize>>,
}

impl ReplaySource {
    /// Every record of the capture files in `dir`, as fast as possible.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            from: None,
            to: None,
            speed: Speed::Max,
            finished: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Only records received at or after `from`, and before `to`.
    pub fn window(mut self, from: Option<Timestamp>, to: Option<Timestamp>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// The pace.
    pub fn speed(mut self, speed: Speed) -> Self {
        self.speed = speed;
        self
    }

    /// Waits until `n` exchanges replaying this source have ended (to stop the feeder once
    /// every capture is played).
    pub async fn wait_finished(&self, n: usize) {
        let mut rx = self.finished.subscribe();
        let _ = rx.wait_for(|done| *done >= n).await;
    }
}

/// An [`Exchange`] that plays back a capture made by the drivers (see
/// [`CaptureConfig`](crate::config::CaptureConfig)) instead of connecting anywhere.
///
/// Each WebSocket frame received goes through the venue's [`StreamVenue::parse`], each REST
/// answer through its [`PollVenue::parse_trades`] (keeping, as the drivers do, only what is
/// newer than the stream's cursor, oldest first), with the captured receive time as the
/// trades' `received_at`. The gaps the drivers recorded are sent again.
///
/// Candles close by the capture's own times: the completeness the drivers reported is
/// replayed on the capture's clock (the receive times) and handed to the pipeline as
/// [`Completeness::UpTo`], so the wall clock of the replay plays no part, and two replays of
/// one capture give the same events in the same order at any speed.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use feeder_core::exchange::{ReplayExchange, ReplaySource, Speed, StreamVenue};
/// # fn demo(venue: Arc<dyn StreamVenue>) {
/// let source = ReplaySource::new("/var/lib/feeder/capture").speed(Speed::Max);
/// let exchange = ReplayExchange::new("bitstamp", source).with_stream(venue);
/// # let _ = exchange; }
/// ```
pub struct ReplayExchange {
    name: Arc<str>,
    stream: Option<Arc<dyn StreamVenue>>,
    poll: Option<Arc<dyn PollVenue>>,
    source: ReplaySource,
}

impl std::fmt::Debug for ReplayExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayExchange")
            .field("name", &self.name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ReplayExchange {
    /// Plays back the capture of exchange `name` from `source`.
    pub fn new(name: &str, source: ReplaySource) -> Self {
        Self {
            name: Arc::from(name),
            stream: None,
            poll: None,
            source,
        }
    }

    /// Parses WebSocket frames with `venue`.
    pub fn with_stream(mut self, venue: Arc<dyn StreamVenue>) -> Self {
        self.stream = Some(venue);
        self
    }

    /// Parses REST answers with `venue`.
    pub fn with_poll(mut self, venue: Arc<dyn PollVenue>) -> Self {
        self.poll = Some(venue);
        self
    }
}

/// Records read off the files, in batches.
enum Item {
    Records(Vec<Record>),
    Damaged(PathBuf, CaptureError),
}

/// Records read off the files at once, to keep the channel hops few.
const READ_BATCH: usize = 256;

/// Reads the files in order on a thread of its own: decoding is blocking work.
fn read_files(files: Vec<PathBuf>, tx: mpsc::Sender<Item>) {
    for path in files {
        let reader = match Reader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                if tx.blocking_send(Item::Damaged(path, e)).is_err() {
                    return;
                }
                continue;
            }
        };
        let mut batch = Vec::with_capacity(READ_BATCH);
        for r in reader {
            match r {
                Ok(record) => {
                    batch.push(record);
                    if batch.len() == READ_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH));
                        if tx.blocking_send(Item::Records(full)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let records = std::mem::take(&mut batch);
                    if tx.blocking_send(Item::Records(records)).is_err()
                        || tx.blocking_send(Item::Damaged(path.clone(), e)).is_err()
                    {
                        return;
                    }
                }
            }
        }
        if !batch.is_empty() && tx.blocking_send(Item::Records(batch)).is_err() {
            return;
        }
    }
}

/// Counts the exchange as ended however its run ends.
struct Ended<'a>(&'a ReplaySource);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.finished.send_modify(|n| *n += 1);
    }
}

#[async_trait]
impl Exchange for ReplayExchange {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, ctx: ExchangeContext) -> Result<(), ExchangeError> {
        let _ended = Ended(&self.source);
        let dir = &self.source.dir;
        let files = capture_files(dir, &self.name).map_err(|e| {
            ExchangeError::Config(format!(
                "{}: cannot list the capture in {}: {e}",
                self.name,
                dir.display()
            ))
        })?;
        if files.is_empty() {
            return Err(ExchangeError::Config(format!(
                "{}: no capture files of it in {}",
                self.name,
                dir.display()
            )));
        }
        tracing::info!(exchange = &*self.name, files = files.len(), dir = %dir.display(), "replaying");
        // Each file is what this source reaches, as a connection is for a driver.
        ExchangeStats::add(&ctx.stats.contacts, files.len() as u64);
        let (tx, mut rx) = mpsc::channel(16);
        let reader = tokio::task::spawn_blocking(move || read_files(files, tx));
        let mut play = Play::new(self, &ctx);
        let result = async {
            for symbol in &ctx.symbols {
                ctx.sink
                    .progress(&self.name, symbol, Completeness::Behind)
                    .await?;
            }
            loop {
                let item = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    item = rx.recv() => item,
                };
                match item {
                    None => break,
                    Some(Item::Records(records)) => {
                        for r in records {
                            if !play.record(r).await? {
                                return play.finish().await;
                            }
                        }
                    }
                    Some(Item::Damaged(path, e)) => {
                        play.damaged += 1;
                        tracing::warn!(exchange = &*self.name, file = %path.display(), error = %crate::error::ErrorChain(&e), "capture file damaged: read up to the damage");
                    }
                }
            }
            play.finish().await
        }
        .await;
        drop(rx);
        let _ = reader.await;
        tracing::info!(
            exchange = &*self.name,
            records = play.records,
            trades = play.trades,
            damaged_files = play.damaged,
            "replay ended"
        );
        result
    }
}

/// A response waiting for the rest of its walk through pages.
struct Page {
    time: Timestamp,
    record: Record,
}

/// The state of one replay run.
struct Play<'a> {
    ex: &'a ReplayExchange,
    ctx: &'a ExchangeContext,
    /// Per configured symbol, in the configuration's order (so that what is sent is in one
    /// order every time): the completeness the drivers reported, on the capture's clock, and
    /// the last value sent.
    marks: Vec<(Symbol, Watermark, Option<i64>)>,
    /// The REST answers of one walk through pages, for one symbol: they are parsed and
    /// delivered together, as the drivers do.
    pages: Option<(Symbol, Vec<Page>)>,
    /// The wall clock's instant and the capture's time of the first record played, for a
    /// paced replay.
    start: Option<(tokio::time::Instant, i64)>,
    last_time: Option<i64>,
    out: Vec<Trade>,
    /// For venues with consecutive ids: trades read after a jump in ids, held while the
    /// driver backfilled the hole, as it held them.
    held: Option<Held>,
    records: u64,
    trades: u64,
    damaged: u64,
}

/// Trades the driver held back after a jump in a stream's consecutive ids: it delivered the
/// trades before the jump, backfilled each jumped stream over REST, then delivered these.
struct Held {
    trades: Vec<Trade>,
    /// The newest id held per symbol, to find the jumps of frames read in the same burst.
    newest: Vec<(Symbol, u128)>,
    /// Jumped streams whose backfill has not reported live yet.
    waiting: Vec<Symbol>,
    /// Whether a REST answer came since: a frame after one is read after the backfill.
    answered: bool,
    /// The receive time of the last frame held.
    time: i64,
}

impl<'a> Play<'a> {
    fn new(ex: &'a ReplayExchange, ctx: &'a ExchangeContext) -> Self {
        Self {
            ex,
            ctx,
            marks: (ctx.symbols.iter())
                .map(|s| (s.clone(), Watermark::default(), None))
                .collect(),
            pages: None,
            start: None,
            last_time: None,
            out: Vec::new(),
            held: None,
            records: 0,
            trades: 0,
            damaged: 0,
        }
    }

    /// Plays one record; false once past the end of the window.
    async fn record(&mut self, r: Record) -> Result<bool, ExchangeError> {
        let t = r.time.unix_nanos();
        if self.ex.source.to.is_some_and(|to| t >= to.unix_nanos()) {
            return Ok(false);
        }
        if self
            .ex
            .source
            .from
            .is_some_and(|from| t < from.unix_nanos())
        {
            // Before the window only the reported completeness is followed.
            if r.kind == Kind::Progress {
                self.on_progress(&r, false).await?;
            }
            return Ok(true);
        }
        self.pace(t).await;
        self.records += 1;
        self.last_time = Some(t);
        let continues_walk = matches!(r.kind, Kind::HttpRequest | Kind::HttpResponse)
            && self
                .pages
                .as_ref()
                .is_some_and(|(s, _)| s.as_str().as_bytes() == &r.tag[..]);
        if !continues_walk {
            self.deliver_pages().await?;
        }
        let frame = matches!(r.kind, Kind::WsText | Kind::WsBinary) && r.direction == Direction::In;
        let backfilled = self.held.as_ref().is_some_and(|h| h.answered);
        if (frame && backfilled) || matches!(r.kind, Kind::Connect | Kind::Disconnect) {
            self.release().await?;
        }
        match (r.kind, r.direction) {
            (Kind::WsText | Kind::WsBinary, Direction::In) => self.on_frame(&r).await?,
            (Kind::HttpResponse, Direction::In) => {
                if let Some(h) = &mut self.held {
                    h.answered = true;
                }
                self.on_page(r)
            }
            (Kind::Progress, _) => {
                self.on_progress(&r, true).await?;
                let tag = r.tag_str();
                if let Some(h) = &mut self.held {
                    if r.payload.first() == Some(&0) {
                        h.waiting.retain(|s| s.as_str() != tag);
                    }
                    if h.waiting.is_empty() {
                        self.release().await?;
                    }
                }
            }
            (Kind::Gap, _) => self.on_gap(&r).await?,
            _ => {}
        }
        Ok(true)
    }

    /// Waits until the record is due, for a paced replay.
    async fn pace(&mut self, t: i64) {
        let Speed::Times(times) = self.ex.source.speed else {
            return;
        };
        let (at, t0) = *self
            .start
            .get_or_insert_with(|| (tokio::time::Instant::now(), t));
        let ahead = (t.saturating_sub(t0).max(0) as u64) / u64::from(times);
        let due = at + Duration::from_nanos(ahead);
        tokio::select! {
            _ = self.ctx.shutdown.cancelled() => {}
            _ = tokio::time::sleep_until(due) => {}
        }
    }

    async fn on_frame(&mut self, r: &Record) -> Result<(), ExchangeError> {
        let Some(venue) = &self.ex.stream else {
            return Ok(());
        };
        self.out.clear();
        if let Err(e) = venue.parse(&r.payload, r.time, &mut self.out) {
            self.ctx.parse_error(&self.ex.name, &e, &r.payload);
            self.out.clear();
        }
        let mut trades = std::mem::take(&mut self.out);
        let now = r.time.unix_nanos();
        if let Some(h) = &mut self.held {
            // Read in the same burst as the jump: held with it, their own jumps backfilled
            // with it.
            for t in &trades {
                note_id(&mut h.newest, &mut h.waiting, t);
            }
            h.trades.append(&mut trades);
            h.time = now;
            return Ok(());
        }
        if let Some(at) = self.first_jump(&trades) {
            let rest = trades.split_off(at);
            self.deliver(trades, now).await?;
            let mut held = Held {
                trades: Vec::new(),
                newest: Vec::new(),
                waiting: Vec::new(),
                answered: false,
                time: now,
            };
            for t in &rest {
                if let Some(c) = self.ctx.cursors.get(&t.symbol) {
                    if let Some(id) = c.trade_id.as_number() {
                        if !held.newest.iter().any(|(s, _)| *s == t.symbol) {
                            held.newest.push((t.symbol.clone(), id));
                        }
                    }
                }
                note_id(&mut held.newest, &mut held.waiting, t);
            }
            held.trades = rest;
            self.held = Some(held);
            return Ok(());
        }
        self.deliver(trades, now).await
    }

    /// Where the first jump in consecutive ids is among `trades`, for a venue whose ids are
    /// consecutive and whose stream was backfilled.
    fn first_jump(&self, trades: &[Trade]) -> Option<usize> {
        let venue = self.ex.stream.as_ref()?;
        if !venue.ids_are_consecutive() || self.ex.poll.is_none() {
            return None;
        }
        let mut newest: Vec<(Symbol, u128)> = Vec::new();
        for (i, t) in trades.iter().enumerate() {
            let id = t.trade_id.as_number()?;
            let prev = match newest.iter_mut().find(|(s, _)| *s == t.symbol) {
                Some((_, n)) => Some(n),
                None => {
                    let c = self
                        .ctx
                        .cursors
                        .get(&t.symbol)
                        .and_then(|c| c.trade_id.as_number());
                    newest.push((t.symbol.clone(), c.unwrap_or(id)));
                    newest.last_mut().map(|(_, n)| n)
                }
            };
            let Some(prev) = prev else { continue };
            if id > *prev + 1 && IdJumpLimit::DEFAULT.allows(*prev, id) {
                return Some(i);
            }
            *prev = (*prev).max(id);
        }
        None
    }

    /// Delivers what was held after a jump.
    async fn release(&mut self) -> Result<(), ExchangeError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.deliver(held.trades, held.time).await
    }

    fn on_page(&mut self, r: Record) {
        let Some(symbol) = Symbol::parse(&r.tag_str()).ok() else {
            return;
        };
        let page = Page {
            time: r.time,
            record: r,
        };
        match &mut self.pages {
            Some((_, pages)) => pages.push(page),
            None => self.pages = Some((symbol, vec![page])),
        }
    }

    /// Parses a walk's pages and delivers what is newer than the stream's cursor.
    async fn deliver_pages(&mut self) -> Result<(), ExchangeError> {
        let Some((symbol, pages)) = self.pages.take() else {
            return Ok(());
        };
        let Some(venue) = &self.ex.poll else {
            return Ok(());
        };
        let mut trades = Vec::new();
        let mut last = 0;
        for page in &pages {
            let Some(parts) = decode_http(&page.record.payload) else {
                continue;
            };
            if !(200..300).contains(&parts.status) {
                continue;
            }
            let headers = parse_headers(parts.headers);
            let resp = HttpResponse {
                status: parts.status,
                headers: &headers,
                body: parts.body,
            };
            let before = trades.len();
            if let Err(e) = venue.parse_trades(&symbol, &resp, page.time, &mut trades) {
                self.ctx.parse_error(&self.ex.name, &e, parts.body);
                trades.truncate(before);
            }
            last = page.time.unix_nanos();
        }
        if let Some(c) = self.ctx.cursors.get(&symbol) {
            trades.retain(|t| c.is_older_than(t) && t.trade_id != c.trade_id);
        }
        self.deliver(sort_unique(trades), last).await
    }

    /// Sends on the completeness reached by `now` on the capture's clock, then the trades.
    async fn deliver(&mut self, trades: Vec<Trade>, now: i64) -> Result<(), ExchangeError> {
        if trades.is_empty() {
            return Ok(());
        }
        self.advance(now).await?;
        for t in &trades {
            if let Some((_, wm, _)) = self.marks.iter_mut().find(|(s, _, _)| *s == t.symbol) {
                wm.on_trade(t.timestamp.unix_nanos(), now);
            }
        }
        self.trades += trades.len() as u64;
        self.ctx.deliver(&self.ex.name, trades).await
    }

    /// Sends `UpTo` for every stream whose completeness moved on by `now`.
    async fn advance(&mut self, now: i64) -> Result<(), ExchangeError> {
        for (symbol, wm, sent) in &mut self.marks {
            let Some(at) = wm.at(now) else { continue };
            if sent.is_some_and(|s| s >= at) {
                continue;
            }
            *sent = Some(at);
            let upto = Completeness::UpTo(Timestamp::from_unix_nanos(at, 9));
            self.ctx.sink.progress(&self.ex.name, symbol, upto).await?;
        }
        Ok(())
    }

    async fn on_progress(&mut self, r: &Record, send: bool) -> Result<(), ExchangeError> {
        let completeness = match (r.payload.first(), r.payload.get(1..9)) {
            (Some(0), _) => Completeness::Live,
            (Some(1), _) => Completeness::Behind,
            (Some(2), Some(t)) => Completeness::UpTo(Timestamp::from_unix_nanos(
                i64::from_le_bytes(t.try_into().unwrap_or_default()),
                9,
            )),
            _ => return Ok(()),
        };
        let tag = r.tag_str();
        if let Some((_, wm, _)) = self.marks.iter_mut().find(|(s, _, _)| s.as_str() == tag) {
            wm.set(completeness);
        }
        if send {
            self.advance(r.time.unix_nanos()).await?;
        }
        Ok(())
    }

    async fn on_gap(&mut self, r: &Record) -> Result<(), ExchangeError> {
        match serde_json::from_slice::<Gap>(&r.payload) {
            Ok(gap) => self.ctx.sink.send_gap(gap).await,
            Err(e) => {
                tracing::warn!(exchange = &*self.ex.name, error = %e, "a recorded gap could not be read; skipped");
                Ok(())
            }
        }
    }

    /// At the end: the last walk's pages, and the completeness reached by the last record.
    async fn finish(&mut self) -> Result<(), ExchangeError> {
        self.deliver_pages().await?;
        self.release().await?;
        if let Some(t) = self.last_time {
            self.advance(t).await?;
        }
        Ok(())
    }
}

/// Notes a held trade's id; a jump makes its stream wait for a backfill.
fn note_id(newest: &mut Vec<(Symbol, u128)>, waiting: &mut Vec<Symbol>, t: &Trade) {
    let Some(id) = t.trade_id.as_number() else {
        return;
    };
    match newest.iter_mut().find(|(s, _)| *s == t.symbol) {
        Some((_, prev)) => {
            if id > *prev + 1
                && IdJumpLimit::DEFAULT.allows(*prev, id)
                && !waiting.contains(&t.symbol)
            {
                waiting.push(t.symbol.clone());
            }
            *prev = (*prev).max(id);
        }
        None => newest.push((t.symbol.clone(), id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("1x".parse::<Speed>(), Ok(Speed::Times(1)));
        assert_eq!("10x".parse::<Speed>(), Ok(Speed::Times(10)));
        assert!("0x".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }
}
