//! A venue described as data, the one factory that builds every venue from its description,
//! and the helpers a venue's parser needs.
//!
//! A venue says what is specific to it in a [`VenueSpec`]: its name, the transports it offers
//! with their default endpoints, how to build it from its config entry and, optionally, how
//! to list its instruments. [`VenueFactory`] turns that into an
//! [`ExchangeFactory`]: it applies every exchange option (`transport`, `ws_url`, `rest_url`,
//! `poll_interval`, `request_timeout`, `backfill`, `stale_timeout`) the same way for the
//! bundled venues and for one written in another crate.
//!
//! ```
//! use feeder_core::prelude::*;
//!
//! struct Acme { name: Arc<str> }
//!
//! impl Acme {
//!     fn new(cfg: &ExchangeConfig) -> Result<Self, ConfigError> {
//!         Ok(Self { name: Arc::from(cfg.name.as_str()) })
//!     }
//! }
//!
//! impl StreamVenue for Acme {
//!     fn url(&self, _: &[Symbol]) -> Result<Url, ExchangeError> {
//!         Ok(Url::parse("wss://acme.invalid/ws").expect("a valid URL"))
//!     }
//!     fn subscribe(&self, _: &[Symbol]) -> Vec<WsMessage> {
//!         Vec::new()
//!     }
//!     fn parse(&self, _: &[u8], _: Timestamp, _: &mut Vec<Trade>) -> Result<Frame, ParseError> {
//!         Ok(Frame::Ignored)
//!     }
//! }
//!
//! const ACME: VenueSpec<Acme> = VenueSpec {
//!     name: "acme",
//!     transports: Transports::websocket("wss://acme.invalid/ws"),
//!     new: Acme::new,
//!     instruments: None,
//! };
//!
//! let mut registry = Registry::new();
//! registry.register_venue(ACME);
//! assert!(registry.exchange("acme").is_some());
//! ```

pub mod read;
mod symbols;

use std::sync::Arc;

use crate::config::{ConfigError, ExchangeConfig};
use crate::exchange::{
    Capture, Exchange, InstrumentsVenue, PollExchange, PollVenue, ReplayExchange, ReplaySource,
    StreamExchange, StreamVenue, Transport,
};
use crate::feeder::ExchangeFactory;

pub use symbols::SymbolTable;

/// Sent as `User-Agent` with a venue's REST requests: some venues (Coinbase) refuse requests
/// without one.
pub const USER_AGENT: &str = concat!("crypto-feeder/", env!("CARGO_PKG_VERSION"));

/// A venue as data: everything [`VenueFactory`] needs to build it from a config entry.
///
/// `V` is the venue's own type, which implements [`StreamVenue`], [`PollVenue`] or both (or,
/// for a source that drives itself, [`Exchange`]). Every field is plain data, so a
/// description is a `const`.
///
/// The venue must write its entry's `name` into [`Trade::exchange`](crate::model::Trade):
/// that name is how the dedup valve, the cursors that resume a stream and every store key
/// its trades. Under another name, a restart would not find where the stores left off.
pub struct VenueSpec<V> {
    /// The registry name, as `exchanges[].name` writes it (`bitstamp`).
    pub name: &'static str,
    /// The transports offered, their default endpoints and the drivers that run them.
    pub transports: Transports<V>,
    /// Builds the venue from its entry. The entry's `ws_url` and `rest_url` are already
    /// resolved for each transport offered (the override if given, else the default of
    /// [`transports`](Self::transports)) and checked (scheme, host); read them with
    /// [`ExchangeConfig::ws_endpoint`] and [`ExchangeConfig::rest_endpoint`]. Errors name the
    /// entry with [`ExchangeConfig::invalid`].
    pub new: fn(&ExchangeConfig) -> Result<V, ConfigError>,
    /// Builds the venue's instrument list (for `validate --online` and `symbols`), or `None`
    /// when it has none. Its entry may have no symbols.
    pub instruments: Option<ListInstruments>,
}

/// Builds a venue's instrument list from its entry (see [`VenueSpec::instruments`]).
pub type ListInstruments = fn(&ExchangeConfig) -> Result<Box<dyn InstrumentsVenue>, ConfigError>;

impl<V> Clone for VenueSpec<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for VenueSpec<V> {}

impl<V> std::fmt::Debug for VenueSpec<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VenueSpec")
            .field("name", &self.name)
            .field("transports", &self.transports)
            .field("instruments", &self.instruments.is_some())
            .finish()
    }
}

