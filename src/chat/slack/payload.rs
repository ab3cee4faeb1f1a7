//! Slack's wire format on raybot's side: message ids, Block Kit for posts, and the translation of
//! slash commands, reaction events and button clicks into [`Inbound`] messages. Pure functions,
//! tested without a network.

use slack_morphism::prelude::*;

use crate::chat::Inbound;
use crate::engine::{Button, Platform, UserRef, ray_error};

/// `action_id` of the Approve button (the message it sits on is the click's `container`).
pub(crate) const APPROVE_ACTION: &str = "ray_approve";
/// `action_id` of the Reject button.
pub(crate) const REJECT_ACTION: &str = "ray_reject";
/// Slack refuses section texts longer than 3,000 characters.
const SECTION_LIMIT: usize = 2900;

/// raybot's id for a Slack message: `<channel>:<ts>`, e.g. `C0WARROOM01:1700000000.000100`.
/// The same id comes back from posts, reaction events and button clicks.
pub(crate) fn message_id(channel: &str, ts: &str) -> String {
    format!("{channel}:{ts}")
}

/// Splits a [`message_id`] into channel and ts.
pub(crate) fn split_message_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(':').filter(|(c, t)| !c.is_empty() && !t.is_empty())
}

/// The `[RAY ERROR]` answer to a command typed outside the war room.
pub(crate) fn wrong_channel(war_room: &str) -> String {
    ray_error(format!("raybot takes commands only in <#{war_room}>: type `/ray …` there. Nothing was changed."))
}

/// A slash command as the driver sees it (`/ray` plus the text Slack sends after it).
pub(crate) fn command_inbound(user: &str, text: Option<&str>) -> Result<Inbound, String> {
    let text = text.unwrap_or("").trim();
    let text = if text.is_empty() { "/ray".to_string() } else { format!("/ray {text}") };
    Inbound::command(UserRef::new(Platform::Slack, user), &text)
}

/// A `reaction_added` / `reaction_removed` event on a message, with its idempotency key
/// (`event_id`, so a retried delivery counts once). `None` for other events, reactions on files
/// and raybot's own reactions.
pub(crate) fn reaction_inbound(cb: &SlackPushEventCallback, bot_user: Option<&str>) -> Option<(String, Inbound)> {
    let (user, reaction, item, added) = match &cb.event {
        SlackEventCallbackBody::ReactionAdded(e) => (&e.user, &e.reaction, &e.item, true),
        SlackEventCallbackBody::ReactionRemoved(e) => (&e.user, &e.reaction, &e.item, false),
        _ => return None,
    };
    if bot_user == Some(user.0.as_str()) {
        return None;
    }
    let SlackReactionsItem::Message(msg) = item else { return None };
    let channel = msg.origin.channel.as_ref()?;
    Some((
        format!("slack:event:{}", cb.event_id.0),
        Inbound::Reaction {
            user: UserRef::new(Platform::Slack, user.0.clone()),
            message: message_id(&channel.0, &msg.origin.ts.0),
            emoji: reaction.0.clone(),
            added,
        },
    ))
}

/// A click on raybot's Approve / Reject button: the channel it was in, the idempotency key and
/// the inbound click. `Err` carries the `[RAY ERROR]` answer for anything else.
pub(crate) fn click_inbound(ev: &SlackInteractionBlockActionsEvent) -> Result<(String, String, Inbound), String> {
    let user = ev.user.as_ref().ok_or_else(|| ray_error("that click carries no user."))?;
    let SlackInteractionActionContainer::Message(container) = &ev.container else {
        return Err(ray_error("raybot's buttons live on messages in the war room."));
    };
    let channel = container
        .channel_id
        .as_ref()
        .map(|c| c.0.clone())
        .or_else(|| ev.channel.as_ref().map(|c| c.id.0.clone()))
        .ok_or_else(|| ray_error("that click names no channel."))?;
    let action = ev.actions.as_ref().and_then(|a| a.first()).ok_or_else(|| ray_error("that click names no button."))?;
    let button = match action.action_id.0.as_str() {
        APPROVE_ACTION => Button::Approve,
        REJECT_ACTION => Button::Reject,
        other => return Err(ray_error(format!("unknown button `{other}`."))),
    };
    let key = format!(
        "slack:click:{}",
        action.action_ts.as_ref().map(|t| format!("{}:{}", ev.trigger_id.0, t.0)).unwrap_or(ev.trigger_id.0.clone())
    );
    let inbound = Inbound::Click {
        user: UserRef::new(Platform::Slack, user.id.0.clone()),
        message: message_id(&channel, &container.message_ts.0),
        button,
    };
    Ok((channel, key, inbound))
}

