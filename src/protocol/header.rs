//! Message headers: the per-process session id, fresh message ids and ISO-8601 dates.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::OnceLock;

use super::PROTOCOL_VERSION;

/// The username this kernel puts in the headers it creates.
pub const KERNEL_USERNAME: &str = "kernel";

/// The one session id of this kernel process. Every message the kernel sends carries it.
pub fn kernel_session() -> &'static str {
    static SESSION: OnceLock<String> = OnceLock::new();
    SESSION.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// The current UTC time as ISO 8601 with exactly six fractional digits and a `Z` offset.
pub fn now_iso8601() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A message header. Unknown fields sent by a client are kept, so a header echoed back as a
/// `parent_header` is the one the client sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub msg_id: String,
    pub msg_type: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub version: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Header {
    /// A new header for a message created by this kernel: fresh `msg_id`, the process session,
    /// the current date and protocol version.
    pub fn new(msg_type: &str) -> Self {
        Header {
            msg_id: uuid::Uuid::new_v4().to_string(),
            msg_type: msg_type.to_string(),
            session: kernel_session().to_string(),
            username: KERNEL_USERNAME.to_string(),
            date: now_iso8601(),
            version: PROTOCOL_VERSION.to_string(),
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_has_at_most_six_fractional_digits_and_parses_back() {
        let date = now_iso8601();
        assert!(date.ends_with('Z'), "{date}");
        let fraction = date
            .split('.')
            .nth(1)
            .expect("fractional part")
            .trim_end_matches('Z');
        assert!(!fraction.is_empty() && fraction.len() <= 6, "{date}");
        assert!(fraction.chars().all(|c| c.is_ascii_digit()), "{date}");
        let parsed = chrono::DateTime::parse_from_rfc3339(&date).expect("parses as RFC 3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0);
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(age.num_seconds().abs() < 5);
    }

    #[test]
    fn headers_share_the_session_and_never_the_msg_id() {
        let a = Header::new("status");
        let b = Header::new("status");
        assert_ne!(a.msg_id, b.msg_id);
        assert_eq!(a.session, b.session);
        assert_eq!(a.session, kernel_session());
        assert_eq!(a.version, "5.3");
        assert_eq!(a.username, KERNEL_USERNAME);
        assert!(uuid::Uuid::parse_str(&a.session).is_ok());
    }

    #[test]
    fn unknown_header_fields_survive_a_round_trip() {
        let raw = serde_json::json!({
            "msg_id": "m1", "msg_type": "execute_request", "session": "s", "username": "u",
            "date": "2024-01-02T03:04:05.123456Z", "version": "5.4", "subshell_id": null
        });
        let header: Header = serde_json::from_value(raw.clone()).expect("header");
        assert_eq!(header.msg_type, "execute_request");
        assert_eq!(serde_json::to_value(&header).expect("json"), raw);
    }
}