/// Builds the driver of a built venue for its entry.
type Drive<V> = fn(&ExchangeConfig, Arc<V>) -> Result<Arc<dyn Exchange>, ConfigError>;

/// Builds the replay of a built venue's capture, through its parsers.
type Replay<V> = fn(&ExchangeConfig, Arc<V>, &ReplaySource) -> Arc<dyn Exchange>;

/// The transports a venue offers, with their default endpoints and the drivers that run
/// them. Made by one of the constructors, which each require of the venue what its drivers
/// need.
pub struct Transports<V> {
    ws_url: Option<&'static str>,
    rest_url: Option<&'static str>,
    offered: &'static [Transport],
    drive: Drive<V>,
    /// `None` for a source that runs itself: it has no parsers to replay through.
    replay: Option<Replay<V>>,
}

impl<V> Clone for Transports<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Transports<V> {}

impl<V> std::fmt::Debug for Transports<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("offered", &self.offered)
            .field("ws_url", &self.ws_url)
            .field("rest_url", &self.rest_url)
            .finish()
    }
}

impl<V: StreamVenue + PollVenue> Transports<V> {
    /// A WebSocket stream from `ws_url`, backfilled over REST from `rest_url` (unless the
    /// entry says `backfill: false`), or REST polling of `rest_url` (`transport: rest`).
    pub const fn websocket_and_rest(ws_url: &'static str, rest_url: &'static str) -> Self {
        Self {
            ws_url: Some(ws_url),
            rest_url: Some(rest_url),
            offered: &[Transport::Websocket, Transport::Rest],
            drive: drive_both::<V>,
            replay: Some(|cfg, v, src| {
                let r = ReplayExchange::new(&cfg.name, src.clone());
                Arc::new(r.with_stream(v.clone()).with_poll(v))
            }),
        }
    }
}

impl<V: StreamVenue> Transports<V> {
    /// Only a WebSocket stream, from `ws_url`; nothing is backfilled.
    pub const fn websocket(ws_url: &'static str) -> Self {
        Self {
            ws_url: Some(ws_url),
            rest_url: None,
            offered: &[Transport::Websocket],
            drive: drive_stream::<V>,
            replay: Some(|cfg, v, src| {
                Arc::new(ReplayExchange::new(&cfg.name, src.clone()).with_stream(v))
            }),
        }
    }
}

impl<V: PollVenue> Transports<V> {
    /// Only REST polling, of `rest_url`.
    pub const fn rest(rest_url: &'static str) -> Self {
        Self {
            ws_url: None,
            rest_url: Some(rest_url),
            offered: &[Transport::Rest],
            drive: drive_poll::<V>,
            replay: Some(|cfg, v, src| {
                Arc::new(ReplayExchange::new(&cfg.name, src.clone()).with_poll(v))
            }),
        }
    }
}

impl<V: Exchange> Transports<V> {
    /// A source that runs itself (a synthetic market, a file replay): it is its own
    /// [`Exchange`], offers `offered` and reads the options it uses (`poll_interval`, ...)
    /// from its entry when built. Options that only the drivers read
    /// (`request_timeout`, `stale_timeout`, `backfill`) do not apply to it.
    pub const fn itself(offered: &'static [Transport]) -> Self {
        Self {
            ws_url: None,
            rest_url: None,
            offered,
            drive: drive_itself::<V>,
            replay: None,
        }
    }
}

impl<V> Transports<V> {
    /// The transports offered, in order of preference.
    pub fn offered(&self) -> &'static [Transport] {
        self.offered
    }

    /// The default WebSocket endpoint, when there is a stream.
    pub fn ws_url(&self) -> Option<&'static str> {
        self.ws_url
    }

    /// The default REST endpoint, when there is one.
    pub fn rest_url(&self) -> Option<&'static str> {
        self.rest_url
    }
}

/// The stream driver with every option of the entry that concerns it.
fn stream<V: StreamVenue>(cfg: &ExchangeConfig, venue: Arc<V>) -> StreamExchange<V> {
    let s = StreamExchange::new(&cfg.name, venue)
        .with_request_timeout(cfg.request_timeout)
        .with_stale_timeout(cfg.stale_timeout);
    match &cfg.capture {
        Some(c) => s.with_capture(Capture::new(&cfg.name, c.clone())),
        None => s,
    }
}

