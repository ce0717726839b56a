//! Reading an Elasticsearch `_bulk` answer.
//!
//! A `_bulk` request can succeed as a whole (HTTP 200) and still fail item by item: the
//! answer then says `"errors": true`, and each item carries its own status.
//!
//! ```json
//! {"took":3,"errors":true,"items":[
//!   {"index":{"_index":"crypto-trades","_id":"bitstamp:BTC-USD:1","status":201,"result":"created"}},
//!   {"index":{"_index":"crypto-trades","_id":"bitstamp:BTC-USD:2","status":429,
//!             "error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
//!   {"index":{"_index":"crypto-trades","_id":"bitstamp:BTC-USD:3","status":400,
//!             "error":{"type":"document_parsing_exception","reason":"failed to parse field [price]"}}}]}
//! ```
//! (Elasticsearch reference, "Bulk API", response body.)

use std::collections::BTreeMap;

use serde::Deserialize;

/// What a `_bulk` answer says of its items.
pub(super) enum Items {
    /// `"errors": false`: every item is stored.
    AllStored,
    /// Each item's result, in the order of the request.
    Each(Vec<Item>),
}

/// The result of one item.
#[derive(Deserialize)]
pub(super) struct Item {
    /// The item's HTTP status.
    pub(super) status: u16,
    /// Why it failed, when it did.
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// What becomes of one item.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// In the index.
    Stored,
    /// The server could not take it now (429, 5xx): send it again.
    Again,
    /// The server cannot hold it (a 4xx, a mapping error): sending it again cannot help.
    Refused,
}

impl Item {
    /// The item's fate. `versioned` items (candles, versioned by revision) that meet a 409
    /// are older revisions of a document the index holds newer: nothing is lost.
    pub(super) fn outcome(&self, versioned: bool) -> Outcome {
        match self.status {
            200..=299 => Outcome::Stored,
            409 if versioned => Outcome::Stored,
            408 | 429 | 500..=599 => Outcome::Again,
            _ => Outcome::Refused,
        }
    }

    /// The server's reason, for messages.
    pub(super) fn reason(&self) -> String {
        match &self.error {
            Some(e) if !e.kind.is_empty() => format!("{}: {}", e.kind, e.reason),
            Some(e) => e.reason.clone(),
            None => format!("status {}", self.status),
        }
    }
}

/// Reads a 2xx `_bulk` answer to a request of `expected` items. An answer that does not say
/// what became of every item is an error (the caller sends the items again).
pub(super) fn read(answer: &[u8], expected: usize) -> Result<Items, String> {
    // Most answers say "errors": false; their items are then not read.
    #[derive(Deserialize)]
    struct Head {
        errors: bool,
    }
    #[derive(Deserialize)]
    struct Full {
        items: Vec<BTreeMap<String, Item>>,
    }
    let head: Head = serde_json::from_slice(answer)
        .map_err(|e| format!("not a _bulk answer ({e}); is the preset right for this URL?"))?;
    if !head.errors {
        return Ok(Items::AllStored);
    }
    let full: Full = serde_json::from_slice(answer)
        .map_err(|e| format!("the items of a _bulk answer could not be read: {e}"))?;
    if full.items.len() != expected {
        return Err(format!(
            "the _bulk answer has {} items for {expected} sent",
            full.items.len()
        ));
    }
    full.items
        .into_iter()
        .map(|action| {
            // One action per item: `index` here.
            action
                .into_values()
                .next()
                .ok_or_else(|| "a _bulk item without its action".to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Items::Each)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_statuses_say_stored_again_or_refused() {
        let answer = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"a","status":201,"result":"created"}},
            {"index":{"_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},
            {"index":{"_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"bad price"}}},
            {"index":{"_id":"d","status":409,"error":{"type":"version_conflict_engine_exception","reason":"newer"}}},
            {"index":{"_id":"e","status":503}}]}"#;
        let Ok(Items::Each(items)) = read(answer, 5) else {
            panic!("not read")
        };
        let got: Vec<Outcome> = items
            .iter()
            .enumerate()
            .map(|(i, it)| it.outcome(i == 3))
            .collect();
        assert_eq!(
            got,
            [
                Outcome::Stored,
                Outcome::Again,
                Outcome::Refused,
                Outcome::Stored,
                Outcome::Again
            ]
        );
        assert_eq!(items[2].reason(), "document_parsing_exception: bad price");
        // An unversioned document never meets a 409 by itself: it is refused.
        assert_eq!(items[3].outcome(false), Outcome::Refused);
    }

    #[test]
    fn answers_that_do_not_account_for_every_item_are_errors() {
        assert!(matches!(
            read(br#"{"errors":false,"items":[]}"#, 3),
            Ok(Items::AllStored)
        ));
        assert!(read(br#"{"errors":true,"items":[]}"#, 1).is_err());
        assert!(read(b"<html>proxy error</html>", 1).is_err());
        assert!(read(br#"{"acknowledged":true}"#, 1).is_err());
    }
}
