//! What `run` shows of a running feeder: the HTTP listener (metrics, health, status page)
//! when the config asks for it, and on stderr either the live view (a terminal) or a status
//! line every `status_interval` (anything else), unless `--quiet`.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use feeder_core::config::Config;
use feeder_core::observe::{self, Monitor};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::live;

/// How often the live view is redrawn.
const REDRAW: Duration = Duration::from_secs(1);

/// What to show, read from the config before the feeder takes it.
#[derive(Debug, Clone)]
pub struct Settings {
    listen: Option<SocketAddr>,
    status_interval: Duration,
    quiet: bool,
}

impl Settings {
    /// The settings of `config`; `quiet` turns the live view and the status line off.
    pub fn of(config: &Config, quiet: bool) -> Self {
        Self {
            listen: config.metrics.as_ref().map(|m| m.listen),
            status_interval: config.status_interval,
            quiet,
        }
    }

    /// Starts the listener and the view for `monitor`.
    pub async fn start(self, monitor: Monitor) -> anyhow::Result<Watchers> {
        let stop = CancellationToken::new();
        let server = match self.listen {
            Some(addr) => Some(
                observe::serve(addr, monitor.clone(), stop.clone())
                    .await
                    .context("starting the metrics listener (config key metrics.listen)")?,
            ),
            None => None,
        };
        let view = if self.quiet {
            None
        } else if std::io::stderr().is_terminal() {
            Some(tokio::spawn(live_view(monitor, stop.clone())))
        } else {
            Some(tokio::spawn(status_lines(
                monitor,
                self.status_interval,
                stop.clone(),
            )))
        };
        Ok(Watchers { stop, server, view })
    }
}

/// The running listener and view.
#[derive(Debug)]
pub struct Watchers {
    stop: CancellationToken,
    server: Option<observe::Server>,
    view: Option<JoinHandle<()>>,
}

impl Watchers {
    /// Stops both, once the feeder's run has ended.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(view) = self.view {
            let _ = view.await;
        }
        if let Some(server) = self.server {
            server.join().await;
        }
    }
}

/// Redraws the status block about once a second, until `stop`.
async fn live_view(monitor: Monitor, stop: CancellationToken) {
    let mut tick = tokio::time::interval(REDRAW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => live::show(live::render(&monitor.status())),
        }
    }
    // The last picture stays; the summary follows below it.
    live::detach();
}

/// Logs one status line every `every`, until `stop`.
async fn status_lines(monitor: Monitor, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => tracing::info!("{}", monitor.status().summary_line()),
        }
    }
}
