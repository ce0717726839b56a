//! A fast path for the hot WebSocket messages: reads the members of a JSON object in place,
//! without building anything.
//!
//! A trade message is a small flat object, and a general deserializer spends much of its time
//! on the members a parser ignores (Coinbase's two order UUIDs, for example). [`members`] walks
//! the object once, hands each member to the caller as a key and a raw value, and checks the
//! grammar of everything it passes over.
//!
//! Messages that nest (trades in an array inside an envelope, or a top-level array) are walked
//! with [`document`] and the [`Scanner`]'s walking methods, still in one pass: the caller
//! reads the members it knows where they are and skips the rest.
//!
//! It gives up (returns `None`) on anything outside the common case: escapes in strings,
//! nesting deeper than [`MAX_DEPTH`], or any text that is not well-formed JSON. A parser that
//! gets `None` reads the message with serde instead, which then decides, so the fast path
//! changes no outcome: it accepts only what serde accepts the same way, and whatever is
//! unusual, including every malformed message, gets serde's error message.

// Each venue uses its part of the scanner; with venues compiled out, some of it goes unused.
#![cfg_attr(
    not(all(
        feature = "binance",
        feature = "bitfinex",
        feature = "bitstamp",
        feature = "bybit",
        feature = "coinbase",
        feature = "gemini",
        feature = "huobi",
        feature = "kraken",
        feature = "okx",
    )),
    allow(dead_code)
)]

/// Objects and arrays nested deeper than this inside a member's value are left to serde.
pub(crate) const MAX_DEPTH: usize = 8;