/// The poll driver with every option of the entry that concerns it.
fn poll<V: PollVenue>(cfg: &ExchangeConfig, venue: Arc<V>) -> Arc<dyn Exchange> {
    let p =
        PollExchange::new(&cfg.name, venue, cfg.poll_interval).with_timeout(cfg.request_timeout);
    match &cfg.capture {
        Some(c) => Arc::new(p.with_capture(Capture::new(&cfg.name, c.clone()))),
        None => Arc::new(p),
    }
}

fn not_offered(cfg: &ExchangeConfig) -> ConfigError {
    cfg.invalid(
        "transport",
        format!("{} does not offer {}", cfg.name, cfg.transport),
    )
}

fn drive_both<V: StreamVenue + PollVenue>(
    cfg: &ExchangeConfig,
    venue: Arc<V>,
) -> Result<Arc<dyn Exchange>, ConfigError> {
    Ok(match cfg.transport {
        Transport::Websocket if cfg.backfill => {
            Arc::new(stream(cfg, venue.clone()).with_backfill(venue))
        }
        Transport::Websocket => Arc::new(stream(cfg, venue)),
        Transport::Rest => poll(cfg, venue),
    })
}

fn drive_stream<V: StreamVenue>(
    cfg: &ExchangeConfig,
    venue: Arc<V>,
) -> Result<Arc<dyn Exchange>, ConfigError> {
    match cfg.transport {
        Transport::Websocket => Ok(Arc::new(stream(cfg, venue))),
        Transport::Rest => Err(not_offered(cfg)),
    }
}

fn drive_poll<V: PollVenue>(
    cfg: &ExchangeConfig,
    venue: Arc<V>,
) -> Result<Arc<dyn Exchange>, ConfigError> {
    match cfg.transport {
        Transport::Rest => Ok(poll(cfg, venue)),
        Transport::Websocket => Err(not_offered(cfg)),
    }
}

fn drive_itself<V: Exchange>(
    _cfg: &ExchangeConfig,
    venue: Arc<V>,
) -> Result<Arc<dyn Exchange>, ConfigError> {
    Ok(venue)
}

impl<V> VenueSpec<V> {
    /// `cfg` with its endpoints resolved: for each transport offered, the override if given
    /// (its scheme and host checked), else the default.
    pub fn resolve(&self, cfg: &ExchangeConfig) -> Result<ExchangeConfig, ConfigError> {
        let mut cfg = cfg.clone();
        if let Some(default) = self.transports.ws_url {
            cfg.ws_url = Some(cfg.ws_endpoint(default)?);
        }
        if let Some(default) = self.transports.rest_url {
            cfg.rest_url = Some(cfg.rest_endpoint(default)?);
        }
        Ok(cfg)
    }
}

/// The one [`ExchangeFactory`] of every venue described by a [`VenueSpec`]: bundled venues
/// and venues of other crates are built by exactly this code.
///
/// Building resolves the endpoints, calls the description's `new` and wraps the venue in the
/// driver of the entry's `transport`: a WebSocket stream with its `request_timeout` (for the
/// backfill's requests), `stale_timeout` (the venue's own when unset) and, with
/// `backfill: true` and a REST side, a backfill over REST; or a REST poll every
/// `poll_interval` with its `request_timeout`. Options a venue's transports do not use are
/// refused earlier, by [`Feeder::validate`](crate::feeder::Feeder::validate).
pub struct VenueFactory<V> {
    spec: VenueSpec<V>,
}

impl<V> VenueFactory<V> {
    /// The factory of `spec`.
    pub const fn new(spec: VenueSpec<V>) -> Self {
        Self { spec }
    }

    /// The description it builds from.
    pub fn spec(&self) -> &VenueSpec<V> {
        &self.spec
    }
}

impl<V> Clone for VenueFactory<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for VenueFactory<V> {}

impl<V> std::fmt::Debug for VenueFactory<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VenueFactory").field(&self.spec).finish()
    }
}

