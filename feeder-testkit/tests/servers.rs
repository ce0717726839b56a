//! The mock servers, exercised by real clients over real sockets.

use std::time::Duration;

use feeder_testkit::http::{HttpServer, Response};
use feeder_testkit::ws::{Incoming, Step, WsServer};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

async fn next_msg<S>(ws: &mut S) -> Message
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no message in time")
        .expect("stream ended")
        .expect("socket error")
}

#[tokio::test]
async fn ws_handler_round_trip_sees_path_and_echoes() {
    let server = WsServer::start(|mut conn| async move {
        let path = conn.path().to_owned();
        conn.send_text(format!("path={path}")).await.unwrap();
        while let Some(msg) = conn.recv().await {
            if let Incoming::Text(t) = msg {
                conn.send_text(format!("echo:{t}")).await.unwrap();
            }
        }
    })
    .unwrap();
    let url = server.url().join("stream?s=btcusd").unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(
        next_msg(&mut ws).await,
        Message::text("path=/stream?s=btcusd")
    );
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_msg(&mut ws).await, Message::text("echo:hello"));
    assert_eq!(server.connections(), 1);
    assert_eq!(server.paths(), vec!["/stream?s=btcusd".to_owned()]);
    let got = server.wait_messages(1, WAIT).await.unwrap();
    assert_eq!(got[0].conn, 0);
    assert_eq!(got[0].message, Incoming::Text("hello".into()));
}

#[tokio::test]
async fn ws_script_plays_per_connection_and_drops_without_close_frame() {
    let server = WsServer::scripted_per_connection(vec![
        vec![Step::Expect(1), Step::Send("a".into()), Step::Drop],
        vec![Step::SendBinary(vec![1, 2]), Step::Close],
    ])
    .unwrap();

    let (mut ws, _) = tokio_tungstenite::connect_async(server.url().as_str())
        .await
        .unwrap();
    ws.send(Message::text("sub")).await.unwrap();
    assert_eq!(next_msg(&mut ws).await, Message::text("a"));
    // An abrupt drop is an error or a plain end, never a close frame.
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no end in time");
    assert!(!matches!(end, Some(Ok(Message::Close(_)))), "{end:?}");

    let (mut ws, _) = tokio_tungstenite::connect_async(server.url().as_str())
        .await
        .unwrap();
    assert_eq!(next_msg(&mut ws).await, Message::binary(vec![1, 2]));
    assert!(matches!(next_msg(&mut ws).await, Message::Close(_)));
    server.wait_connections(2, WAIT).await.unwrap();
}

#[tokio::test]
async fn ws_script_pings_and_answers_pings() {
    let server = WsServer::scripted(vec![
        Step::Ping(b"p1".to_vec()),
        Step::ExpectPong,
        Step::Send("done".into()),
    ])
    .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url().as_str())
        .await
        .unwrap();
    // The client library answers the ping while reading on.
    assert_eq!(
        next_msg(&mut ws).await,
        Message::Ping(b"p1".to_vec().into())
    );
    assert_eq!(next_msg(&mut ws).await, Message::text("done"));
    ws.send(Message::Ping(b"c1".to_vec().into())).await.unwrap();
    assert_eq!(
        next_msg(&mut ws).await,
        Message::Pong(b"c1".to_vec().into())
    );
    let pongs = server
        .wait_received(1, |r| matches!(r.message, Incoming::Pong(_)), WAIT)
        .await
        .unwrap();
    assert_eq!(pongs[0].message, Incoming::Pong(b"p1".to_vec()));
}

#[tokio::test]
async fn ws_wait_times_out_when_nothing_comes() {
    let server = WsServer::scripted(vec![Step::Stall]).unwrap();
    let err = server
        .wait_connections(1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!((err.wanted, err.got), (1, 0));
}

#[tokio::test]
async fn ws_server_drop_ends_connections() {
    let server = WsServer::scripted(vec![Step::Stall]).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url().as_str())
        .await
        .unwrap();
    server.wait_connections(1, WAIT).await.unwrap();
    drop(server);
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("connection outlived the server");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
}

#[tokio::test]
async fn http_get_is_answered_and_recorded() {
    let server = HttpServer::start(|req| async move {
        Response::json(format!(
            r#"{{"path":"{}","n":"{}"}}"#,
            req.path,
            req.query_param("n").unwrap_or("")
        ))
        .with_header("x-page", "2")
    })
    .unwrap();
    let url = server.url().join("/api/trades?n=a%20b").unwrap();
    let resp = reqwest::Client::new()
        .get(url)
        .header("x-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-page"], "2");
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"path":"/api/trades","n":"a b"}"#
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].raw_query.as_deref(), Some("n=a%20b"));
    assert_eq!(reqs[0].header("X-Key"), Some("k"));
}

#[tokio::test]
async fn http_script_serves_queue_then_repeats_last_and_404s_unknown() {
    let server = HttpServer::scripted([(
        "/t",
        vec![
            Response::status(429).with_header("retry-after", "3"),
            Response::text("ok"),
        ],
    )])
    .unwrap();
    let client = reqwest::Client::new();
    let get = |p: &str| client.get(server.url().join(p).unwrap()).send();
    let r = get("/t").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    for _ in 0..2 {
        let r = get("/t").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(get("/other").await.unwrap().status(), 404);
    assert_eq!(server.wait_requests(4, WAIT).await.unwrap().len(), 4);
}

#[tokio::test]
async fn http_delayed_response_trips_client_timeout() {
    let server = HttpServer::scripted([(
        "/slow",
        vec![Response::text("late").delayed(Duration::from_secs(30))],
    )])
    .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = client
        .get(server.url().join("/slow").unwrap())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}
