//! `fetch_instruments` against a local server: a venue whose list needs one more request per
//! instrument gets them sent a few at a time, its trading instruments listed, and any failed
//! request reported with its URL.

use std::sync::Arc;
use std::time::Duration;

use feeder_core::exchange::{
    fetch_instruments, HttpRequest, InstrumentsVenue, DETAIL_CONCURRENCY, MAX_DETAIL_REQUESTS,
};
use feeder_core::{ExchangeError, ParseError, Symbol};
use feeder_testkit::http::{HttpServer, Request, Response};
use tokio::sync::watch;
use url::Url;

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a detail answer waits for the first wave to fill: shorter than [`TIMEOUT`], so a
/// client that sends too few at once fails on the count, not on a timeout.
const WAVE_WAIT: Duration = Duration::from_secs(2);

/// A venue whose list (`GET /list`) is names separated by commas, and whose details
/// (`GET /d/{name}`) are `BASE-QUOTE open` or `BASE-QUOTE closed`.
struct Toy {
    base: Url,
}

impl InstrumentsVenue for Toy {
    fn instruments_request(&self) -> HttpRequest {
        HttpRequest::get(self.base.join("list").unwrap())
    }

    fn parse_instruments(&self, body: &[u8], _out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        std::str::from_utf8(body)
            .map(drop)
            .map_err(|e| ParseError::Other(e.to_string()))
    }

    fn detail_requests(&self, body: &[u8]) -> Result<Vec<HttpRequest>, ParseError> {
        let text = std::str::from_utf8(body).map_err(|e| ParseError::Other(e.to_string()))?;
        Ok(text
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| HttpRequest::get(self.base.join(&format!("d/{n}")).unwrap()))
            .collect())
    }

    fn parse_detail(&self, body: &[u8], out: &mut Vec<Symbol>) -> Result<(), ParseError> {
        let text = std::str::from_utf8(body).map_err(|e| ParseError::Other(e.to_string()))?;
        let (symbol, status) = text
            .split_once(' ')
            .ok_or_else(|| ParseError::Venue(text.to_owned()))?;
        if status == "open" {
            out.push(Symbol::parse(symbol).map_err(|e| ParseError::Other(e.to_string()))?);
        }
        Ok(())
    }
}

/// Requests in flight at the server, the most seen at once, and whether the first wave
/// filled [`DETAIL_CONCURRENCY`] (after which nobody waits).
#[derive(Clone, Copy, Default)]
struct Flight {
    now: usize,
    peak: usize,
    filled: bool,
}

/// A server listing `names` (`AAA` is `AAA-USD`), with those in `closed` not trading and
/// `failing` answered with 500. Each detail answer waits until the first
/// [`DETAIL_CONCURRENCY`] details are in flight together (at most [`WAVE_WAIT`]), so a client
/// that sends fewer at once shows in the peak.
fn server(
    names: Vec<String>,
    closed: &'static [&'static str],
    failing: Option<&'static str>,
) -> (HttpServer, watch::Receiver<Flight>) {
    let (tx, rx) = watch::channel(Flight::default());
    let tx = Arc::new(tx);
    let list = names.join(",");
    let server = HttpServer::start(move |req: Request| {
        let tx = tx.clone();
        let list = list.clone();
        async move {
            let Some(name) = req.path.strip_prefix("/d/") else {
                return Response::text(list);
            };
            tx.send_modify(|f| {
                f.now += 1;
                f.peak = f.peak.max(f.now);
                f.filled |= f.now >= DETAIL_CONCURRENCY;
            });
            let mut rx = tx.subscribe();
            if tokio::time::timeout(WAVE_WAIT, rx.wait_for(|f| f.filled))
                .await
                .is_err()
            {
                // A client that never fills the wave waits here once, not once per request.
                tx.send_modify(|f| f.filled = true);
            }
            tx.send_modify(|f| f.now -= 1);
            if failing == Some(name) {
                return Response::status(500);
            }
            let status = if closed.contains(&name) {
                "closed"
            } else {
                "open"
            };
            Response::text(format!("{name}-USD {status}"))
        }
    })
    .unwrap();
    (server, rx)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("A{i:02}")).collect()
}

#[tokio::test]
async fn details_are_asked_a_few_at_a_time_and_only_open_instruments_listed() {
    let (server, flight) = server(names(12), &["A03", "A10"], None);
    let toy = Toy { base: server.url() };
    let got = fetch_instruments(&toy, TIMEOUT).await.unwrap();
    let want: Vec<Symbol> = names(12)
        .iter()
        .filter(|n| *n != "A03" && *n != "A10")
        .map(|n| Symbol::parse(&format!("{n}-USD")).unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(server.requests().len(), 13);
    let f = *flight.borrow();
    assert_eq!(
        f.peak, DETAIL_CONCURRENCY,
        "never more at once, and that many"
    );
}

#[tokio::test]
async fn a_failed_detail_request_is_an_error_naming_its_url() {
    let (server, _flight) = server(names(6), &[], Some("A04"));
    let toy = Toy { base: server.url() };
    let e = fetch_instruments(&toy, TIMEOUT).await.unwrap_err();
    let url = server.url().join("d/A04").unwrap();
    assert!(
        matches!(&e, ExchangeError::Status { status: 500, url: u, .. } if u == url.as_str()),
        "{e}"
    );
}

#[tokio::test]
async fn a_detail_answer_that_cannot_be_read_names_its_url() {
    let server = HttpServer::start(|req: Request| async move {
        if req.path == "/list" {
            Response::text("A01")
        } else {
            Response::text("gibberish")
        }
    })
    .unwrap();
    let toy = Toy { base: server.url() };
    let e = fetch_instruments(&toy, TIMEOUT).await.unwrap_err();
    let url = server.url().join("d/A01").unwrap();
    assert_eq!(
        e.to_string(),
        format!("reading the instrument details from {url}")
    );
}

#[tokio::test]
async fn a_list_naming_too_many_instruments_is_refused_before_any_detail_is_asked() {
    let (server, _flight) = server(names(MAX_DETAIL_REQUESTS + 1), &[], None);
    let toy = Toy { base: server.url() };
    let e = fetch_instruments(&toy, TIMEOUT).await.unwrap_err();
    let url = server.url().join("list").unwrap();
    assert_eq!(
        e.to_string(),
        format!("reading the instrument list from {url}")
    );
    assert_eq!(server.requests().len(), 1);
}
