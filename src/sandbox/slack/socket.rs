//! The Socket Mode server: `hello`, envelopes and acks, pings, disconnects, and connections
//! that go silent.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::world::{SILENCE, SocketConn};
use super::{APP_ID, Shared, SlackSandbox};

impl SlackSandbox {
    /// Sends a `disconnect` frame (e.g. `refresh_requested`, `warning`) on every live connection.
    pub fn disconnect_all(&self, reason: &str) {
        let frame = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}}).to_string();
        for s in self.world().sockets.iter().filter(|s| !s.dead) {
            let _ = s.tx.send(frame.clone());
        }
    }

    /// Black-holes every current connection: it stays open but nothing crosses it any more, the
    /// way a socket silently stops delivering.
    pub fn silence_all(&self) {
        for s in self.world().sockets.iter_mut() {
            s.dead = true;
            let _ = s.tx.send(SILENCE.to_string());
        }
    }

    /// Pings Socket Mode connections opened from now on this often.
    pub fn set_ping_every(&self, every: Duration) {
        self.world().ping_every = every;
    }

    /// Pongs the bot has answered so far.
    pub fn pongs(&self) -> u64 {
        self.world().pongs
    }

    /// Waits until the bot has answered at least `n` pings in total.
    pub async fn wait_pongs(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.connected.notified();
            if self.pongs() >= n {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, notified).await.is_err() {
                return self.pongs() >= n;
            }
        }
    }

    /// Waits until the bot has opened at least `n` Socket Mode connections in total.
    pub async fn wait_connections(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.connected.notified();
            if self.connections_opened() >= n && self.live_connections() > 0 {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, notified).await.is_err() {
                return self.connections_opened() >= n;
            }
        }
    }
}

/// The WebSocket handshake (RFC 6455 section 4.2): answers 101 with the accept key, then serves
/// the upgraded connection. Done with hyper's upgrade and tungstenite (already the bot's
/// WebSocket client) rather than a second WebSocket stack in axum.
pub(super) async fn socket_upgrade(State(state): State<Shared>, mut request: Request) -> Response {
    let headers = request.headers();
    let wants_websocket =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| wants_websocket) else {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        serve_socket(state, socket).await;
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
    response
}

async fn serve_socket<S>(state: Shared, socket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let id = {
        let mut w = state.world.lock().expect("world");
        w.connections_opened += 1;
        let id = w.connections_opened;
        w.sockets.push(SocketConn { id, tx: tx.clone(), dead: false });
        let live = w.sockets.iter().filter(|s| !s.dead).count();
        let hello = json!({"type": "hello", "num_connections": live,
                           "debug_info": {"host": "sandbox", "build_number": 1, "approximate_connection_time": 18060},
                           "connection_info": {"app_id": APP_ID}});
        let _ = tx.send(hello.to_string());
        id
    };
    state.connected.notify_waiters();
    let ping_every = state.world.lock().expect("world").ping_every;
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            _ = pings.tick() => {
                // Slack pings every connection about every 10 s ("Ping from applink-1").
                if sink.send(WsMessage::Ping(b"Ping from sandbox".as_slice().into())).await.is_err() {
                    break;
                }
            }
            out = rx.recv() => {
                let Some(text) = out else { break };
                if text == SILENCE {
                    // Hold the connection open without reading or writing anything: no frames,
                    // no pongs, like a socket that silently stopped delivering.
                    while rx.recv().await.is_some() {}
                    break;
                }
                if sink.send(WsMessage::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = stream.next() => {
                match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Ok(ack) = serde_json::from_str::<Value>(&text)
                            && let Some(envelope_id) = ack["envelope_id"].as_str()
                        {
                            let waiter = state.world.lock().expect("world").acks.remove(envelope_id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(ack);
                            }
                        }
                    }
                    Some(Ok(WsMessage::Pong(_))) => {
                        state.world.lock().expect("world").pongs += 1;
                        state.connected.notify_waiters();
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    state.world.lock().expect("world").sockets.retain(|s| s.id != id);
}
