//! The status page: one self-contained HTML document (no script, no external fetch) that
//! reloads itself, with a candle chart per stream drawn as inline SVG on the server.

use std::fmt::Write as _;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::{Status, StreamStatus};
use crate::model::Candle;

/// Chart size in pixels.
const CHART_W: i64 = 360;
const CHART_H: i64 = 110;

/// Renders `status` as the status page, which reloads itself every `refresh_seconds`.
pub fn render_page(status: &Status, refresh_seconds: u32) -> String {
    let mut out = String::with_capacity(16 << 10);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_seconds}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>crypto-feeder status</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = write!(
        out,
        "<h1>crypto-feeder <span class=\"{cls}\">{ready}</span></h1>\
         <p class=\"meta\">{phase} for {uptime}, {tps:.1} trades/s{mem}{cpu}, as of {time}</p>",
        cls = if status.ready { "ok" } else { "bad" },
        ready = if status.ready { "ready" } else { "not ready" },
        phase = status.phase,
        uptime = human_duration(status.uptime_seconds),
        tps = status.trades_per_second(),
        mem = status
            .process
            .resident_memory_bytes
            .map(|b| format!(", {:.1} MiB resident", b as f64 / 1048576.0))
            .unwrap_or_default(),
        cpu = status
            .process
            .cpu_seconds
            .map(|c| format!(", {c:.1} s CPU"))
            .unwrap_or_default(),
        time = status.time,
    );
    out.push('\n');

    out.push_str(
        "<h2>Streams</h2><table id=\"streams\"><thead><tr><th>exchange</th><th>symbol</th>\
         <th>state</th><th>trades/s</th><th>trades</th><th>last trade</th>\
         <th>watermark lag</th><th>gaps</th><th>backfilled</th><th>duplicates</th>\
         </tr></thead><tbody>\n",
    );
    for s in &status.streams {
        let _ = write!(
            out,
            "<tr class=\"stream\" data-exchange=\"{ex}\" data-symbol=\"{sym}\"><td>{ex}</td>\
             <td>{sym}</td><td class=\"{cls}\">{state}</td><td>{tps:.1}</td><td>{trades}</td>\
             <td>{age}</td><td>{lag}</td><td>{gaps}</td><td>{backfilled}</td><td>{dups}</td></tr>",
            ex = esc(&s.exchange),
            sym = esc(s.symbol.as_str()),
            cls = if s.ready { "ok" } else { "bad" },
            state = s.state,
            tps = s.trades_per_second,
            trades = s.trades,
            age = s
                .last_trade_age_seconds
                .map(|a| format!("{} ago", human_duration(a)))
                .unwrap_or_else(|| "none yet".into()),
            lag = s
                .watermark_lag_seconds
                .map(human_duration)
                .unwrap_or_else(|| "-".into()),
            gaps = s.gaps,
            backfilled = s.backfilled,
            dups = s.duplicates,
        );
        out.push('\n');
    }
    out.push_str("</tbody></table>\n");

    out.push_str(
        "<h2>Writers</h2><table id=\"writers\"><thead><tr><th>writer</th><th>state</th>\
         <th>events/s</th><th>events</th><th>queue</th><th>spill</th><th>errors</th>\
         <th>retries</th><th>dropped</th></tr></thead><tbody>\n",
    );
    for w in &status.writers {
        let _ = write!(
            out,
            "<tr class=\"writer\"><td>{name}</td><td class=\"{cls}\">{state}</td>\
             <td>{eps:.1}</td><td>{events}</td><td>{queued} events, {qkib} KiB</td>\
             <td>{spill} KiB</td><td>{errors}</td><td>{retries}</td><td>{dropped}</td></tr>",
            name = esc(&w.name),
            cls = if w.ready { "ok" } else { "bad" },
            state = w.state,
            eps = w.events_per_second,
            events = w.events,
            queued = w.queued_events,
            qkib = w.queued_bytes / 1024,
            spill = w.spill_bytes / 1024,
            errors = w.errors,
            retries = w.retries,
            dropped = w.dropped,
        );
        out.push('\n');
    }
    out.push_str("</tbody></table>\n<h2>Recent candles</h2><div class=\"charts\">\n");
    for s in &status.streams {
        chart(&mut out, s);
    }
    out.push_str("</div></body></html>\n");
    out
}