impl<V: Send + Sync + 'static> ExchangeFactory for VenueFactory<V> {
    fn transports(&self) -> Vec<Transport> {
        self.spec.transports.offered.to_vec()
    }

    fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError> {
        let cfg = self.spec.resolve(config)?;
        let venue = Arc::new((self.spec.new)(&cfg)?);
        (self.spec.transports.drive)(&cfg, venue)
    }

    fn records_capture(&self) -> bool {
        // The drivers record; a source that runs itself has nothing to replay through either.
        self.spec.transports.replay.is_some()
    }

    fn replay(
        &self,
        config: &ExchangeConfig,
        source: &ReplaySource,
    ) -> Option<Result<Arc<dyn Exchange>, ConfigError>> {
        let replay = self.spec.transports.replay?;
        let built = self.spec.resolve(config).and_then(|cfg| {
            let venue = Arc::new((self.spec.new)(&cfg)?);
            Ok(replay(&cfg, venue, source))
        });
        Some(built)
    }

    fn instruments(
        &self,
        config: &ExchangeConfig,
    ) -> Option<Result<Box<dyn InstrumentsVenue>, ConfigError>> {
        let list = self.spec.instruments?;
        Some(self.spec.resolve(config).and_then(|cfg| list(&cfg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::feeder::{Feeder, Registry};
    use crate::model::{Symbol, Timestamp, Trade};
    use crate::ParseError;

    /// A venue that only streams.
    struct Streams;

    impl StreamVenue for Streams {
        fn url(&self, _: &[Symbol]) -> Result<url::Url, crate::ExchangeError> {
            Ok(url::Url::parse("ws://127.0.0.1:1").expect("a URL"))
        }
        fn subscribe(&self, _: &[Symbol]) -> Vec<crate::exchange::WsMessage> {
            Vec::new()
        }
        fn parse(
            &self,
            _: &[u8],
            _: Timestamp,
            _: &mut Vec<Trade>,
        ) -> Result<crate::exchange::Frame, ParseError> {
            Ok(crate::exchange::Frame::Ignored)
        }
    }

    /// A venue that is only polled.
    struct Polls;

    impl PollVenue for Polls {
        fn trades_request(
            &self,
            _: &Symbol,
            _: crate::exchange::PollRequest<'_>,
        ) -> Result<crate::exchange::HttpRequest, crate::ExchangeError> {
            Ok(crate::exchange::HttpRequest::get(
                url::Url::parse("http://127.0.0.1:1/t").expect("a URL"),
            ))
        }
        fn parse_trades(
            &self,
            _: &Symbol,
            _: &crate::exchange::HttpResponse<'_>,
            _: Timestamp,
            _: &mut Vec<Trade>,
        ) -> Result<crate::exchange::Page, ParseError> {
            Ok(crate::exchange::Page::default())
        }
    }

    const STREAMS: VenueSpec<Streams> = VenueSpec {
        name: "streams",
        transports: Transports::websocket("wss://streams.invalid/ws"),
        new: |_| Ok(Streams),
        instruments: None,
    };

    const POLLS: VenueSpec<Polls> = VenueSpec {
        name: "polls",
        transports: Transports::rest("https://polls.invalid"),
        new: |cfg| {
            // What the constructor sees: the default endpoint, resolved.
            if cfg.rest_url.as_ref().map(url::Url::as_str) != Some("https://polls.invalid/") {
                return Err(cfg.invalid("rest_url", "not resolved"));
            }
            Ok(Polls)
        },
        instruments: None,
    };

    /// A source that runs itself.
    struct Runs;

    #[async_trait::async_trait]
    impl Exchange for Runs {
        fn name(&self) -> &str {
            "runs"
        }
        async fn run(
            &self,
            _: crate::exchange::ExchangeContext,
        ) -> Result<(), crate::ExchangeError> {
            Ok(())
        }
    }

    const RUNS: VenueSpec<Runs> = VenueSpec {
        name: "runs",
        transports: Transports::itself(&[Transport::Rest]),
        new: |_| Ok(Runs),
        instruments: None,
    };

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register_venue(STREAMS)
            .register_venue(POLLS)
            .register_venue(RUNS);
        r
    }

    /// `validate`'s message for the config whose `exchanges:` list is `entries`.
    fn refusal(entries: &str) -> Option<String> {
        let yaml = format!("exchanges:\n{entries}writers:\n  - type: none\n");
        let config = Config::from_yaml_str_with_env(&yaml, &|_| None).expect("parses");
        // No writer is registered: an error about `writers` means the exchanges passed.
        let e = Feeder::validate(&config, &registry()).expect_err("no writer");
        let e = e.to_string();
        (!e.starts_with("writers[0]")).then_some(e)
    }

    #[test]
    fn options_a_venues_transports_do_not_read_are_refused_naming_entry_and_key() {
        let ok = "  - name: streams\n    symbols: [BTC-USD]\n    stale_timeout: 1s\n  - name: polls\n    symbols: [BTC-USD]\n    transport: rest\n    poll_interval: 1s\n    request_timeout: 1s\n";
        assert_eq!(refusal(ok), None);
        for (entry, path) in [
            ("  - name: streams\n    symbols: [BTC-USD]\n    rest_url: http://127.0.0.1:1\n", "exchanges[0] (streams).rest_url: "),
            ("  - name: streams\n    symbols: [BTC-USD]\n    poll_interval: 10s\n", "exchanges[0] (streams).poll_interval: "),
            ("  - name: streams\n    symbols: [BTC-USD]\n    request_timeout: 10s\n", "exchanges[0] (streams).request_timeout: "),
            ("  - name: streams\n    symbols: [BTC-USD]\n    backfill: true\n", "exchanges[0] (streams).backfill: "),
            ("  - name: streams\n    symbols: [BTC-USD]\n  - name: polls\n    symbols: [BTC-USD]\n    transport: rest\n    ws_url: ws://127.0.0.1:1\n", "exchanges[1] (polls).ws_url: "),
            ("  - name: polls\n    symbols: [BTC-USD]\n    transport: rest\n    stale_timeout: 5s\n", "exchanges[0] (polls).stale_timeout: "),
        ] {
            let e = refusal(entry).unwrap_or_else(|| panic!("accepted:\n{entry}"));
            assert!(e.starts_with(path), "{e}");
        }
        let e = refusal("  - name: polls\n    symbols: [BTC-USD]\n").expect("refused");
        assert!(e.starts_with("exchanges[0] (polls).transport: "), "{e}");
    }

    #[test]
    fn a_capture_on_a_source_that_runs_itself_is_refused_not_ignored() {
        let capture = "    capture: { path: /tmp/never-made }\n";
        let plain = "  - name: runs\n    symbols: [BTC-USD]\n    transport: rest\n";
        assert_eq!(refusal(plain), None);
        let e = refusal(&format!("{plain}{capture}")).expect("refused");
        assert!(e.starts_with("exchanges[0] (runs).capture: "), "{e}");
        let driven = format!("  - name: streams\n    symbols: [BTC-USD]\n{capture}");
        assert_eq!(refusal(&driven), None);
    }

    #[test]
    fn entries_built_in_code_count_options_set_away_from_their_default() {
        let mut cfg = ExchangeConfig::new("streams", vec![Symbol::parse("BTC-USD").expect("ok")]);
        assert!(!cfg.is_set("poll_interval") && !cfg.is_set("backfill"));
        cfg.backfill = false;
        cfg.poll_interval = std::time::Duration::from_secs(1);
        assert!(cfg.is_set("backfill") && cfg.is_set("poll_interval"));
    }

    #[test]
    fn endpoints_default_or_override_with_their_scheme_and_host_checked() {
        let mut cfg = ExchangeConfig::new("acme", Vec::new());
        let d = cfg
            .rest_endpoint("https://www.bitstamp.net")
            .expect("the default");
        assert_eq!(d.as_str(), "https://www.bitstamp.net/");
        let o = url::Url::parse("http://127.0.0.1:9000/prefix").expect("a URL");
        cfg.rest_url = Some(o.clone());
        assert_eq!(cfg.rest_endpoint("https://x").expect("the override"), o);
        cfg.ws_url = Some(url::Url::parse("http://127.0.0.1:9000").expect("a URL"));
        let e = cfg.ws_endpoint("wss://x").expect_err("not a WebSocket URL");
        assert!(
            e.to_string().starts_with("exchanges[0] (acme).ws_url: "),
            "{e}"
        );
        cfg.rest_url = Some(url::Url::parse("mailto:a@b").expect("a URL"));
        assert!(cfg.rest_endpoint("https://x").is_err());
    }

    #[test]
    fn the_generic_factory_resolves_endpoints_and_refuses_transports_not_offered() {
        let f = VenueFactory::new(POLLS);
        let mut cfg = ExchangeConfig::new("polls", vec![Symbol::parse("BTC-USD").expect("ok")]);
        cfg.transport = Transport::Rest;
        assert_eq!(f.build(&cfg).expect("built").name(), "polls");
        cfg.transport = Transport::Websocket;
        assert!(f.build(&cfg).is_err());
        assert_eq!(f.transports(), [Transport::Rest]);
        assert!(f.instruments(&cfg).is_none());
        assert_eq!(
            VenueFactory::new(STREAMS).transports(),
            [Transport::Websocket]
        );
    }
}