/// A member's value, borrowed from the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Raw<'a> {
    /// A string without escapes, between its quotes.
    Str(&'a str),
    /// A number, as written.
    Num(&'a str),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object, braces included; its grammar has been checked.
    Object(&'a str),
    /// An array, brackets included; its grammar has been checked.
    Array(&'a str),
}

impl<'a> Raw<'a> {
    /// The string, if this is one.
    pub(crate) fn str(self) -> Option<&'a str> {
        match self {
            Raw::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as a `u64`, if it is a whole number that fits (what serde reads into `u64`).
    pub(crate) fn u64(self) -> Option<u64> {
        match self {
            Raw::Num(n) => digits_u64(n),
            _ => None,
        }
    }

    /// A `u64` written as a whole number or as a string of digits (what
    /// [`Uint`](crate::common::Uint) reads).
    pub(crate) fn uint(self) -> Option<u64> {
        match self {
            Raw::Str(s) => digits_u64(s),
            Raw::Num(_) => self.u64(),
            _ => None,
        }
    }

    /// An id written as a string (kept as written) or as a whole number that fits a `u64`
    /// (what [`TextId`](crate::common::TextId) reads).
    #[cfg(any(feature = "bybit", feature = "okx"))]
    pub(crate) fn text_id(self) -> Option<crate::common::TextId<'a>> {
        match self {
            Raw::Str(s) => Some(crate::common::TextId::Text(s)),
            Raw::Num(n) => digits_u64(n).map(crate::common::TextId::Number),
            _ => None,
        }
    }

    /// The text of a number, as written (what a raw JSON value holds for a number).
    pub(crate) fn num(self) -> Option<&'a str> {
        match self {
            Raw::Num(n) => Some(n),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub(crate) fn bool(self) -> Option<bool> {
        match self {
            Raw::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The object's text, if this is an object.
    pub(crate) fn object(self) -> Option<&'a str> {
        match self {
            Raw::Object(s) => Some(s),
            _ => None,
        }
    }
}

/// A non-empty string of ASCII digits as a `u64`, if it fits.
fn digits_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n = 0u64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // Only a 20-digit number can overflow.
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Sets `slot` to `value` unless it is already set: a member named twice is left to serde
/// (which refuses it), so this returns `None` then.
pub(crate) fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// Calls `member` with each member of the JSON object `text` (surrounding whitespace allowed),
/// in order. Returns `None` when `text` is not such an object or uses what the fast path leaves
/// to serde (see the module docs), or when `member` returns `None`.
pub(crate) fn members<'a>(
    text: &'a str,
    mut member: impl FnMut(&'a str, Raw<'a>) -> Option<()>,
) -> Option<()> {
    members_nested(text, "", &mut |_, _| Some(()), &mut member)
}

/// Like [`members`], and also calls `inner` with each member of the object under the top-level
/// key `nested`, in the same pass (an envelope around a trade is read once, not twice).
/// `member` still gets that object whole, as [`Raw::Object`].
pub(crate) fn members_nested<'a>(
    text: &'a str,
    nested: &str,
    inner: &mut impl FnMut(&'a str, Raw<'a>) -> Option<()>,
    member: &mut impl FnMut(&'a str, Raw<'a>) -> Option<()>,
) -> Option<()> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    s.ws();
    s.object(|s, key| {
        let value = if !nested.is_empty() && key == nested && s.peek() == Some(b'{') {
            let start = s.at;
            s.object(|s, key| {
                let value = s.value(1)?;
                inner(key, value)
            })?;
            Raw::Object(s.text.get(start..s.at)?)
        } else {
            s.value(0)?
        };
        member(key, value)
    })?;
    s.ws();
    (s.at == s.bytes.len()).then_some(())
}

/// Reads the JSON text `text` (surrounding whitespace allowed) with `read`, which walks its
/// one value with the [`Scanner`]'s methods. Returns what `read` returns, or `None` when it
/// gives up or text is left after the value.
///
/// This is the general form of [`members`], for messages that are not one flat object: an
/// array of trades inside an envelope, or an array at the top level. `read` decides on each
/// member as it passes, so a message is read in one pass however it nests.
pub(crate) fn document<'a, T>(
    text: &'a str,
    read: impl FnOnce(&mut Scanner<'a>) -> Option<T>,
) -> Option<T> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    s.ws();
    let value = read(&mut s)?;
    s.ws();
    (s.at == s.bytes.len()).then_some(value)
}

/// A cursor over JSON text that checks the grammar of everything it passes over (see the
/// module docs for what it leaves to serde).
///
/// The walking methods ([`Scanner::walk_object`], [`Scanner::walk_array`]) call back for
/// each member or element with the cursor on its value; the callback reads that value, with
/// [`Scanner::any`] or a nested walk, and returns `None` to give up. A callback that leaves
/// the value unread makes the walk give up too, since the next byte is then not a separator.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// How many objects and arrays the walking methods have open around the cursor.
    depth: usize,
}

