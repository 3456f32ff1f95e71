//! Wire framing: `[identities..., "<IDS|MSG>", signature, header, parent, metadata, content,
//! buffers...]` to and from [`Message`], as pure functions on byte frames.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::header::Header;
use super::sign::Signer;

/// The frame that separates routing identities from the message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Why a multipart message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter among {frames} frames")]
    MissingDelimiter { frames: usize },
    #[error(
        "expected at least 5 frames after <IDS|MSG> (signature, header, parent_header, \
         metadata, content), found {found}"
    )]
    TooFewFrames { found: usize },
    #[error("signature does not match the message")]
    BadSignature,
    #[error("invalid JSON in the {part} frame: {source}")]
    InvalidJson {
        part: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {part} frame is not a JSON object")]
    NotAnObject { part: &'static str },
    #[error("could not serialize the {part} frame: {source}")]
    Serialize {
        part: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// A multipart message split at the delimiter, before any JSON is parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub identities: Vec<Bytes>,
    pub signature: Bytes,
    /// header, parent_header, metadata, content: the signed frames.
    pub parts: [Bytes; 4],
    pub buffers: Vec<Bytes>,
}

impl RawMessage {
    /// Splits frames at the first `<IDS|MSG>` delimiter.
    pub fn from_frames(frames: Vec<Bytes>) -> Result<Self, WireError> {
        let total = frames.len();
        let delimiter = frames
            .iter()
            .position(|frame| frame.as_ref() == DELIMITER)
            .ok_or(WireError::MissingDelimiter { frames: total })?;
        let found = total - delimiter - 1;
        if found < 5 {
            return Err(WireError::TooFewFrames { found });
        }
        let mut rest = frames.into_iter();
        let identities: Vec<Bytes> = rest.by_ref().take(delimiter).collect();
        let mut after = rest.skip(1);
        // `found >= 5` guarantees the five frames below exist.
        let mut next = || after.next().unwrap_or_default();
        let signature = next();
        let parts = [next(), next(), next(), next()];
        let buffers = after.collect();
        Ok(RawMessage {
            identities,
            signature,
            parts,
            buffers,
        })
    }

    /// The frames in wire order.
    pub fn into_frames(self) -> Vec<Bytes> {
        let mut frames = self.identities;
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(self.signature);
        frames.extend(self.parts);
        frames.extend(self.buffers);
        frames
    }

    fn signed_parts(&self) -> [&[u8]; 4] {
        [
            self.parts[0].as_ref(),
            self.parts[1].as_ref(),
            self.parts[2].as_ref(),
            self.parts[3].as_ref(),
        ]
    }
}

/// A decoded Jupyter message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// ROUTER identities on shell/control/stdin; the topic frame on iopub.
    pub identities: Vec<Bytes>,
    pub header: Header,
    /// The header of the request this message answers; `None` is sent as `{}`.
    pub parent_header: Option<Header>,
    pub metadata: Map<String, Value>,
    pub content: Value,
    pub buffers: Vec<Bytes>,
}

impl Message {
    /// A new message of this kernel with no parent and no identities.
    pub fn new(msg_type: &str, content: Value) -> Self {
        Message {
            identities: Vec::new(),
            header: Header::new(msg_type),
            parent_header: None,
            metadata: Map::new(),
            content,
            buffers: Vec::new(),
        }
    }

    /// A new message whose parent is `parent` (for iopub), with no identities.
    pub fn child_of(parent: &Message, msg_type: &str, content: Value) -> Self {
        Message {
            parent_header: Some(parent.header.clone()),
            ..Message::new(msg_type, content)
        }
    }

    /// A reply to `request`, routed back to the request's identities.
    pub fn reply_to(request: &Message, msg_type: &str, content: Value) -> Self {
        Message {
            identities: request.identities.clone(),
            ..Message::child_of(request, msg_type, content)
        }
    }

    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// The id of the parent message, if any.
    pub fn parent_msg_id(&self) -> Option<&str> {
        self.parent_header.as_ref().map(|h| h.msg_id.as_str())
    }

    /// Serializes and signs the message into wire frames.
    pub fn encode(&self, signer: &Signer) -> Result<Vec<Bytes>, WireError> {
        let json = |part: &'static str, value: Result<Vec<u8>, serde_json::Error>| {
            value
                .map(Bytes::from)
                .map_err(|source| WireError::Serialize { part, source })
        };
        let header = json("header", serde_json::to_vec(&self.header))?;
        let parent = match &self.parent_header {
            Some(parent) => json("parent_header", serde_json::to_vec(parent))?,
            None => Bytes::from_static(b"{}"),
        };
        let metadata = json("metadata", serde_json::to_vec(&self.metadata))?;
        let content = json("content", serde_json::to_vec(&self.content))?;
        let parts = [header, parent, metadata, content];
        let signature = Bytes::from(signer.sign(&[
            parts[0].as_ref(),
            parts[1].as_ref(),
            parts[2].as_ref(),
            parts[3].as_ref(),
        ]));
        Ok(RawMessage {
            identities: self.identities.clone(),
            signature,
            parts,
            buffers: self.buffers.clone(),
        }
        .into_frames())
    }

    /// Splits, verifies and parses wire frames.
    pub fn decode(frames: Vec<Bytes>, signer: &Signer) -> Result<Self, WireError> {
        Self::from_raw(RawMessage::from_frames(frames)?, signer)
    }

    /// Verifies and parses a split message.
    pub fn from_raw(raw: RawMessage, signer: &Signer) -> Result<Self, WireError> {
        if !signer.verify(&raw.signed_parts(), &raw.signature) {
            return Err(WireError::BadSignature);
        }
        let header: Header = parse("header", &raw.parts[0])?;
        let parent: Value = parse("parent_header", &raw.parts[1])?;
        let parent_header = match parent {
            Value::Object(map) if map.is_empty() => None,
            Value::Object(map) => Some(serde_json::from_value(Value::Object(map)).map_err(
                |source| WireError::InvalidJson {
                    part: "parent_header",
                    source,
                },
            )?),
            Value::Null => None,
            _ => {
                return Err(WireError::NotAnObject {
                    part: "parent_header",
                })
            }
        };
        let metadata = match parse("metadata", &raw.parts[2])? {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(WireError::NotAnObject { part: "metadata" }),
        };
        let content: Value = parse("content", &raw.parts[3])?;
        if !content.is_object() {
            return Err(WireError::NotAnObject { part: "content" });
        }
        Ok(Message {
            identities: raw.identities,
            header,
            parent_header,
            metadata,
            content,
            buffers: raw.buffers,
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(part: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|source| WireError::InvalidJson { part, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> Message {
        let mut msg = Message::new(
            "execute_request",
            json!({"code": "print('λ')", "silent": false}),
        );
        msg.identities = vec![
            Bytes::from_static(b"client-1"),
            Bytes::from_static(b"\x00\x01"),
        ];
        msg.metadata.insert("cellId".into(), json!("abc"));
        msg.buffers = vec![Bytes::from_static(b"\xff\xfe raw")];
        msg
    }

    #[test]
    fn encode_then_decode_gives_the_same_message() {
        let signer = Signer::new(b"key");
        let msg = request();
        let frames = msg.encode(&signer).expect("encode");
        assert_eq!(frames[0].as_ref(), b"client-1");
        assert_eq!(frames[2].as_ref(), DELIMITER);
        assert_eq!(frames[3].len(), 64, "hex sha256 signature");
        assert_eq!(frames.len(), 2 + 1 + 5 + 1);
        let back = Message::decode(frames, &signer).expect("decode");
        assert_eq!(back, msg);

        let reply = Message::reply_to(&back, "execute_reply", json!({"status": "ok"}));
        let frames = reply.encode(&signer).expect("encode reply");
        let reply_back = Message::decode(frames, &signer).expect("decode reply");
        assert_eq!(reply_back.identities, msg.identities);
        assert_eq!(reply_back.parent_header.as_ref(), Some(&msg.header));
        assert_eq!(reply_back.content, json!({"status": "ok"}));
    }

    #[test]
    fn parentless_messages_send_an_empty_object() {
        let frames = Message::new("status", json!({"execution_state": "starting"}))
            .encode(&Signer::new(b""))
            .expect("encode");
        assert_eq!(frames[0].as_ref(), DELIMITER);
        assert_eq!(frames[1].as_ref(), b"");
        assert_eq!(frames[3].as_ref(), b"{}");
    }

    #[test]
    fn the_signature_covers_exactly_the_four_json_frames() {
        let signer = Signer::new(b"key");
        let frames = request().encode(&signer).expect("encode");
        let expected = signer.sign(&[&frames[4], &frames[5], &frames[6], &frames[7]]);
        assert_eq!(frames[3].as_ref(), expected.as_bytes());
        // Buffers are not signed: changing one keeps the message valid.
        let mut changed = frames.clone();
        changed[8] = Bytes::from_static(b"other buffer");
        assert!(Message::decode(changed, &signer).is_ok());
        // Changing the content breaks the signature.
        let mut tampered = frames;
        tampered[7] = Bytes::from_static(br#"{"code":"evil"}"#);
        assert!(matches!(
            Message::decode(tampered, &signer),
            Err(WireError::BadSignature)
        ));
    }

    #[test]
    fn truncated_and_malformed_frames_give_typed_errors() {
        let signer = Signer::new(b"");
        let frames = request().encode(&signer).expect("encode");
        for cut in 0..frames.len() {
            let result = Message::decode(frames[..cut].to_vec(), &signer);
            match cut {
                0..=2 => assert!(matches!(result, Err(WireError::MissingDelimiter { .. }))),
                3..=7 => assert!(
                    matches!(result, Err(WireError::TooFewFrames { found }) if found == cut - 3)
                ),
                _ => assert!(result.is_ok()),
            }
        }
        let bad = |index: usize, bytes: &'static [u8]| {
            let mut frames = frames.clone();
            frames[index] = Bytes::from_static(bytes);
            Message::decode(frames, &signer)
        };
        assert!(matches!(
            bad(4, b"{not json"),
            Err(WireError::InvalidJson { part: "header", .. })
        ));
        assert!(matches!(
            bad(4, br#"{"msg_type": "x"}"#),
            Err(WireError::InvalidJson { part: "header", .. })
        ));
        assert!(matches!(
            bad(5, b"[1]"),
            Err(WireError::NotAnObject {
                part: "parent_header"
            })
        ));
        assert!(matches!(
            bad(6, b"\xff\xfe"),
            Err(WireError::InvalidJson {
                part: "metadata",
                ..
            })
        ));
        assert!(matches!(
            bad(7, b"42"),
            Err(WireError::NotAnObject { part: "content" })
        ));
        assert!(matches!(
            Message::decode(vec![Bytes::new(); 3], &signer),
            Err(WireError::MissingDelimiter { frames: 3 })
        ));
    }

    #[test]
    fn a_wrong_or_missing_signature_is_rejected_when_a_key_is_set() {
        let frames = request().encode(&Signer::new(b"right")).expect("encode");
        assert!(matches!(
            Message::decode(frames.clone(), &Signer::new(b"wrong")),
            Err(WireError::BadSignature)
        ));
        let unsigned = request().encode(&Signer::new(b"")).expect("encode");
        assert!(matches!(
            Message::decode(unsigned, &Signer::new(b"right")),
            Err(WireError::BadSignature)
        ));
        // Without a key nothing is checked.
        assert!(Message::decode(frames, &Signer::new(b"")).is_ok());
    }
}
