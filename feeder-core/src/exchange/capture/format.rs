//! The capture file format, version 1: encoding and reading of records.
//!
//! ```text
//! file    = header body
//! header  = "FCAP" version:u16 compression:u8 reserved:u8 meta_len:u32 meta:[meta_len]
//!           (meta: UTF-8 JSON, {"exchange": "...", "started_at_ns": ...})
//! body    = records (compression 0), or zstd frames whose concatenated content is records
//!           (compression 1); each frame holds whole records, so a file cut short loses only
//!           its last frame
//! record  = len:u32 crc:u32 kind:u8 dir:u8 tag_len:u16 conn:u64 time_ns:i64
//!           tag:[tag_len] payload:[len - 20 - tag_len]
//!           (len counts from kind to the end of the payload; crc is the CRC-32 of those
//!           `len` bytes, as zlib computes it)
//! ```
//! Integers are little-endian. See [`Kind`] for what each kind's tag and payload hold.

use std::io::{self, Read};

use bytes::Bytes;

use crate::model::Timestamp;

/// The first bytes of every capture file.
pub const MAGIC: [u8; 4] = *b"FCAP";

/// The version of the format this code writes and reads.
pub const VERSION: u16 = 1;

/// Bytes of a record before its tag, after `len` and `crc`.
const FIXED: usize = 20;

/// The largest record accepted when reading: a length above it is damage, not data.
pub const MAX_RECORD: usize = 64 << 20;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A WebSocket text frame; payload: its bytes.
    WsText = 1,
    /// A WebSocket binary frame; payload: its bytes.
    WsBinary = 2,
    /// A WebSocket ping; payload: its bytes.
    WsPing = 3,
    /// A WebSocket pong; payload: its bytes.
    WsPong = 4,
    /// A WebSocket close frame; payload: code:u16 then the reason's UTF-8 (empty without a
    /// code).
    WsClose = 5,
    /// A WebSocket connection opened (direction out); tag: the URL.
    Connect = 10,
    /// A WebSocket connection ended (direction local); tag: why.
    Disconnect = 11,
    /// A REST request (direction out); tag: the symbol; payload: the URL (headers are not
    /// kept: they may hold credentials).
    HttpRequest = 20,
    /// A REST answer (direction in), same connection number as its request; tag: the symbol;
    /// payload: status:u16 headers_len:u32 headers body, where headers are `name: value`
    /// lines each ended by `\r\n`.
    HttpResponse = 21,
    /// The driver said how far a stream is complete (direction local); tag: the symbol;
    /// payload: state:u8 (0 live, 1 behind, 2 up to) then, for 2, time_ns:i64.
    Progress = 30,
    /// The driver recorded a hole it could not fill (direction local); payload: the gap
    /// event as JSON, as writers write it.
    Gap = 31,
}

impl Kind {
    /// The kind of a byte, if it is one.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::WsText,
            2 => Kind::WsBinary,
            3 => Kind::WsPing,
            4 => Kind::WsPong,
            5 => Kind::WsClose,
            10 => Kind::Connect,
            11 => Kind::Disconnect,
            20 => Kind::HttpRequest,
            21 => Kind::HttpResponse,
            30 => Kind::Progress,
            31 => Kind::Gap,
            _ => return None,
        })
    }
}

/// Which way a record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// Received from the venue.
    In = 0,
    /// Sent to the venue.
    Out = 1,
    /// Noted by the feeder itself (connections, completeness, gaps).
    Local = 2,
}

impl Direction {
    fn from_u8(b: u8) -> Option<Direction> {
        Some(match b {
            0 => Direction::In,
            1 => Direction::Out,
            2 => Direction::Local,
            _ => return None,
        })
    }
}

