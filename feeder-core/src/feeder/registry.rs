//! The registry of exchange and writer factories, keyed by the names used in the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{ConfigError, ExchangeConfig, WriterConfig};
use crate::error::WriteError;
use crate::exchange::{Exchange, InstrumentsVenue, Transport};
use crate::writer::Writer;

/// Builds an exchange from its config entry. Building is pure: no I/O happens until the
/// exchange runs, so `crypto-feeder validate` can build everything offline.
pub trait ExchangeFactory: Send + Sync + 'static {
    /// The transports this venue offers, in order of preference.
    fn transports(&self) -> Vec<Transport>;

    /// Builds the exchange, or says what is wrong with its config.
    fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn Exchange>, ConfigError>;

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
}

/// Builds a writer from its config entry.
#[async_trait]
pub trait WriterFactory: Send + Sync + 'static {
    /// Checks the writer's options without any I/O.
    fn validate(&self, config: &WriterConfig) -> Result<(), ConfigError>;

    /// Opens the writer (creates directories, connects, checks credentials). A bad URL or
    /// bad credentials fail here, at start-up, with a clear error.
    async fn build(&self, config: &WriterConfig) -> Result<Box<dyn Writer>, WriteError>;
}

/// Exchange and writer factories by name. The CLI registers the bundled ones; a program that
/// embeds the feeder registers its own the same way.
#[derive(Clone, Default)]
pub struct Registry {
    exchanges: BTreeMap<String, Arc<dyn ExchangeFactory>>,
    writers: BTreeMap<String, Arc<dyn WriterFactory>>,
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

    /// Registers (or replaces) the writer factory for `kind`.
    pub fn register_writer(
        &mut self,
        kind: impl Into<String>,
        factory: impl WriterFactory,
    ) -> &mut Self {
        self.writers.insert(kind.into(), Arc::new(factory));
        self
    }

    /// The exchange factory for `name`.
    pub fn exchange(&self, name: &str) -> Option<&Arc<dyn ExchangeFactory>> {
        self.exchanges.get(name)
    }

    /// The writer factory for `kind`.
    pub fn writer(&self, kind: &str) -> Option<&Arc<dyn WriterFactory>> {
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
}
