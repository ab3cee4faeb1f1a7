//! Socket Mode: for teams without a public URL. raybot opens a WebSocket with the app-level token
//! (`apps.connections.open`, through the same Web API base URL) and Slack sends commands, events
//! and interactions over it; each is acknowledged on the socket, with the same 3-second rule as
//! HTTP.

use std::sync::Arc;

use slack_morphism::prelude::*;
use tokio::task::JoinHandle;

use super::{Client, Desk};

/// Connects and returns the task that keeps the connection (slack-morphism reconnects by itself).
pub(super) async fn start(client: Arc<Client>, desk: Arc<Desk>, app_token: String) -> anyhow::Result<JoinHandle<()>> {
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_push_events(on_push)
        .with_interaction_events(on_interaction);
    let env = Arc::new(SlackClientEventsListenerEnvironment::new(client).with_user_state(desk));
    let listener = SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), env, callbacks);
    let token = SlackApiToken::new(app_token.into());
    listener.listen_for(&token).await.map_err(|e| anyhow::anyhow!("Slack Socket Mode: {e}"))?;
    Ok(tokio::spawn(async move {
        listener.start().await;
        // Keep the listener (and its connections) alive until the task is aborted at shutdown.
        std::future::pending::<()>().await;
    }))
}

async fn desk(state: &SlackClientEventsUserState) -> Option<Arc<Desk>> {
    state.read().await.get_user_state::<Arc<Desk>>().cloned()
}

async fn on_command(
    ev: SlackCommandEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let text = match desk(&state).await {
        Some(d) => d.command(&ev).await,
        None => crate::engine::refuse(crate::engine::refusal::Runtime::Starting),
    };
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
        .with_response_type(SlackMessageResponseType::Ephemeral))
}

async fn on_push(
    ev: SlackPushEventCallback,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(d) = desk(&state).await {
        d.push(&ev).await?;
    }
    Ok(())
}

async fn on_interaction(
    ev: SlackInteractionEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(d) = desk(&state).await {
        d.interaction(&ev).await;
    }
    Ok(())
}