/// One record of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What it is.
    pub kind: Kind,
    /// Which way it went.
    pub direction: Direction,
    /// The connection (WebSocket) or request (REST) it belongs to, numbered from 1 per
    /// exchange and run; 0 for the feeder's own notes.
    pub conn: u64,
    /// When it was received (or sent, or noted).
    pub time: Timestamp,
    /// A short text whose meaning depends on the kind (a symbol, a URL, a reason).
    pub tag: Bytes,
    /// The content.
    pub payload: Bytes,
}

impl Record {
    /// The encoded size of the record, framing included.
    pub fn encoded_len(&self) -> usize {
        8 + FIXED + self.tag.len() + self.payload.len()
    }

    /// Appends the encoded record to `out`. A tag longer than 65535 bytes is cut.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = &self.tag[..self.tag.len().min(u16::MAX as usize)];
        let len = FIXED + tag.len() + self.payload.len();
        out.reserve(8 + len);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        let crc_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let body = out.len();
        out.push(self.kind as u8);
        out.push(self.direction as u8);
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.conn.to_le_bytes());
        out.extend_from_slice(&self.time.unix_nanos().to_le_bytes());
        out.extend_from_slice(tag);
        out.extend_from_slice(&self.payload);
        let crc = crc32fast::hash(&out[body..]);
        out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// The tag as text (lossy).
    pub fn tag_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.tag)
    }
}

/// The parts of a [`Kind::HttpResponse`] payload.
#[derive(Debug)]
pub struct HttpParts<'a> {
    /// The status code.
    pub status: u16,
    /// The headers, as `name: value\r\n` lines.
    pub headers: &'a [u8],
    /// The body.
    pub body: &'a [u8],
}

/// Encodes a [`Kind::HttpResponse`] payload.
pub fn encode_http(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.extend_from_slice(name.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    let mut out = Vec::with_capacity(6 + h.len() + body.len());
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out
}

/// Splits a [`Kind::HttpResponse`] payload; `None` when it is malformed.
pub fn decode_http(payload: &[u8]) -> Option<HttpParts<'_>> {
    let status = u16::from_le_bytes(payload.get(0..2)?.try_into().ok()?);
    let hlen = u32::from_le_bytes(payload.get(2..6)?.try_into().ok()?) as usize;
    let headers = payload.get(6..6usize.checked_add(hlen)?)?;
    let body = &payload[6 + hlen..];
    Some(HttpParts {
        status,
        headers,
        body,
    })
}

/// Parses the header lines of [`HttpParts::headers`] back into a map, skipping a line that is
/// not a valid header.
pub fn parse_headers(lines: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// How the body of a file is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Plain records.
    None = 0,
    /// zstd frames.
    Zstd = 1,
}

/// Encodes a file header.
pub fn encode_header(compression: Compression, meta: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + meta.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(compression as u8);
    out.push(0);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out
}

