//! The registry of exchange and writer factories, keyed by the names used in the config.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::config::{ConfigError, ExchangeConfig, WriterConfig};
use crate::error::WriteError;
use crate::exchange::{Exchange, InstrumentsVenue, ReplaySource, Transport};
use crate::venue::{VenueFactory, VenueSpec};
use crate::writer::Writer;

/// Builds an exchange from its config entry. Building is pure: no I/O happens until the
/// exchange runs, so `crypto-feeder validate` can build everything offline.
pub trait ExchangeFactory: Send + Sync + 'static {
    /// The transports this venue offers, in order of preference.
    fn transports(&self) -> Vec<Transport>;

    /// Builds the exchange, or says what is wrong with its config.
    fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError>;

    /// Whether the entry's `options` map means something to this factory, which then reads
    /// and checks it in [`build`](Self::build). Venues take none (the default), so that a
    /// key there is an error rather than ignored.
    fn takes_options(&self) -> bool {
        false
    }

    /// Whether the exchanges it builds record the entry's `capture` (their traffic passes
    /// through the drivers that record it). False by default, so that a `capture` set on a
    /// source that would not record it is refused rather than believed in effect.
    fn records_capture(&self) -> bool {
        false
    }

    /// The venue's instrument list, at the endpoint `config` names (its `rest_url`, or the
    /// production one); `config.symbols` may be empty. `None` (the default) when the venue
    /// cannot list its instruments, and then nothing is checked online.
    fn instruments(
        &self,
        config: &ExchangeConfig,
    ) -> Option<Result<Box<dyn InstrumentsVenue>, ConfigError>> {
        let _ = config;
        None
    }

    /// An exchange that plays back the capture of `config`'s exchange from `source` through
    /// the venue's parsers instead of connecting ([`ReplayExchange`](crate::exchange::ReplayExchange)).
    /// `None` (the default) when the venue cannot be replayed.
    fn replay(
        &self,
        config: &ExchangeConfig,
        source: &ReplaySource,
    ) -> Option<Result<Arc<dyn Exchange>, ConfigError>> {
        let _ = (config, source);
        None
    }
}

/// An exchange factory whose exchanges replay a capture.
struct Replaying {
    inner: Arc<dyn ExchangeFactory>,
    source: ReplaySource,
}

impl ExchangeFactory for Replaying {
    fn transports(&self) -> Vec<Transport> {
        self.inner.transports()
    }

    fn records_capture(&self) -> bool {
        // A replay reads the capture rather than records it; the key stays as it was live.
        self.inner.records_capture()
    }

    fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError> {
        self.inner.replay(config, &self.source).unwrap_or_else(|| {
            Err(config.invalid("name", format!("{} cannot be replayed", config.name)))
        })
    }
}

/// Builds a writer from its config entry.
///
/// The writer's own keys are read once into [`Options`](Self::Options) by the feeder, checked
/// by [`check`](Self::check) without any I/O (that is all `crypto-feeder validate` does), and
/// handed to [`build`](Self::build).
#[async_trait]
pub trait WriterFactory: Send + Sync + 'static {
    /// The writer's own options: every key of its entry besides `type` and the keys all
    /// writers have. Declare it `#[serde(deny_unknown_fields)]`, so that a misspelt key is an
    /// error naming it and its line.
    type Options: DeserializeOwned + Send + 'static;

    /// Checks what the options' types cannot say (a path that must be absolute, a value in a
    /// range), without any I/O. Errors name the option with
    /// [`WriterConfig::option_error`]. Nothing more to check by default.
    fn check(&self, options: &Self::Options, config: &WriterConfig) -> Result<(), ConfigError> {
        let _ = (options, config);
        Ok(())
    }

    /// The directories [`open`](Self::open) creates, each with the option that names it
    /// (`path`, `spool_dir`), so that `crypto-feeder validate` can check that each can be
    /// created before anything runs. None by default.
    fn directories(&self, options: &Self::Options) -> Vec<(&'static str, PathBuf)> {
        let _ = options;
        Vec::new()
    }

    /// Opens the writer with its options (creates directories, connects, checks
    /// credentials). A bad URL or bad credentials fail here, at start-up, with a clear
    /// error. A [`ConfigError`] converts into a [`WriteError`] with `?`.
    async fn open(
        &self,
        options: Self::Options,
        config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError>;

    /// Reads and checks `config`'s options, without any I/O.
    fn validate(&self, config: &WriterConfig) -> Result<(), ConfigError> {
        self.check(&config.options()?, config)
    }

    /// Reads and checks `config`'s options, then opens the writer: the factory used on its
    /// own, without a [`Registry`].
    async fn build(&self, config: &WriterConfig) -> Result<Box<dyn Writer>, WriteError> {
        let options = config.options()?;
        self.check(&options, config)?;
        self.open(options, config).await
    }
}