const STYLE: &str =
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h1 span{font-size:.7em;padding:.1em .5em;border-radius:.3em}\
.meta{color:#666}table{border-collapse:collapse;margin-bottom:1em}\
th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}\
th:first-child,td:first-child,td:nth-child(2){text-align:left}\
.ok{color:#14702a}.bad{color:#b3261e;font-weight:bold}h1 .ok{background:#d8f0dc}\
h1 .bad{background:#f6d5d2}.charts{display:flex;flex-wrap:wrap;gap:1em}\
figure{margin:0;background:#fff;border:1px solid #ddd;padding:.5em}\
figcaption{font-size:.9em;color:#444}";

/// One stream's candle chart, as a figure with an inline SVG.
fn chart(out: &mut String, s: &StreamStatus) {
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{} {}{}</figcaption>",
        esc(&s.exchange),
        esc(s.symbol.as_str()),
        s.candles
            .last()
            .map(|c| format!(" · {} · close {}", c.interval, c.close))
            .unwrap_or_default()
    );
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\">"
    );
    if s.candles.is_empty() {
        let _ = write!(
            out,
            "<text x=\"8\" y=\"{}\" fill=\"#888\">no candles yet</text>",
            CHART_H / 2
        );
    } else {
        candles_svg(out, &s.candles);
    }
    out.push_str("</svg></figure>\n");
}

/// Candlesticks scaled to the chart: prices stay exact decimals until they become pixels.
fn candles_svg(out: &mut String, candles: &[Candle]) {
    let hi = candles.iter().map(|c| c.high).max().unwrap_or_default();
    let lo = candles.iter().map(|c| c.low).min().unwrap_or_default();
    let range = hi - lo;
    let pad = 4;
    let plot_h = CHART_H - 2 * pad;
    let y = |p: Decimal| -> i64 {
        if range.is_zero() {
            return CHART_H / 2;
        }
        let frac = (hi - p) * Decimal::from(plot_h) / range;
        pad + frac.round().to_i64().unwrap_or(0)
    };
    let slot = CHART_W / super::RECENT_CANDLES as i64;
    let body_w = (slot - 2).max(1);
    // Right-aligned: the newest candle at the right edge.
    let first_x = CHART_W - slot * candles.len() as i64;
    for (i, c) in candles.iter().enumerate() {
        let x = first_x + slot * i as i64;
        let mid = x + slot / 2;
        let color = if c.close >= c.open {
            "#14702a"
        } else {
            "#b3261e"
        };
        let (top, bottom) = (y(c.open.max(c.close)), y(c.open.min(c.close)));
        let dash = if c.complete {
            ""
        } else {
            " stroke-dasharray=\"2 1\" fill-opacity=\"0.4\""
        };
        let _ = write!(
            out,
            "<line x1=\"{mid}\" y1=\"{}\" x2=\"{mid}\" y2=\"{}\" stroke=\"{color}\"/>\
             <rect class=\"candle\" x=\"{}\" y=\"{top}\" width=\"{body_w}\" height=\"{}\" \
             fill=\"{color}\" stroke=\"{color}\"{dash}><title>{} o {} h {} l {} c {} v {}</title></rect>",
            y(c.high),
            y(c.low),
            x + 1,
            (bottom - top).max(1),
            c.open_time,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
        );
    }
    let _ = write!(
        out,
        "<text x=\"2\" y=\"11\" font-size=\"10\" fill=\"#666\">{hi}</text>\
         <text x=\"2\" y=\"{}\" font-size=\"10\" fill=\"#666\">{lo}</text>",
        CHART_H - 2
    );
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1.2s`, `3m05s`, `2h10m`.
pub(crate) fn human_duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        let s = secs as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = secs as u64 / 60;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::ExchangeStats;
    use crate::model::{Symbol, Timestamp};
    use crate::observe::Monitor;
    use std::sync::Arc;

    #[test]
    fn the_page_lists_every_stream_draws_its_candles_and_escapes_names() {
        let symbols = [
            Symbol::parse("BTC-USD").unwrap(),
            Symbol::parse("ETH-USD").unwrap(),
        ];
        let stats = Arc::new(ExchangeStats::for_symbols(&symbols));
        let m = Monitor::new();
        m.watch_exchange("<x>", stats.clone());
        m.running();
        let (_, btc) = stats.streams.iter().next().unwrap();
        for (i, (o, c)) in [("10.5", "11"), ("11", "10.25")].iter().enumerate() {
            btc.push_candle(&Candle {
                exchange: Arc::from("<x>"),
                symbol: symbols[0].clone(),
                interval: "1m".parse().unwrap(),
                open_time: Timestamp::from_unix_secs(60 * i as i64),
                close_time: Timestamp::from_unix_secs(60 * i as i64 + 60),
                open: o.parse().unwrap(),
                high: "11.5".parse().unwrap(),
                low: "10".parse().unwrap(),
                close: c.parse().unwrap(),
                volume: "2".parse().unwrap(),
                trades: 3,
                revision: 0,
                complete: true,
            });
        }
        let html = render_page(&m.status(), 2);
        assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"));
        assert_eq!(html.matches("class=\"stream\"").count(), 2);
        assert_eq!(html.matches("class=\"candle\"").count(), 2);
        assert!(html.contains("no candles yet"), "ETH has none");
        assert!(html.contains("http-equiv=\"refresh\" content=\"2\""));
        assert!(
            !html.contains("http://") || !html.contains("src="),
            "nothing fetched"
        );
        // The high of 11.5 is the top of the plot, the low of 10 its bottom.
        assert!(html.contains("y1=\"4\""), "{html}");
        assert!(html.contains(&format!("y2=\"{}\"", CHART_H - 4)), "{html}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(1.25), "1.2s");
        assert_eq!(human_duration(185.0), "3m05s");
        assert_eq!(human_duration(7800.0), "2h10m");
    }
}
