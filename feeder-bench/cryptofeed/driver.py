"""cryptofeed on the mock venues of `feeder-bench real-load`, for a side-by-side figure.

Runs cryptofeed's own feeds, unchanged, with only their endpoints pointed at the local
mocks: each feed class keeps its WebSocket and REST endpoints in the class attributes
`websocket_endpoints` and `rest_endpoints` (cryptofeed 2.4), so a subclass that replaces
them reads the mock's instrument list and trades instead of the venue's. Each trade goes to
a JSON-lines file, one line per trade through a buffered file, as cryptofeed's examples
write them.

    python driver.py --out trades.jsonl \
        --venue bitstamp,ws://127.0.0.1:PORT/,http://127.0.0.1:PORT,BTC-USD+ETH-USD

Prints `STARTED` once the feeds are added, runs until stdin closes, then prints
`RESULT <trades written>` and exits.

Which of cryptofeed's feeds can read the mocks (cryptofeed 2.4.1):
- bitstamp: yes (the same `bts:subscribe`, `live_trades_*` and trading-pairs list).
- coinbase: no. cryptofeed speaks Coinbase's Advanced Trade protocol (`market_trades`
  events; products under `products` with `base_currency_id`), the mock and crypto-feeder
  the Exchange protocol (`match` messages; `GET /products` as a list).
- binance: connects, reads nothing: cryptofeed subscribes to `@aggTrade`, the mock serves
  `@trade`.
- okx: its instrument list asks for `instType=SWAP` too, which the mock refuses.
- bitfinex: its symbol list starts at `/v2/conf/pub:list:currency`, which the mock lacks.
- huobi: connects; the mock answers its messages with `invalid json`.
- kraken: cryptofeed speaks WebSocket v1, the mock v2.
"""

import argparse
import asyncio
import json
import os
import sys
import threading

from cryptofeed import FeedHandler
from cryptofeed import connection
from cryptofeed.connection import RestEndpoint, WebsocketEndpoint
from cryptofeed.defines import TRADES
from cryptofeed.exchanges import OKX, Binance, Bitfinex, Bitstamp, Huobi

FEEDS = {
    "bitstamp": Bitstamp,
    "binance": Binance,
    "okx": OKX,
    "bitfinex": Bitfinex,
    "huobi": Huobi,
}

# cryptofeed's WebSocket connection refuses any address but `wss://`; the mocks listen on
# plain `ws://` over loopback. The check is passed a `wss://` spelling and the real address
# put back, so the connection (websockets' `connect`) goes to the mock as it is.
_checked_init = connection.WSAsyncConn.__init__


def _plain_ws_init(self, address, *args, **kwargs):
    plain = address.startswith("ws://")
    _checked_init(self, "wss://" + address[len("ws://"):] if plain else address, *args, **kwargs)
    if plain:
        self.address = address


connection.WSAsyncConn.__init__ = _plain_ws_init


def pointed(cls, ws_url, rest_url):
    """`cls` with its endpoints replaced by the mock's (the same routes and options)."""
    ws = cls.websocket_endpoints[0]
    rest = cls.rest_endpoints[0]
    # OKX lists one public and one private endpoint; only the public one is kept.
    # Binance appends `/stream?streams=...` to the address; Bitstamp uses it as it is.
    address = ws_url.rstrip("/") if cls is Binance else ws_url
    attrs = {
        "websocket_endpoints": [
            WebsocketEndpoint(
                address,
                channel_filter=ws.channel_filter,
                limit=ws.limit,
                options={"compression": None} if ws.options.get("compression", "x") is None else None,
            )
        ],
        "rest_endpoints": [RestEndpoint(rest_url.rstrip("/"), routes=rest.routes)],
    }
    return type(cls.__name__, (cls,), attrs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--venue", action="append", default=[],
                        help="name,ws_url,rest_url,SYM+SYM")
    args = parser.parse_args()

    out = open(args.out, "w", encoding="utf-8")
    count = [0]

    async def on_trade(trade, receipt_timestamp):
        d = trade.to_dict(numeric_type=str)
        d["receipt_timestamp"] = receipt_timestamp
        out.write(json.dumps(d))
        out.write("\n")
        count[0] += 1

    fh = FeedHandler(config={"uvloop": True, "log": {"disabled": True}})
    for spec in args.venue:
        name, ws_url, rest_url, symbols = spec.split(",")
        feed = pointed(FEEDS[name], ws_url, rest_url)
        fh.add_feed(feed(symbols=symbols.split("+"), channels=[TRADES],
                         callbacks={TRADES: on_trade}))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fh.run(start_loop=False, install_signal_handlers=False)

    def watch_stdin():
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("STARTED", flush=True)
    loop.run_forever()
    out.flush()
    print(f"RESULT {count[0]}", flush=True)
    # The feeds' connections are not closed one by one: the process is done.
    os._exit(0)


if __name__ == "__main__":
    main()
