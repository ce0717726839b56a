//! The `syslog` writer: every event as an RFC 5424 syslog message whose MSG is the event's
//! JSON line (the one the `file` writer writes), over UDP, TCP or TLS.
//!
//! Each message carries severity informational, the configured facility, HOSTNAME (this
//! machine's name by default), APP-NAME (`crypto-feeder` by default), the process id as
//! PROCID, the event's type as MSGID (`trade`, `candle`, `gap`) and no structured data.
//! Over TCP (RFC 6587) and TLS (RFC 5425) messages are framed by octet counting.
//!
//! Syslog has no acknowledgement. Over TCP and TLS a batch counts as written once the server
//! closed the batch's connection after reading to its end (see [`SyslogWriter`]); that is
//! at-least-once. Over UDP nothing confirms anything.

mod config;
mod frame;
mod writer;

use async_trait::async_trait;
use feeder_core::config::{ConfigError, WriterConfig};
use feeder_core::feeder::WriterFactory;
use feeder_core::writer::Writer;
use feeder_core::WriteError;

pub use config::{Facility, Protocol, SyslogOptions};
pub use writer::{SyslogWriter, UDP_MAX_MESSAGE};

/// Builds [`SyslogWriter`]s from config entries of type `syslog`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyslogWriterFactory;

#[async_trait]
impl WriterFactory for SyslogWriterFactory {
    type Options = SyslogOptions;

    fn check(&self, options: &SyslogOptions, config: &WriterConfig) -> Result<(), ConfigError> {
        options
            .check()
            .map_err(|(key, message)| config.option_error(key, message))
    }

    async fn open(
        &self,
        options: SyslogOptions,
        _config: &WriterConfig,
    ) -> Result<Box<dyn Writer>, WriteError> {
        Ok(Box::new(SyslogWriter::connect(options).await?))
    }
}
