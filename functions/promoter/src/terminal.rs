//! Text that reaches the terminal from state, registries or manifests: control characters
//! escaped (a revision or an error message could otherwise move the cursor, clear the screen
//! or retitle the window), and times printed without trusting them.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

/// `text` with every control character (C0, DEL, C1; newlines and tabs too) written as a Rust
/// escape, e.g. `\u{1b}` for ESC.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The last second HTTP dates can show (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// A Unix time as an HTTP date, or `an invalid time (N)` for one no calendar here can show.
pub fn when(unix: u64) -> String {
    if unix > LAST_HTTP_DATE {
        return format!("an invalid time ({unix})");
    }
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("v1.2.3"), "v1.2.3");
        assert_eq!(
            clean("abc\u{1b}]0;owned\u{7}\r\ndef\u{9b}"),
            "abc\\u{1b}]0;owned\\u{7}\\r\\ndef\\u{9b}"
        );
    }

    #[test]
    fn times_out_of_range_are_shown_not_panicked_on() {
        assert_eq!(when(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(when(LAST_HTTP_DATE), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(when(u64::MAX), format!("an invalid time ({})", u64::MAX));
        assert!(when(LAST_HTTP_DATE + 1).starts_with("an invalid time"));
    }
}
