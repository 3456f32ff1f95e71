//! Typed message contents: the requests a kernel reads and the replies and broadcasts it writes.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::PROTOCOL_VERSION;

/// A request's content did not have the shape its `msg_type` requires.
#[derive(Debug, thiserror::Error)]
#[error("invalid {msg_type} content: {source}")]
pub struct ContentError {
    pub msg_type: String,
    #[source]
    pub source: serde_json::Error,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecuteRequest {
    pub code: String,
    #[serde(default)]
    pub silent: bool,
    #[serde(default = "yes")]
    pub store_history: bool,
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
    #[serde(default = "yes")]
    pub allow_stdin: bool,
    #[serde(default = "yes")]
    pub stop_on_error: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CompleteRequest {
    pub code: String,
    /// In Unicode code points; `None` means the end of `code`.
    #[serde(default)]
    pub cursor_pos: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InspectRequest {
    pub code: String,
    #[serde(default)]
    pub cursor_pos: Option<usize>,
    #[serde(default)]
    pub detail_level: u8,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IsCompleteRequest {
    pub code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistAccessType {
    Tail,
    Range,
    Search,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub output: bool,
    #[serde(default)]
    pub raw: bool,
    pub hist_access_type: HistAccessType,
    #[serde(default)]
    pub session: Option<i64>,
    #[serde(default)]
    pub start: Option<i64>,
    #[serde(default)]
    pub stop: Option<i64>,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommOpen {
    pub comm_id: String,
    pub target_name: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommMsg {
    pub comm_id: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommClose {
    pub comm_id: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct CommInfoRequest {
    #[serde(default)]
    pub target_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ShutdownRequest {
    #[serde(default)]
    pub restart: bool,
}

/// Every request the kernel understands, with an `Unknown` fallback.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    KernelInfo,
    Execute(ExecuteRequest),
    Complete(CompleteRequest),
    Inspect(InspectRequest),
    IsComplete(IsCompleteRequest),
    History(HistoryRequest),
    CommInfo(CommInfoRequest),
    CommOpen(CommOpen),
    CommMsg(CommMsg),
    CommClose(CommClose),
    Interrupt,
    Shutdown(ShutdownRequest),
    Unknown(String),
}

impl Request {
    /// Reads the content of a message of type `msg_type`.
    pub fn parse(msg_type: &str, content: &Value) -> Result<Self, ContentError> {
        fn typed<T: serde::de::DeserializeOwned>(
            msg_type: &str,
            content: &Value,
        ) -> Result<T, ContentError> {
            T::deserialize(content).map_err(|source| ContentError {
                msg_type: msg_type.to_string(),
                source,
            })
        }
        Ok(match msg_type {
            "kernel_info_request" => Request::KernelInfo,
            "execute_request" => Request::Execute(typed(msg_type, content)?),
            "complete_request" => Request::Complete(typed(msg_type, content)?),
            "inspect_request" => Request::Inspect(typed(msg_type, content)?),
            "is_complete_request" => Request::IsComplete(typed(msg_type, content)?),
            "history_request" => Request::History(typed(msg_type, content)?),
            "comm_info_request" => Request::CommInfo(typed(msg_type, content)?),
            "comm_open" => Request::CommOpen(typed(msg_type, content)?),
            "comm_msg" => Request::CommMsg(typed(msg_type, content)?),
            "comm_close" => Request::CommClose(typed(msg_type, content)?),
            "interrupt_request" => Request::Interrupt,
            "shutdown_request" => Request::Shutdown(typed(msg_type, content)?),
            other => Request::Unknown(other.to_string()),
        })
    }

    /// The `msg_type` of the reply to this request, if it has one.
    pub fn reply_type(msg_type: &str) -> Option<String> {
        msg_type
            .strip_suffix("_request")
            .map(|stem| format!("{stem}_reply"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LanguageInfo {
    pub name: String,
    pub version: String,
    pub mimetype: String,
    pub file_extension: String,
    pub pygments_lexer: String,
    pub codemirror_mode: String,
    pub nbconvert_exporter: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelpLink {
    pub text: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelInfoReply {
    pub status: &'static str,
    pub protocol_version: &'static str,
    pub implementation: String,
    pub implementation_version: String,
    pub language_info: LanguageInfo,
    pub banner: String,
    pub help_links: Vec<HelpLink>,
    pub debugger: bool,
}

impl KernelInfoReply {
    pub fn new(
        implementation: String,
        implementation_version: String,
        language_info: LanguageInfo,
        banner: String,
        help_links: Vec<HelpLink>,
    ) -> Self {
        KernelInfoReply {
            status: "ok",
            protocol_version: PROTOCOL_VERSION,
            implementation,
            implementation_version,
            language_info,
            banner,
            help_links,
            debugger: false,
        }
    }
}

/// `execute_reply` for a run that finished.
pub fn execute_reply_ok(execution_count: u32) -> Value {
    json!({
        "status": "ok",
        "execution_count": execution_count,
        "user_expressions": {},
        "payload": [],
    })
}

/// `execute_reply` (or any reply) with status `error`.
pub fn error_reply(
    execution_count: Option<u32>,
    ename: &str,
    evalue: &str,
    traceback: &[String],
) -> Value {
    let mut reply = json!({
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": traceback,
    });
    if let (Some(count), Value::Object(map)) = (execution_count, &mut reply) {
        map.insert("execution_count".into(), json!(count));
        map.insert("user_expressions".into(), json!({}));
        map.insert("payload".into(), json!([]));
    }
    reply
}

pub fn status(execution_state: &str) -> Value {
    json!({ "execution_state": execution_state })
}

pub fn execute_input(code: &str, execution_count: u32) -> Value {
    json!({ "code": code, "execution_count": execution_count })
}

pub fn stream(name: &str, text: &str) -> Value {
    json!({ "name": name, "text": text })
}

pub fn execute_result(
    execution_count: u32,
    data: &Map<String, Value>,
    metadata: &Map<String, Value>,
) -> Value {
    json!({ "execution_count": execution_count, "data": data, "metadata": metadata })
}

pub fn display_data(data: &Map<String, Value>, metadata: &Map<String, Value>) -> Value {
    json!({ "data": data, "metadata": metadata, "transient": {} })
}

pub fn error_output(ename: &str, evalue: &str, traceback: &[String]) -> Value {
    json!({ "ename": ename, "evalue": evalue, "traceback": traceback })
}

pub fn complete_reply(
    matches: &[String],
    cursor_start: usize,
    cursor_end: usize,
    metadata: &Map<String, Value>,
) -> Value {
    json!({
        "status": "ok",
        "matches": matches,
        "cursor_start": cursor_start,
        "cursor_end": cursor_end,
        "metadata": metadata,
    })
}

pub fn inspect_reply(
    found: bool,
    data: &Map<String, Value>,
    metadata: &Map<String, Value>,
) -> Value {
    json!({ "status": "ok", "found": found, "data": data, "metadata": metadata })
}

/// `is_complete_reply`; `indent` is only sent with `incomplete`.
pub fn is_complete_reply(status: &str, indent: Option<&str>) -> Value {
    match indent {
        Some(indent) => json!({ "status": status, "indent": indent }),
        None => json!({ "status": status }),
    }
}

pub fn shutdown_reply(restart: bool) -> Value {
    json!({ "status": "ok", "restart": restart })
}

pub fn interrupt_reply() -> Value {
    json!({ "status": "ok" })
}

pub fn comm_msg(comm_id: &str, data: &Value) -> Value {
    json!({ "comm_id": comm_id, "data": data })
}

pub fn comm_close(comm_id: &str) -> Value {
    json!({ "comm_id": comm_id, "data": {} })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_request_defaults_follow_the_spec() {
        let req = Request::parse("execute_request", &json!({"code": "1"})).expect("parse");
        assert_eq!(
            req,
            Request::Execute(ExecuteRequest {
                code: "1".into(),
                silent: false,
                store_history: true,
                user_expressions: Map::new(),
                allow_stdin: true,
                stop_on_error: true,
            })
        );
    }

    #[test]
    fn bad_content_names_the_message_type() {
        let err = Request::parse("execute_request", &json!({"silent": true})).unwrap_err();
        assert_eq!(err.msg_type, "execute_request");
        assert!(err.to_string().contains("code"), "{err}");
        let err =
            Request::parse("history_request", &json!({"hist_access_type": "all"})).unwrap_err();
        assert_eq!(err.msg_type, "history_request");
    }

    #[test]
    fn unknown_types_fall_back() {
        assert_eq!(
            Request::parse("debug_request", &json!({})).expect("parse"),
            Request::Unknown("debug_request".into())
        );
        assert_eq!(
            Request::reply_type("complete_request").as_deref(),
            Some("complete_reply")
        );
        assert_eq!(Request::reply_type("comm_open"), None);
    }

    #[test]
    fn replies_have_the_exact_spec_shape() {
        assert_eq!(
            execute_reply_ok(3),
            json!({"status": "ok", "execution_count": 3, "user_expressions": {}, "payload": []})
        );
        assert_eq!(
            error_reply(Some(2), "KeyboardInterrupt", "", &[]),
            json!({"status": "error", "execution_count": 2, "ename": "KeyboardInterrupt",
                   "evalue": "", "traceback": [], "user_expressions": {}, "payload": []})
        );
        assert_eq!(
            is_complete_reply("incomplete", Some("    ")),
            json!({"status": "incomplete", "indent": "    "})
        );
        assert_eq!(
            is_complete_reply("complete", None),
            json!({"status": "complete"})
        );
        assert_eq!(
            shutdown_reply(true),
            json!({"status": "ok", "restart": true})
        );
        let info = KernelInfoReply::new(
            "impl".into(),
            "1.0".into(),
            LanguageInfo {
                name: "python".into(),
                version: "3.11".into(),
                mimetype: "text/x-python".into(),
                file_extension: ".py".into(),
                pygments_lexer: "ipython3".into(),
                codemirror_mode: "python".into(),
                nbconvert_exporter: "python".into(),
            },
            "banner".into(),
            vec![],
        );
        let value = serde_json::to_value(info).expect("json");
        assert_eq!(value["protocol_version"], "5.3");
        assert_eq!(value["status"], "ok");
        assert_eq!(value["language_info"]["file_extension"], ".py");
        assert_eq!(value["help_links"], json!([]));
    }
}