/// Emoji name for `reactions.add` (`white_check_mark`); a few characters are mapped to names.
pub(crate) fn emoji_name(emoji: &str) -> String {
    match emoji.trim().trim_matches(':') {
        "✅" => "white_check_mark".into(),
        "👍" => "+1".into(),
        other => other.to_string(),
    }
}

/// The text as section blocks (each under Slack's 3,000-character limit), plus Approve / Reject
/// buttons with a confirm dialog when `buttons` is set. An update sends the sections alone, which
/// removes the buttons.
pub(crate) fn blocks(text: &str, buttons: bool) -> Vec<SlackBlock> {
    let mut out: Vec<SlackBlock> = chunks(text)
        .into_iter()
        .map(|t| SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(t))).into())
        .collect();
    if buttons {
        let button = |action: &str, label: &str, style: SlackBlockButtonStyle, question: &str| {
            SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(label))
                    .with_action_id(action.into())
                    .with_value(action.trim_start_matches("ray_").to_string())
                    .with_style(style)
                    .with_confirm(SlackBlockConfirmItem::new(
                        SlackBlockPlainTextOnly::from(format!("{label}?")),
                        SlackBlockText::MarkDown(SlackBlockMarkDownText::new(question.to_string())),
                        SlackBlockPlainTextOnly::from(label),
                        SlackBlockPlainTextOnly::from("Cancel"),
                    )),
            )
        };
        out.push(
            SlackActionsBlock::new(vec![
                button(
                    APPROVE_ACTION,
                    "Approve",
                    SlackBlockButtonStyle::Primary,
                    "Record your approval of this release? It is signed with your name and the time.",
                ),
                button(
                    REJECT_ACTION,
                    "Reject",
                    SlackBlockButtonStyle::Danger,
                    "Reject this release? It stops here and nothing more is deployed.",
                ),
            ])
            .with_block_id("ray_approval".into())
            .into(),
        );
    }
    out
}