/// Why a capture file could not be read (any further).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be read, or its compressed data ends early or is damaged.
    #[error("reading the capture")]
    Io(#[from] io::Error),
    /// Not a capture file, or a version this code does not read.
    #[error("not a capture file of a known version: {0}")]
    Header(String),
    /// The file ends inside a record (a writer stopped mid-way: a crash, a full disk).
    #[error("the capture ends inside a record, after {records} whole records")]
    Truncated {
        /// Whole records read before.
        records: u64,
    },
    /// A record's checksum or fields are wrong.
    #[error("record {index} is corrupt: {why}")]
    Corrupt {
        /// Its position in the file, from 0.
        index: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// Reads the records of one capture file in order.
///
/// Iterating yields each whole, intact record, then at most one error where the file is
/// damaged (cut short, corrupt), and nothing after it: what comes before the damage is
/// always read.
pub struct Reader {
    inner: Box<dyn Read + Send>,
    /// The JSON metadata of the header.
    meta: Vec<u8>,
    records: u64,
    done: bool,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens a capture file.
    pub fn open(path: &std::path::Path) -> Result<Reader, CaptureError> {
        let file = std::fs::File::open(path)?;
        Self::new(io::BufReader::with_capacity(1 << 16, file))
    }

    /// Reads a capture from any reader (a file, bytes in memory).
    pub fn new<R: Read + Send + 'static>(mut r: R) -> Result<Reader, CaptureError> {
        let mut head = [0u8; 12];
        r.read_exact(&mut head)
            .map_err(|_| CaptureError::Header("shorter than a header".into()))?;
        if head[0..4] != MAGIC {
            return Err(CaptureError::Header("bad magic".into()));
        }
        let version = u16::from_le_bytes([head[4], head[5]]);
        if version != VERSION {
            return Err(CaptureError::Header(format!("version {version}")));
        }
        let meta_len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if meta_len > MAX_RECORD {
            return Err(CaptureError::Header("metadata too long".into()));
        }
        let mut meta = vec![0; meta_len];
        r.read_exact(&mut meta)
            .map_err(|_| CaptureError::Header("metadata cut short".into()))?;
        let inner: Box<dyn Read + Send> = match head[6] {
            0 => Box::new(r),
            1 => Box::new(zstd::stream::read::Decoder::new(r)?),
            c => return Err(CaptureError::Header(format!("compression {c}"))),
        };
        Ok(Reader {
            inner,
            meta,
            records: 0,
            done: false,
        })
    }

    /// The header's JSON metadata.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// Reads exactly `buf.len()` bytes; false on a clean end before the first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, CaptureError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(CaptureError::Truncated {
                        records: self.records,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        let mut head = [0u8; 8];
        if !self.fill(&mut head)? {
            return Ok(None);
        }
        let index = self.records;
        let corrupt = |why| CaptureError::Corrupt { index, why };
        let len = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Err(corrupt("impossible length"));
        }
        let mut body = vec![0u8; len];
        if !self.fill(&mut body)? {
            return Err(CaptureError::Truncated {
                records: self.records,
            });
        }
        if crc32fast::hash(&body) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let kind = Kind::from_u8(body[0]).ok_or(corrupt("unknown kind"))?;
        let direction = Direction::from_u8(body[1]).ok_or(corrupt("unknown direction"))?;
        let tag_len = u16::from_le_bytes([body[2], body[3]]) as usize;
        if FIXED + tag_len > len {
            return Err(corrupt("tag beyond the record"));
        }
        let conn = u64::from_le_bytes(body[4..12].try_into().unwrap_or_default());
        let time = i64::from_le_bytes(body[12..20].try_into().unwrap_or_default());
        let body = Bytes::from(body);
        self.records += 1;
        Ok(Some(Record {
            kind,
            direction,
            conn,
            time: Timestamp::from_unix_nanos(time, 9),
            tag: body.slice(FIXED..FIXED + tag_len),
            payload: body.slice(FIXED + tag_len..),
        }))
    }
}