/// A writer whose options were read and checked, ready to be opened.
pub struct PreparedWriter {
    open: futures::future::BoxFuture<'static, Result<Box<dyn Writer>, WriteError>>,
    /// What [`WriterFactory::directories`] said.
    directories: Vec<(&'static str, PathBuf)>,
}

impl std::fmt::Debug for PreparedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedWriter").finish_non_exhaustive()
    }
}

impl PreparedWriter {
    /// Opens the writer.
    pub async fn open(self) -> Result<Box<dyn Writer>, WriteError> {
        self.open.await
    }

    /// The directories opening it will create, with the option that names each (see
    /// [`WriterFactory::directories`]).
    pub fn directories(&self) -> &[(&'static str, PathBuf)] {
        &self.directories
    }
}

/// A [`WriterFactory`] of any options type, as the registry keeps it.
#[async_trait]
pub trait AnyWriterFactory: Send + Sync + 'static {
    /// Reads and checks `config`'s options, without any I/O.
    fn prepare(&self, config: &WriterConfig) -> Result<PreparedWriter, ConfigError>;

    /// Reads and checks `config`'s options, without any I/O, and drops them.
    fn validate(&self, config: &WriterConfig) -> Result<(), ConfigError> {
        self.prepare(config).map(drop)
    }

    /// Reads and checks `config`'s options, then opens the writer.
    async fn build(&self, config: &WriterConfig) -> Result<Box<dyn Writer>, WriteError> {
        self.prepare(config)?.open().await
    }
}

/// The factory, shared with the futures of the writers it prepares.
struct Shared<F>(Arc<F>);

#[async_trait]
impl<F: WriterFactory> AnyWriterFactory for Shared<F> {
    fn prepare(&self, config: &WriterConfig) -> Result<PreparedWriter, ConfigError> {
        let options: F::Options = config.options()?;
        self.0.check(&options, config)?;
        let directories = self.0.directories(&options);
        let factory = self.0.clone();
        let config = config.clone();
        Ok(PreparedWriter {
            open: Box::pin(async move { factory.open(options, &config).await }),
            directories,
        })
    }
}

/// Exchange and writer factories by name. The CLI registers the bundled ones; a program that
/// embeds the feeder registers its own the same way.
#[derive(Clone, Default)]
pub struct Registry {
    exchanges: BTreeMap<String, Arc<dyn ExchangeFactory>>,
    writers: BTreeMap<String, Arc<dyn AnyWriterFactory>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("exchanges", &self.exchanges.keys().collect::<Vec<_>>())
            .field("writers", &self.writers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the exchange factory for `name`.
    pub fn register_exchange(
        &mut self,
        name: impl Into<String>,
        factory: impl ExchangeFactory,
    ) -> &mut Self {
        self.exchanges.insert(name.into(), Arc::new(factory));
        self
    }

    /// Registers (or replaces) the venue `spec` describes under its name, built by the
    /// generic [`VenueFactory`].
    pub fn register_venue<V: Send + Sync + 'static>(&mut self, spec: VenueSpec<V>) -> &mut Self {
        self.register_exchange(spec.name, VenueFactory::new(spec))
    }

    /// Registers (or replaces) the writer factory for `kind`.
    pub fn register_writer(
        &mut self,
        kind: impl Into<String>,
        factory: impl WriterFactory,
    ) -> &mut Self {
        self.writers
            .insert(kind.into(), Arc::new(Shared(Arc::new(factory))));
        self
    }

    /// The exchange factory for `name`.
    pub fn exchange(&self, name: &str) -> Option<&Arc<dyn ExchangeFactory>> {
        self.exchanges.get(name)
    }

    /// The writer factory for `kind`.
    pub fn writer(&self, kind: &str) -> Option<&Arc<dyn AnyWriterFactory>> {
        self.writers.get(kind)
    }

    /// Registered exchanges and their transports, by name.
    pub fn exchanges(&self) -> impl Iterator<Item = (&str, Vec<Transport>)> {
        self.exchanges
            .iter()
            .map(|(n, f)| (n.as_str(), f.transports()))
    }

    /// Registered writer types, by name.
    pub fn writer_kinds(&self) -> impl Iterator<Item = &str> {
        self.writers.keys().map(String::as_str)
    }

    /// The same writers, and exchanges that replay their capture from `source` (see
    /// [`ExchangeFactory::replay`]) instead of connecting: a feeder built from a
    /// configuration with this registry plays the capture through its pipeline and writers.
    pub fn replaying(&self, source: &ReplaySource) -> Registry {
        let exchanges = (self.exchanges.iter())
            .map(|(name, f)| {
                let replaying: Arc<dyn ExchangeFactory> = Arc::new(Replaying {
                    inner: f.clone(),
                    source: source.clone(),
                });
                (name.clone(), replaying)
            })
            .collect();
        Registry {
            exchanges,
            writers: self.writers.clone(),
        }
    }
}
