//! HMAC-SHA256 message signing and constant-time verification.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies the four JSON frames of a message with the connection key.
/// An empty key disables signing: the signature is empty and is never checked.
#[derive(Clone)]
pub struct Signer {
    mac: Option<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("enabled", &self.mac.is_some())
            .finish()
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        let mac = if key.is_empty() {
            None
        } else {
            // HMAC accepts keys of any length, so this never fails.
            HmacSha256::new_from_slice(key).ok()
        };
        Signer { mac }
    }

    /// Whether a key is set.
    pub fn is_enabled(&self) -> bool {
        self.mac.is_some()
    }

    fn digest(mac: &HmacSha256, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The lowercase hex signature over `parts` (header, parent, metadata, content), or an
    /// empty string when no key is set.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        match &self.mac {
            None => String::new(),
            Some(mac) => hex::encode(Self::digest(mac, parts).finalize().into_bytes()),
        }
    }

    /// Whether `signature` (hex, as sent on the wire) matches `parts`. Compares in constant
    /// time. Always true when no key is set.
    pub fn verify(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        let Some(mac) = &self.mac else {
            return true;
        };
        let Ok(expected) = hex::decode(signature) else {
            return false;
        };
        Self::digest(mac, parts).verify_slice(&expected).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // python3 -c 'import hmac,hashlib; h=hmac.new(b"secret-key",digestmod=hashlib.sha256);
    //   [h.update(p) for p in [b"{\"msg_id\":\"a\"}",b"{}",b"{}",b"{\"code\":\"1+1\"}"]];
    //   print(h.hexdigest())'
    const VECTOR_1: &str = "712005a3ddfac00ddc4b5e88335391b3a6ee2873954746371defcd8f11725fad";
    // python3 -c 'import hmac,hashlib;
    //   h=hmac.new(b"5d3a1f0e-7c2b-4b1e-9f3c-2a6d8e4b1c0f",digestmod=hashlib.sha256);
    //   [h.update(p) for p in [b"header",b"parent",b"metadata",b"content \xce\xbb"]];
    //   print(h.hexdigest())'
    const VECTOR_2: &str = "2fca5bc644a887b4522e4bf48c934a07d45fb60ab9acc5398bd6f85dcbf881d2";

    fn parts_1() -> [&'static [u8]; 4] {
        [br#"{"msg_id":"a"}"#, b"{}", b"{}", br#"{"code":"1+1"}"#]
    }

    fn parts_2() -> [&'static [u8]; 4] {
        [b"header", b"parent", b"metadata", "content λ".as_bytes()]
    }

    #[test]
    fn signatures_match_python_hmac() {
        assert_eq!(Signer::new(b"secret-key").sign(&parts_1()), VECTOR_1);
        let signer = Signer::new(b"5d3a1f0e-7c2b-4b1e-9f3c-2a6d8e4b1c0f");
        assert_eq!(signer.sign(&parts_2()), VECTOR_2);
    }

    #[test]
    fn verification_accepts_the_right_signature_only() {
        let signer = Signer::new(b"secret-key");
        assert!(signer.verify(&parts_1(), VECTOR_1.as_bytes()));
        assert!(signer.verify(&parts_1(), VECTOR_1.to_uppercase().as_bytes()));
        assert!(!signer.verify(&parts_2(), VECTOR_1.as_bytes()));
        assert!(!signer.verify(&parts_1(), VECTOR_2.as_bytes()));
        assert!(!signer.verify(&parts_1(), b""));
        assert!(!signer.verify(&parts_1(), b"not hex at all"));
        assert!(!signer.verify(&parts_1(), &VECTOR_1.as_bytes()[..32]));
        assert!(!Signer::new(b"other-key").verify(&parts_1(), VECTOR_1.as_bytes()));
    }

    #[test]
    fn empty_key_neither_signs_nor_checks() {
        let signer = Signer::new(b"");
        assert!(!signer.is_enabled());
        assert_eq!(signer.sign(&parts_1()), "");
        assert!(signer.verify(&parts_1(), b""));
        assert!(signer.verify(&parts_1(), b"anything"));
    }
}