impl Iterator for Reader {
    type Item = Result<Record, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        Record {
            kind: if i % 2 == 0 {
                Kind::WsText
            } else {
                Kind::HttpResponse
            },
            direction: Direction::In,
            conn: i / 3 + 1,
            time: Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + i as i64 * 1_001, 9),
            tag: Bytes::from(if i % 2 == 0 { "" } else { "BTC-USD" }),
            payload: Bytes::from(format!(
                "{{\"n\":{i},\"pad\":\"{}\"}}",
                "x".repeat(i as usize)
            )),
        }
    }

    fn file(compression: Compression, records: &[Record]) -> Vec<u8> {
        let mut out = encode_header(compression, br#"{"exchange":"x"}"#);
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            r.encode(&mut body);
            // Several blocks, as the writer makes them.
            if compression == Compression::Zstd && (i % 7 == 6 || i + 1 == records.len()) {
                out.extend(zstd::bulk::compress(&body, 3).unwrap());
                body.clear();
            }
        }
        out.extend(body);
        out
    }

    fn read(bytes: Vec<u8>) -> (Vec<Record>, Option<CaptureError>) {
        let reader = Reader::new(std::io::Cursor::new(bytes)).unwrap();
        let mut ok = Vec::new();
        for r in reader {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => return (ok, Some(e)),
            }
        }
        (ok, None)
    }

    #[test]
    fn records_come_back_as_written_in_both_compressions() {
        let records: Vec<Record> = (0..50).map(record).collect();
        for c in [Compression::None, Compression::Zstd] {
            let reader = Reader::new(std::io::Cursor::new(file(c, &records))).unwrap();
            assert_eq!(reader.meta(), br#"{"exchange":"x"}"#);
            let (got, err) = read(file(c, &records));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(got, records, "{c:?}");
        }
    }

    #[test]
    fn a_file_cut_short_is_read_up_to_the_cut() {
        let records: Vec<Record> = (0..50).map(record).collect();
        // Plain: every whole record before the cut comes back, then the cut is named.
        let whole = file(Compression::None, &records);
        let cut = whole.len() - 5;
        let (got, err) = read(whole[..cut].to_vec());
        assert_eq!(got, records[..49]);
        assert!(
            matches!(err, Some(CaptureError::Truncated { records: 49 })),
            "{err:?}"
        );
        // zstd: the blocks before the cut come back whole (the last block holds only the
        // fiftieth record).
        let whole = file(Compression::Zstd, &records);
        let (got, err) = read(whole[..whole.len() - 3].to_vec());
        assert!(err.is_some());
        assert!(got.len() >= 49, "{} records", got.len());
        assert_eq!(got, records[..got.len()]);
        // A file cut inside its header is not a capture.
        assert!(Reader::new(std::io::Cursor::new(whole[..7].to_vec())).is_err());
    }

    #[test]
    fn a_corrupt_record_stops_the_reading_there_and_is_named() {
        let records: Vec<Record> = (0..10).map(record).collect();
        let mut bytes = file(Compression::None, &records);
        // A flipped bit in the payload of the fourth record.
        let header = encode_header(Compression::None, br#"{"exchange":"x"}"#).len();
        let at = header + records[..3].iter().map(Record::encoded_len).sum::<usize>() + 30;
        bytes[at] ^= 0x10;
        let (got, err) = read(bytes);
        assert_eq!(got, records[..3]);
        assert!(
            matches!(
                err,
                Some(CaptureError::Corrupt {
                    index: 3,
                    why: "checksum mismatch"
                })
            ),
            "{err:?}"
        );
        // A length no record can have.
        let mut bytes = file(Compression::None, &records);
        bytes[header + 3] = 0xff;
        let (got, err) = read(bytes);
        assert!(got.is_empty());
        assert!(matches!(err, Some(CaptureError::Corrupt { .. })), "{err:?}");
        // Damage inside a zstd frame is caught by the frame's checksum or the decoder.
        let mut bytes = file(Compression::Zstd, &records);
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        let (got, err) = read(bytes);
        assert!(err.is_some());
        assert_eq!(got, records[..got.len()]);
    }

    #[test]
    fn wrong_magic_or_version_is_refused() {
        let mut bytes = file(Compression::None, &[record(1)]);
        bytes[4] = 9;
        assert!(matches!(
            Reader::new(std::io::Cursor::new(bytes)),
            Err(CaptureError::Header(_))
        ));
        assert!(Reader::new(std::io::Cursor::new(b"JUNKJUNKJUNKJUNK".to_vec())).is_err());
    }

    #[test]
    fn http_answers_round_trip_with_their_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("cb-after", "123".parse().unwrap());
        h.append("x-two", "a".parse().unwrap());
        h.append("x-two", "b c".parse().unwrap());
        let payload = encode_http(200, &h, b"[1,2]");
        let parts = decode_http(&payload).unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(parts.body, b"[1,2]");
        assert_eq!(parse_headers(parts.headers), h);
        assert!(decode_http(&payload[..4]).is_none());
    }
}