/// Splits text at line ends into pieces Slack accepts in one section.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let mut line = line.to_string();
        while line.chars().count() > SECTION_LIMIT {
            let cut: String = line.chars().take(SECTION_LIMIT).collect();
            line = line.chars().skip(SECTION_LIMIT).collect();
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(cut);
        }
        if cur.chars().count() + line.chars().count() + 1 > SECTION_LIMIT && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(&line);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(if cur.is_empty() { " ".into() } else { cur });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip() {
        let id = message_id("C0WARROOM01", "1700000000.000100");
        assert_eq!(id, "C0WARROOM01:1700000000.000100");
        assert_eq!(split_message_id(&id), Some(("C0WARROOM01", "1700000000.000100")));
        assert_eq!(split_message_id("nocolon"), None);
    }

    #[test]
    fn a_reaction_event_in_slacks_shape_becomes_an_inbound_reaction() {
        let body = serde_json::json!({
            "token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": "Ev01", "event_time": 1700000000,
            "event": {"type": "reaction_added", "user": "U0BOB00002", "reaction": "white_check_mark",
                "item_user": "U0RAYBOT00", "item": {"type": "message", "channel": "C0WARROOM01", "ts": "1700000000.000100"},
                "event_ts": "1700000001.000200"}
        });
        let SlackPushEvent::EventCallback(cb) = serde_json::from_value(body).unwrap() else { panic!() };
        let (key, inbound) = reaction_inbound(&cb, Some("U0RAYBOT00")).unwrap();
        assert_eq!(key, "slack:event:Ev01");
        assert_eq!(
            inbound,
            Inbound::Reaction {
                user: UserRef::new(Platform::Slack, "U0BOB00002"),
                message: "C0WARROOM01:1700000000.000100".into(),
                emoji: "white_check_mark".into(),
                added: true
            }
        );
        // raybot's own ✅ is not an acknowledgement.
        assert!(reaction_inbound(&cb, Some("U0BOB00002")).is_none());
    }

    #[test]
    fn a_block_action_becomes_a_click_and_unknown_buttons_are_refused() {
        let payload = |action: &str| {
            serde_json::json!({
                "type": "block_actions", "team": {"id": "T1", "domain": "acme"},
                "user": {"id": "U0CAROL003", "username": "carol", "team_id": "T1"},
                "api_app_id": "A1", "trigger_id": "111.222.abc",
                "container": {"type": "message", "message_ts": "1700000000.000300", "channel_id": "C0WARROOM01", "is_ephemeral": false},
                "channel": {"id": "C0WARROOM01", "name": "release-war-room"},
                "response_url": "https://hooks.slack.com/actions/T1/1/abc",
                "actions": [{"type": "button", "action_id": action, "block_id": "ray_approval",
                    "text": {"type": "plain_text", "text": "Approve"}, "value": "approve", "action_ts": "1700000002.000400"}]
            })
        };
        let SlackInteractionEvent::BlockActions(ev) = serde_json::from_value(payload(APPROVE_ACTION)).unwrap() else {
            panic!()
        };
        let (channel, key, inbound) = click_inbound(&ev).unwrap();
        assert_eq!(channel, "C0WARROOM01");
        assert_eq!(key, "slack:click:111.222.abc:1700000002.000400");
        assert_eq!(
            inbound,
            Inbound::Click {
                user: UserRef::new(Platform::Slack, "U0CAROL003"),
                message: "C0WARROOM01:1700000000.000300".into(),
                button: Button::Approve
            }
        );
        let SlackInteractionEvent::BlockActions(ev) = serde_json::from_value(payload("other")).unwrap() else {
            panic!()
        };
        assert!(click_inbound(&ev).unwrap_err().starts_with("[RAY ERROR] unknown button"));
    }

    #[test]
    fn buttons_carry_a_confirm_dialog_and_updates_drop_them() {
        let with = serde_json::to_value(blocks("Approve production?", true)).unwrap();
        assert_eq!(with[1]["type"], "actions");
        assert_eq!(with[1]["elements"][0]["action_id"], APPROVE_ACTION);
        assert_eq!(with[1]["elements"][1]["action_id"], REJECT_ACTION);
        assert_eq!(with[1]["elements"][0]["confirm"]["confirm"]["text"], "Approve");
        let without = serde_json::to_value(blocks("Approved by <@U0BOB00002>", false)).unwrap();
        assert_eq!(without.as_array().unwrap().len(), 1);
        assert_eq!(without[0]["text"]["text"], "Approved by <@U0BOB00002>");
    }

    #[test]
    fn long_texts_are_split_under_slacks_section_limit() {
        let text = (0..400).map(|i| format!("line {i} {}", "x".repeat(20))).collect::<Vec<_>>().join("\n");
        let parts = chunks(&text);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= SECTION_LIMIT));
        assert_eq!(parts.join("\n"), text);
        assert!(chunks(&"y".repeat(7000)).iter().all(|p| p.chars().count() <= SECTION_LIMIT));
    }

    #[test]
    fn commands_keep_the_ray_grammar() {
        assert_eq!(
            command_inbound("U0ALICE001", Some(" deploy v1.2 ")),
            Ok(Inbound::Command {
                user: UserRef::new(Platform::Slack, "U0ALICE001"),
                command: crate::command::parse("/ray deploy v1.2").unwrap()
            })
        );
        assert!(command_inbound("U0ALICE001", Some("dploy v1.2")).unwrap_err().contains("unknown command `dploy`"));
        assert!(wrong_channel("C0WARROOM01").contains("<#C0WARROOM01>"));
    }
}
