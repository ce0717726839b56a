//! The program of the README's walkthrough ("A venue and a writer in your own crate"): the
//! toy venue and the append-only writer, configured from a file, until Ctrl-C.
//!
//! cargo run -p feeder-examples --example own_crate -- config.yaml

use feeder_core::prelude::*;
use feeder_examples::append_log::AppendLogFactory;
use feeder_examples::toy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: own_crate CONFIG")?;
    let mut registry = Registry::new();
    registry
        .register_venue(toy::VENUE)
        .register_writer("append_log", AppendLogFactory);
    let config = Config::from_file(std::path::Path::new(&path))?;
    let feeder = Feeder::from_config(config, &registry).await?;
    let shutdown = CancellationToken::new();
    let run = feeder.run(shutdown.clone());
    tokio::pin!(run);
    let summary = tokio::select! {
        summary = &mut run => summary,
        _ = tokio::signal::ctrl_c() => {
            shutdown.cancel();
            run.await
        }
    };
    eprintln!("{summary}");
    Ok(())
}
