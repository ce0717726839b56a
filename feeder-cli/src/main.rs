//! `crypto-feeder`: collects trades from crypto exchanges and stores them.
//!
//! ```text
//! crypto-feeder run --config feeder.yaml      # until SIGINT/SIGTERM, then flush and exit 0
//! crypto-feeder run --quiet --config f        # ... without the live view or status lines
//! crypto-feeder validate --config feeder.yaml # check a config without connecting anywhere
//! crypto-feeder validate --online --config f  # ... and that each venue lists its symbols
//! crypto-feeder symbols kraken                # a venue's tradeable symbols, normalized
//! crypto-feeder exchanges                     # venues and their transports
//! crypto-feeder replay --capture DIR --config f  # play a raw capture through a config
//! crypto-feeder completions bash              # a shell completion script
//! crypto-feeder man [--dir DIR]               # the manual page (roff)
//! ```
//! Logs go to stderr (`-v`, `-vv` or `RUST_LOG`), so the `stdout` writer can be piped.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use feeder_core::config::{Config, ExchangeConfig};
use feeder_core::error::ErrorChain;
use feeder_core::exchange::fetch_instruments;
use feeder_core::feeder::{Feeder, Registry, Summary};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

mod live;
mod manual;
mod observe;
mod replay;

#[derive(Parser, Debug)]
#[command(
    name = "crypto-feeder",
    version,
    about = "Collects trades from crypto exchanges and stores them"
)]
struct Cli {
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log lines as JSON.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Collects and stores trades until SIGINT or SIGTERM, then flushes every writer.
    Run {
        /// The YAML config file.
        #[arg(short, long, env = "CRYPTO_FEEDER_CONFIG")]
        config: PathBuf,
        /// No live view on a terminal, no periodic status line otherwise.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Checks a config file without connecting anywhere: its keys and values, its URLs,
    /// and that every directory the run would create can be created (with --online, also
    /// asks each exchange whether it lists the configured symbols).
    Validate {
        /// The YAML config file.
        #[arg(short, long, env = "CRYPTO_FEEDER_CONFIG")]
        config: PathBuf,
        /// After the offline checks, fetch each exchange's instrument list (from its
        /// `rest_url` when set) and refuse a symbol it does not list.
        #[arg(long)]
        online: bool,
    },
    /// Lists a venue's tradeable symbols in normalized form, one a line, sorted.
    Symbols {
        /// The venue, by its registry name (`crypto-feeder exchanges` lists them).
        venue: String,
        /// The venue's REST base URL instead of its production one (a proxy, a mirror).
        #[arg(long)]
        rest_url: Option<String>,
    },
    /// Lists the bundled exchanges and their transports, and the writer types.
    Exchanges,
    /// Plays a raw capture back through a config's parsers, pipeline and writers.
    Replay(replay::Args),
    /// Prints a completion script for a shell to stdout.
    ///
    /// bash: `crypto-feeder completions bash > /etc/bash_completion.d/crypto-feeder`;
    /// zsh: into a directory of `$fpath` as `_crypto-feeder`; fish: into
    /// `~/.config/fish/completions/crypto-feeder.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff) to stdout, or writes one page per command into a
    /// directory.
    ///
    /// `crypto-feeder man | man -l -` reads it; `crypto-feeder man --dir
    /// /usr/local/share/man/man1` installs it.
    Man {
        /// Write `crypto-feeder.1` and a page per subcommand (`crypto-feeder-run.1`, ...)
        /// into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn registry() -> Registry {
    let mut r = Registry::new();
    feeder_exchanges::register(&mut r);
    feeder_writers::register(&mut r);
    r
}

fn init_logging(verbose: u8, json: bool) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(live::MakeLogWriter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &std::path::Path, registry: &Registry) -> anyhow::Result<Config> {
    let config = Config::from_file(path).with_context(|| format!("loading {}", path.display()))?;
    Feeder::validate(&config, registry).with_context(|| format!("checking {}", path.display()))?;
    Ok(config)
}

/// Runs `f` to completion on a runtime of one thread (a few requests need no more).
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

/// The instruments `cfg`'s venue lists now, or `None` when it cannot list them.
async fn listed(
    registry: &Registry,
    cfg: &ExchangeConfig,
) -> anyhow::Result<Option<Vec<feeder_core::Symbol>>> {
    let factory = registry
        .exchange(&cfg.name)
        .with_context(|| format!("unknown exchange {:?}", cfg.name))?;
    let Some(lister) = factory.instruments(cfg) else {
        return Ok(None);
    };
    let lister = lister?;
    let list = fetch_instruments(&*lister, cfg.request_timeout)
        .await
        .with_context(|| format!("fetching the instruments of {}", cfg.name))?;
    Ok(Some(list))
}

/// `crypto-feeder symbols VENUE`.
async fn symbols(venue: &str, rest_url: Option<&str>) -> anyhow::Result<ExitCode> {
    let registry = registry();
    let mut cfg = ExchangeConfig::new(venue, Vec::new());
    if let Some(u) = rest_url {
        cfg.rest_url = Some(u.parse().with_context(|| format!("--rest-url {u:?}"))?);
    }
    let list = listed(&registry, &cfg)
        .await?
        .with_context(|| format!("{venue} cannot list its instruments"))?;
    let mut out = String::with_capacity(list.len() * 10);
    for s in &list {
        out.push_str(s.as_str());
        out.push('\n');
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// Refuses the configured symbols their venue does not list, naming each. A venue that
/// cannot list its instruments is not checked, and says so.
async fn check_online(config: &Config, registry: &Registry) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for (i, ex) in config.exchanges.iter().enumerate() {
        let Some(list) = listed(registry, ex)
            .await
            .with_context(|| format!("exchanges[{i}] ({})", ex.name))?
        else {
            tracing::warn!(exchange = %ex.name, "cannot list its instruments; symbols not checked");
            continue;
        };
        for s in &ex.symbols {
            if list.binary_search(s).is_err() {
                missing.push(format!("exchanges[{i}] ({}): {s}", ex.name));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "symbols the venue does not list as trading: {}",
            missing.join("; ")
        )
    }
}

/// `crypto-feeder validate`: the config's keys and values, then what can be checked on this
/// machine without connecting anywhere (the directories the run would create); with
/// `online`, whether each venue lists the configured symbols.
fn validate(path: &std::path::Path, online: bool) -> anyhow::Result<ExitCode> {
    let registry = registry();
    let config = load(path, &registry)?;
    Feeder::check_directories(&config, &registry)
        .with_context(|| format!("checking {}", path.display()))?;
    if online {
        block_on(check_online(&config, &registry))?;
    }
    say(&format!(
        "{}: ok ({} exchanges, {} writers{})",
        path.display(),
        config.exchanges.len(),
        config.writers.len(),
        if online { ", symbols listed" } else { "" }
    ));
    if let Some(shard) = config.shard {
        say(&shard_streams(&config, shard));
    }
    Ok(ExitCode::SUCCESS)
}

/// The streams a sharded feeder follows, one `exchange:symbol` a line after a header.
fn shard_streams(config: &Config, shard: feeder_core::config::ShardConfig) -> String {
    let owned: Vec<String> = config
        .owned_exchanges()
        .iter()
        .flat_map(|ex| ex.symbols.iter().map(move |s| format!("  {}:{s}", ex.name)))
        .collect();
    let all: usize = config.exchanges.iter().map(|e| e.symbols.len()).sum();
    format!(
        "shard {} of {} owns {} of {all} streams:\n{}",
        shard.index,
        shard.count,
        owned.len(),
        owned.join("\n")
    )
}

/// `crypto-feeder man`: the page on stdout, or every page into `dir`.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    match dir {
        None => manual::man_page(Cli::command(), &mut std::io::stdout().lock())?,
        Some(dir) => {
            for page in manual::man_pages_to(Cli::command(), dir)? {
                say(&page.display().to_string());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, listened to from the start so that a signal during start-up is not
/// lost (nor kills the process without a flush).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves when SIGINT or SIGTERM arrives; a second signal then exits at once.
    async fn wait(self) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            let Signals { mut term, mut int } = self;
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::warn!("second signal: exiting without waiting for writers");
                std::process::exit(130);
            });
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
        Ok(())
    }
}

async fn run(config: PathBuf, quiet: bool) -> anyhow::Result<ExitCode> {
    let signals = Signals::install()?;
    let registry = registry();
    let config = load(&config, &registry)?;
    let show = observe::Settings::of(&config, quiet);
    let feeder = Feeder::from_config(config, &registry)
        .await
        .context("starting the feeder")?;
    let watchers = show.start(feeder.monitor()).await?;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(feeder.run(shutdown.clone()));
    tracing::info!("running; send SIGINT or SIGTERM to stop");
    signals.wait().await?;
    shutdown.cancel();
    let summary = run.await.context("the feeder task failed")?;
    watchers.stop().await;
    for line in summary.to_string().lines() {
        tracing::info!("{line}");
    }
    Ok(exit_code(&summary))
}

/// Exit status of a run that ended: 0 when clean; 3 when data was lost (dropped or rejected
/// by a writer, a writer failed, tasks abandoned); 4 when an exchange was never reached; 5
/// when nothing was lost but the data records exceptions (gaps, trades turned away,
/// messages not understood, late trades).
fn exit_code(summary: &Summary) -> ExitCode {
    let never = summary.never_connected();
    if summary.lost_anything() || !summary.failures.is_empty() || !summary.stragglers.is_empty() {
        tracing::error!(
            lost = summary.lost(),
            "the run lost data: some events were dropped or rejected, or tasks abandoned"
        );
        ExitCode::from(3)
    } else if let Some(error) = summary.never_connected_error() {
        tracing::error!(exchanges = %never.join(", "), "{error}");
        ExitCode::from(4)
    } else if !summary.warnings().is_empty() {
        for w in summary.warnings() {
            tracing::warn!("{w}");
        }
        ExitCode::from(5)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_json);
    let result = match cli.command {
        Command::Run { config, quiet } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(run(config, quiet))),
        Command::Validate { config, online } => validate(&config, online),
        Command::Symbols { venue, rest_url } => block_on(symbols(&venue, rest_url.as_deref())),
        Command::Exchanges => {
            let registry = registry();
            let mut out = String::from("exchanges:\n");
            for (name, transports) in registry.exchanges() {
                let t: Vec<String> = transports.iter().map(ToString::to_string).collect();
                out.push_str(&format!("  {name:<10} {}\n", t.join(", ")));
            }
            out.push_str("writers:\n");
            for kind in registry.writer_kinds() {
                out.push_str(&format!("  {kind}\n"));
            }
            say(out.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            manual::completions(Cli::command(), shell, &mut std::io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Replay(args) => replay::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The whole cause chain on one line, each cause once.
            let chain: &(dyn std::error::Error + 'static) = e.as_ref();
            let _ = writeln!(std::io::stderr(), "error: {}", ErrorChain(chain));
            ExitCode::FAILURE
        }
    }
}

/// Writes a result line to stdout (the command's output, not a log).
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}
