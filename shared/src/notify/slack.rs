//! Slack incoming webhooks: `{"text": "*TITLE*\nTEXT"}`. The webhook URL is itself a secret:
//! only its scheme and host appear in errors.

use super::http::{Post, parse_url};
use super::{Delivery, Notice, NotifyError};

/// The sink's name.
const SINK: &str = "slack";

/// Posts `notice` to the incoming webhook at `url`, once.
pub(super) async fn send(
    client: &reqwest::Client,
    url: &str,
    notice: &Notice,
) -> Result<Delivery, NotifyError> {
    let parsed = parse_url(SINK, url)?;
    let path = parsed.path().to_owned();
    let body = serde_json::to_vec(&serde_json::json!({ "text": text(notice) }))
        .map_err(|source| NotifyError::Encode { sink: SINK, source })?;
    Post {
        sink: SINK,
        url: parsed,
        headers: Vec::new(),
        body,
        secrets: vec![url, &path],
    }
    .send(client)
    .await?;
    Ok(Delivery::Sent)
}

/// `*TITLE*` and the text on the next line, in Slack's markup with `&`, `<` and `>` escaped
/// (Slack reads `<...>` as links and mentions).
fn text(notice: &Notice) -> String {
    let title = escape(notice.title.trim());
    if notice.text.is_empty() {
        format!("*{title}*")
    } else {
        format!("*{title}*\n{}", escape(&notice.text))
    }
}

/// Escapes the three characters Slack asks senders to escape.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NoticeKind;

    fn notice(title: &str, text: &str) -> Notice {
        Notice {
            kind: NoticeKind::Alert,
            id: "e1".into(),
            title: title.into(),
            text: text.into(),
            details: serde_json::Value::Null,
            commit: None,
        }
    }

    #[test]
    fn title_in_bold_then_the_text() {
        assert_eq!(text(&notice("Run r1", "2 images")), "*Run r1*\n2 images");
        assert_eq!(text(&notice("Run r1", "")), "*Run r1*");
        assert_eq!(
            text(&notice("a<b>", "x & <!channel>")),
            "*a&lt;b&gt;*\nx &amp; &lt;!channel&gt;"
        );
    }
}
