//! Socket Mode ingress through slack-morphism's listener.
//!
//! The callbacks only put the event in the inbox (durably) and return; slack-morphism acknowledges
//! the envelope when the callback returns, so every envelope is acknowledged within milliseconds.
//! slack-morphism reconnects on `disconnect` frames and on connection errors. On top of that a
//! watchdog replaces the connections when nothing (no hello, no envelope) has arrived for the
//! configured silence limit, which catches sockets that stay open but silently stop delivering.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::prelude::*;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::client::{Connector, SlackApi};
use super::ingress::{command_dedupe_key, interaction_dedupe_key, log_acceptance};
use crate::app::inbox::Inbox;
use crate::app::metrics::Metrics;
use crate::domain::ids::{ChannelId, UserId};
use crate::store::InboxEvent;
use crate::store::records::SlashCommand;

/// Shared with the callbacks through slack-morphism's user state.
#[derive(Clone)]
struct SocketState {
    inbox: Inbox,
    /// Unix milliseconds of the last frame a callback saw.
    last_activity: Arc<AtomicI64>,
}

impl SocketState {
    fn touch(&self) {
        self.last_activity.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

/// Settings for Socket Mode.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    pub app_token: SecretString,
    /// Reconnect when no frame has arrived for this long.
    pub silence_limit: Duration,
    /// Parallel connections (Slack delivers each envelope on one of them).
    pub connections: u32,
    /// Seconds between reconnection attempts after an error (slack-morphism's fixed backoff).
    pub reconnect_seconds: u64,
}

async fn state_of(states: SlackClientEventsUserState) -> Option<SocketState> {
    states.read().await.get_user_state::<SocketState>().cloned()
}

/// Generic over the hello event's type, which slack-morphism does not export under a usable path.
async fn on_hello<E: Send + Sync + 'static>(
    _event: E,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) {
    if let Some(state) = state_of(states).await {
        state.touch();
    }
    info!("Socket Mode connected");
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let state = state_of(states).await.ok_or("socket state missing")?;
    state.touch();
    let event_id = event.event_id.0.clone();
    let body = serde_json::to_value(&event.event)?;
    let key = format!("slack-event:{event_id}");
    let acceptance = state.inbox.accept(InboxEvent::SlackEvent { event_id, event: body }, Some(&key)).await?;
    log_acceptance("event", Some(&key), acceptance, "0");
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let state = state_of(states).await.ok_or("socket state missing")?;
    state.touch();
    let command = SlashCommand {
        command: event.command.0.clone(),
        text: event.text.clone().unwrap_or_default(),
        user_id: UserId::parse(event.user_id.0.clone())?,
        channel_id: ChannelId::parse(event.channel_id.0.clone())?,
        response_url: Some(event.response_url.0.to_string()),
        trigger_id: Some(event.trigger_id.0.clone()),
    };
    let key = command_dedupe_key(&command);
    let acceptance = state.inbox.accept(InboxEvent::SlashCommand { command }, key.as_deref()).await?;
    log_acceptance("slash command", key.as_deref(), acceptance, "0");
    // The answer follows through the response URL once the command is processed.
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let state = state_of(states).await.ok_or("socket state missing")?;
    state.touch();
    let payload = serde_json::to_value(&event)?;
    let key = interaction_dedupe_key(&payload);
    let acceptance = state.inbox.accept(InboxEvent::Interaction { payload }, key.as_deref()).await?;
    log_acceptance("interaction", key.as_deref(), acceptance, "0");
    Ok(SlackInteractionResponse::Empty)
}

/// A failed callback is not acknowledged, so Slack redelivers the envelope.
fn on_error(
    err: BoxError,
    _client: Arc<SlackClient<Connector>>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    error!(error = %err, "Socket Mode event not accepted; Slack will redeliver it");
    HttpStatusCode::INTERNAL_SERVER_ERROR
}

async fn connect(
    api: &SlackApi,
    settings: &SocketSettings,
    state: &SocketState,
) -> Result<SlackClientSocketModeListener<Connector>, slack_morphism::errors::SlackClientError> {
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_hello_events(on_hello)
        .with_push_events(on_push)
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(api.client())
            .with_error_handler(on_error)
            .with_user_state(state.clone()),
    );
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(settings.connections)
        .with_initial_backoff_in_seconds(1)
        .with_reconnect_timeout_in_seconds(settings.reconnect_seconds);
    let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
    let token = SlackApiToken::new(SlackApiTokenValue(settings.app_token.expose_secret().to_string()));
    listener.listen_for(&token).await?;
    listener.start().await;
    Ok(listener)
}

/// Runs Socket Mode until shutdown, replacing silent connections.
pub async fn run(
    api: Arc<SlackApi>,
    settings: SocketSettings,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let state = SocketState { inbox, last_activity: Arc::new(AtomicI64::new(Utc::now().timestamp_millis())) };
    let mut listener = match connect(&api, &settings, &state).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot start Socket Mode");
            return;
        }
    };
    let check_every = (settings.silence_limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(check_every) => {}
            _ = shutdown.cancelled() => break,
        }
        let silent_ms = Utc::now().timestamp_millis() - state.last_activity.load(Ordering::Relaxed);
        if silent_ms < settings.silence_limit.as_millis() as i64 {
            continue;
        }
        metrics.socket_watchdog_reconnects.inc();
        warn!(
            silent_ms,
            limit_ms = settings.silence_limit.as_millis() as u64,
            "Socket Mode silent past the limit; reconnecting"
        );
        state.touch();
        // Open the new connections before closing the old ones, so no envelope falls in a gap.
        match connect(&api, &settings, &state).await {
            Ok(fresh) => {
                let old = std::mem::replace(&mut listener, fresh);
                old.shutdown().await;
            }
            Err(e) => warn!(error = %e, "Socket Mode reconnect failed; trying again at the next check"),
        }
    }
    listener.shutdown().await;
    info!("Socket Mode stopped");
}