impl<'a> Scanner<'a> {
    /// An object; `member` is called with each key, the cursor on its value.
    pub(crate) fn walk_object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.enter()?;
        self.object(|s, key| {
            let at = s.at;
            member(s, key)?;
            // A value left unread is not skipped: the walk gives up.
            (s.at > at).then_some(())
        })?;
        self.depth -= 1;
        Some(())
    }

    /// An array; `element` is called with the cursor on each element.
    pub(crate) fn walk_array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.enter()?;
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                self.ws();
                let at = self.at;
                element(self)?;
                if self.at == at {
                    return None;
                }
                self.ws();
                match self.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Any value, read whole (an object or array is checked and returned as its text).
    pub(crate) fn any(&mut self) -> Option<Raw<'a>> {
        self.value(self.depth)
    }

    /// A number or a string, read whole, as the JSON text it is written as (a string with its
    /// quotes): what a raw JSON value holds for it.
    #[cfg(any(feature = "bitfinex", feature = "huobi"))]
    pub(crate) fn number_or_string(&mut self) -> Option<&'a str> {
        let start = self.at;
        match self.any()? {
            Raw::Num(_) | Raw::Str(_) => self.text.get(start..self.at),
            _ => None,
        }
    }

    fn enter(&mut self) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        Some(())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters; the cursor is on its opening quote.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let len = string_end(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are ASCII quotes, so these are character boundaries.
        self.text.get(start..start + len)
    }

    /// An object whose members' values `member` reads (the cursor on each value when it is
    /// called, and past it when it returns); the cursor is on the opening brace.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Raw<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Raw::Str),
            b'{' | b'[' => {
                let start = self.at;
                let open = self.peek()?;
                self.nested(depth + 1)?;
                let raw = self.text.get(start..self.at)?;
                Some(if open == b'{' {
                    Raw::Object(raw)
                } else {
                    Raw::Array(raw)
                })
            }
            b't' => self.word("true").map(|()| Raw::Bool(true)),
            b'f' => self.word("false").map(|()| Raw::Bool(false)),
            b'n' => self.word("null").map(|()| Raw::Null),
            b'-' | b'0'..=b'9' => self.number().map(Raw::Num),
            _ => None,
        }
    }

    /// An object or array, checked member by member; the cursor is on its opening bracket.
    fn nested(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let close = match self.next()? {
            b'{' => b'}',
            _ => b']',
        };
        self.ws();
        if self.peek() == Some(close) {
            self.at += 1;
            return Some(());
        }
        loop {
            self.ws();
            if close == b'}' {
                self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
            }
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => {}
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    fn word(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word.as_bytes()).then_some(())?;
        self.at = end;
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
        }
        self.text.get(start..self.at)
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// The position of the first byte of `bytes` that ends or interrupts a JSON string: a quote, a
/// backslash or a control character. Eight bytes at a time: the strings of trade messages are
/// short, too short for the set-up of a vector search to pay off.
fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Sets the high bit of each byte of `x` below `n` (n <= 128); the lowest flagged byte is
    // always a true match, which is all that is read from the mask.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w);
        let mask = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if mask != 0 {
            return Some(at + (mask.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Option<Vec<(&str, Raw<'_>)>> {
        let mut out = Vec::new();
        members(text, |k, v| {
            out.push((k, v));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn reads_the_members_of_a_flat_object() {
        let got = collect(
            r#" {"type":"match","trade_id":10,"x":-1.5e+3,"ok":true,"no":false,"n":null,"o":{"a":[1,{"b":"c"}]},"l":[] } "#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("type", Raw::Str("match")),
                ("trade_id", Raw::Num("10")),
                ("x", Raw::Num("-1.5e+3")),
                ("ok", Raw::Bool(true)),
                ("no", Raw::Bool(false)),
                ("n", Raw::Null),
                ("o", Raw::Object(r#"{"a":[1,{"b":"c"}]}"#)),
                ("l", Raw::Array("[]")),
            ]
        );
        assert_eq!(collect("{}").unwrap(), vec![]);
        assert_eq!(Raw::Num("10").u64(), Some(10));
        assert_eq!(Raw::Num("1.0").u64(), None);
        assert_eq!(Raw::Num("-1").u64(), None);
        assert_eq!(Raw::Num("18446744073709551615").u64(), Some(u64::MAX));
        assert_eq!(Raw::Num("18446744073709551616").u64(), None);
        assert_eq!(Raw::Num("00018446744073709551615").u64(), None);
        assert_eq!(Raw::Str("42").uint(), Some(42));
        assert_eq!(Raw::Str("").uint(), None);
        assert_eq!(Raw::Str("4 2").uint(), None);
    }

    /// Everything serde refuses is refused here too, and escapes are left to serde.
    #[test]
    fn gives_up_on_anything_unusual_or_malformed() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x\"y"}"#,
            r#"{"a\n":1}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1} x"#,
            r#"{"a":1}{}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{a:1}"#,
            r#"{"a":[[[[[[[[[[1]]]]]]]]]]}"#,
        ] {
            assert!(collect(bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn string_end_finds_the_first_stop_byte_wherever_it_is() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..=len {
                    let mut bytes: Vec<u8> = (0..len).map(|i| b' ' + (i % 90) as u8).collect();
                    // Bytes that must not stop it: DEL, UTF-8, just above the controls.
                    for (i, b) in bytes.iter_mut().enumerate() {
                        if *b == b'"' || *b == b'\\' {
                            *b = [0x7f, 0xc3, 0x20][i % 3];
                        }
                    }
                    if at < len {
                        bytes[at] = stop;
                        // A later stop byte does not matter.
                        if at + 1 < len {
                            bytes[at + 1] = b'"';
                        }
                        assert_eq!(string_end(&bytes), Some(at), "{bytes:?}");
                    } else {
                        assert_eq!(string_end(&bytes), None, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_nested_object_is_read_in_the_same_pass() {
        let text = r#"{"data":{"id":7,"x":[1]},"channel":"c"}"#;
        let (mut inner, mut outer) = (Vec::new(), Vec::new());
        members_nested(
            text,
            "data",
            &mut |k, v| {
                inner.push((k, v));
                Some(())
            },
            &mut |k, v| {
                outer.push((k, v));
                Some(())
            },
        )
        .unwrap();
        assert_eq!(inner, vec![("id", Raw::Num("7")), ("x", Raw::Array("[1]"))]);
        assert_eq!(
            outer,
            vec![
                ("data", Raw::Object(r#"{"id":7,"x":[1]}"#)),
                ("channel", Raw::Str("c"))
            ]
        );
        // Not an object: read as any value, `inner` not called.
        let mut called = false;
        members_nested(
            r#"{"data":[{"id":1}]}"#,
            "data",
            &mut |_, _| {
                called = true;
                Some(())
            },
            &mut |_, _| Some(()),
        )
        .unwrap();
        assert!(!called);
        // Malformed inside: refused as a whole.
        for bad in [
            r#"{"data":{"id":01}}"#,
            r#"{"data":{"id":1,}}"#,
            r#"{"data":{"id":1}"#,
        ] {
            assert!(
                members_nested(bad, "data", &mut |_, _| Some(()), &mut |_, _| Some(())).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_member_named_twice_is_left_to_serde() {
        let mut kind = None;
        let r = members(r#"{"type":"a","type":"b"}"#, |k, v| match k {
            "type" => once(&mut kind, v.str()),
            _ => Some(()),
        });
        assert!(r.is_none());
    }

    /// Walks any value down to its leaves, as a venue's walk does, collecting the leaves.
    fn walk_all<'a>(s: &mut Scanner<'a>, leaves: &mut Vec<Raw<'a>>) -> Option<()> {
        match s.peek()? {
            b'{' => s.walk_object(|s, _| walk_all(s, leaves)),
            b'[' => s.walk_array(|s| walk_all(s, leaves)),
            _ => {
                leaves.push(s.any()?);
                Some(())
            }
        }
    }

    #[test]
    fn a_document_is_walked_in_one_pass_to_any_depth_it_allows() {
        let mut leaves = Vec::new();
        let text = r#" [1,{"a":[true,null,"x"],"b":{}},[],-2.5e3] "#;
        document(text, |s| walk_all(s, &mut leaves)).unwrap();
        assert_eq!(
            leaves,
            vec![
                Raw::Num("1"),
                Raw::Bool(true),
                Raw::Null,
                Raw::Str("x"),
                Raw::Num("-2.5e3")
            ]
        );
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(document(&nested(MAX_DEPTH), |s| walk_all(s, &mut Vec::new())).is_some());
        assert!(document(&nested(MAX_DEPTH + 1), |s| walk_all(s, &mut Vec::new())).is_none());
        for bad in [
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "[1]]",
            "[1] x",
            "",
            "[",
            "{\"a\"}",
        ] {
            assert!(
                document(bad, |s| walk_all(s, &mut Vec::new())).is_none(),
                "{bad}"
            );
        }
        // A walk that leaves a value unread gives up, even where nothing follows.
        for text in ["[1,2]", "[,]", "[,1]"] {
            assert!(
                document(text, |s| s.walk_array(|_| Some(()))).is_none(),
                "{text}"
            );
        }
        for text in [r#"{"a":1}"#, r#"{"a":}"#, r#"{"a":,"b":1}"#] {
            assert!(
                document(text, |s| s.walk_object(|_, _| Some(()))).is_none(),
                "{text}"
            );
        }
    }

    #[test]
    #[cfg(any(feature = "bitfinex", feature = "huobi"))]
    fn numbers_and_strings_are_kept_as_written() {
        let mut got = Vec::new();
        document(r#"[1.50,"2",-3e-8,null]"#, |s| {
            s.walk_array(|s| {
                got.push(s.number_or_string());
                Some(())
            })
        })
        .unwrap();
        assert_eq!(got, vec![Some("1.50"), Some("\"2\""), Some("-3e-8"), None]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever a walk to the leaves accepts, serde reads, with the same leaves.
        #[test]
        fn a_walk_accepts_only_what_serde_reads(text in r#"[\[{]([0-9.eE+\-]{1,4}|"[a-c\\]{0,3}"|"[ab]":|true|null|[,\[\]{} ]){0,12}[\]}]?"#) {
            let mut leaves = Vec::new();
            if document(&text, |s| walk_all(s, &mut leaves)).is_some() {
                let parsed: serde_json::Value =
                    serde_json::from_str(&text).expect("serde refused what the walk read");
                fn serde_leaves(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
                    match v {
                        serde_json::Value::Array(a) => a.iter().for_each(|v| serde_leaves(v, out)),
                        serde_json::Value::Object(o) => o.values().for_each(|v| serde_leaves(v, out)),
                        leaf => out.push(leaf.clone()),
                    }
                }
                let mut want = Vec::new();
                serde_leaves(&parsed, &mut want);
                // serde keeps one of a key named twice; compare counts only then.
                if !text.contains(':') {
                    proptest::prop_assert_eq!(leaves.len(), want.len());
                    for (got, want) in leaves.iter().zip(&want) {
                        match got {
                            Raw::Str(s) => proptest::prop_assert_eq!(want.as_str(), Some(*s)),
                            Raw::Bool(b) => proptest::prop_assert_eq!(want.as_bool(), Some(*b)),
                            Raw::Null => proptest::prop_assert!(want.is_null()),
                            Raw::Num(_) => proptest::prop_assert!(want.is_number()),
                            Raw::Object(_) | Raw::Array(_) => proptest::prop_assert!(false, "not a leaf"),
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever the fast path accepts, serde accepts as an object with the same members.
        #[test]
        fn accepts_only_what_serde_reads_the_same(text in r#"\{("[a-c]{0,2}":([0-9.eE+\-]{1,4}|"[a-c\\]{0,3}"|true|null|\[[0-9,{}\[\]]{0,6}\]|\{[" :a1,{}]{0,8}\})[ ,]{0,2}){0,4}\}?[ \]]?"#) {
            if let Some(got) = collect(&text) {
                let parsed: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&text).expect("serde refused what the fast path read");
                proptest::prop_assert!(parsed.len() <= got.len());
                for (k, v) in &got {
                    // serde keeps the last of a key named twice; compare unique keys only.
                    if got.iter().filter(|(k2, _)| k2 == k).count() > 1 {
                        continue;
                    }
                    let expected = &parsed[*k];
                    match v {
                        Raw::Str(s) => proptest::prop_assert_eq!(expected.as_str(), Some(*s)),
                        Raw::Bool(b) => proptest::prop_assert_eq!(expected.as_bool(), Some(*b)),
                        Raw::Null => proptest::prop_assert!(expected.is_null()),
                        Raw::Num(_) => proptest::prop_assert!(expected.is_number()),
                        Raw::Object(o) | Raw::Array(o) => {
                            let inner: serde_json::Value = serde_json::from_str(o).unwrap();
                            proptest::prop_assert_eq!(&inner, expected);
                        }
                    }
                }
            }
        }
    }
}
