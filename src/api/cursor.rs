//! Opaque keyset cursors. A cursor carries the last row's key plus a check over that key and
//! the query it came from, so a tampered cursor or one from another query is a 400, not
//! silently wrong rows. (Not a secret: anyone with a token may run any query anyway.)

use super::error::ApiError;
use crate::domain::{After, MessageFilter, Order};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

const CHECK_LEN: usize = 8;

/// A cursor codec bound to one query (its kind and fingerprint).
pub struct Cursor {
    context: Vec<u8>,
}

impl Cursor {
    pub fn for_messages(filter: &MessageFilter, order: Order) -> Self {
        Self {
            context: format!("messages|{filter:?}|{order:?}").into_bytes(),
        }
    }

    pub fn for_list(kind: &str, scope: &str) -> Self {
        Self {
            context: format!("{kind}|{scope}").into_bytes(),
        }
    }

    fn check(&self, body: &[u8]) -> [u8; CHECK_LEN] {
        let digest = Sha256::new()
            .chain_update(&self.context)
            .chain_update([0])
            .chain_update(body)
            .finalize();
        digest[..CHECK_LEN]
            .try_into()
            .expect("digest is long enough")
    }

    pub fn encode(&self, body: &[u8]) -> String {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&self.check(body));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(&self, text: &str) -> Result<Vec<u8>, ApiError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| ApiError::invalid("cursor", "is not a cursor chatsink issued"))?;
        if bytes.len() < CHECK_LEN {
            return Err(ApiError::invalid(
                "cursor",
                "is not a cursor chatsink issued",
            ));
        }
        let (body, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        if check != self.check(body) {
            return Err(ApiError::invalid(
                "cursor",
                "was altered or belongs to another query; start again without a cursor",
            ));
        }
        Ok(body.to_vec())
    }

    /// The cursor naming `key` as the last row seen.
    pub fn encode_key<K: CursorKey>(&self, key: &K) -> String {
        self.encode(&key.to_bytes())
    }

    /// The key a cursor of this query names; a cursor of another route is a 400.
    pub fn decode_key<K: CursorKey>(&self, text: &str) -> Result<K, ApiError> {
        K::from_bytes(&self.decode(text)?)
            .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor for this route"))
    }

    pub fn encode_after(&self, after: After) -> String {
        self.encode_key(&after)
    }

    pub fn decode_after(&self, text: &str) -> Result<After, ApiError> {
        self.decode_key(text)
    }
}

/// A keyset position a cursor carries, as bytes.
pub trait CursorKey: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(body: &[u8]) -> Option<Self>;
}

/// Messages: (time, seq).
impl CursorKey for After {
    fn to_bytes(&self) -> Vec<u8> {
        let mut body = self.created_ms.to_be_bytes().to_vec();
        body.extend_from_slice(&self.seq.to_be_bytes());
        body
    }

    fn from_bytes(body: &[u8]) -> Option<Self> {
        let (time, seq) = (body.get(..8)?, body.get(8..)?);
        Some(After {
            created_ms: i64::from_be_bytes(time.try_into().ok()?),
            seq: i64::from_be_bytes(seq.try_into().ok()?),
        })
    }
}

/// Sessions: (sort time, session id).
impl CursorKey for (i64, String) {
    fn to_bytes(&self) -> Vec<u8> {
        let mut body = self.0.to_be_bytes().to_vec();
        body.extend_from_slice(self.1.as_bytes());
        body
    }

    fn from_bytes(body: &[u8]) -> Option<Self> {
        let ms = i64::from_be_bytes(body.get(..8)?.try_into().ok()?);
        Some((ms, String::from_utf8(body[8..].to_vec()).ok()?))
    }
}

/// Users: the user id.
impl CursorKey for String {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    fn from_bytes(body: &[u8]) -> Option<Self> {
        String::from_utf8(body.to_vec()).ok()
    }
}

/// Rejected rows: the row id.
impl CursorKey for i64 {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn from_bytes(body: &[u8]) -> Option<Self> {
        Some(i64::from_be_bytes(body.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_foreign_or_altered_cursors() {
        let filter = MessageFilter {
            users: vec!["u1".into()],
            ..Default::default()
        };
        let codec = Cursor::for_messages(&filter, Order::Asc);
        let after = After {
            created_ms: 1_780_480_800_000,
            seq: 42,
        };
        let text = codec.encode_after(after);
        assert_eq!(codec.decode_after(&text).unwrap(), after);

        let other = Cursor::for_messages(&MessageFilter::default(), Order::Asc);
        assert!(
            other.decode_after(&text).is_err(),
            "a cursor from another filter"
        );
        assert!(
            Cursor::for_messages(&filter, Order::Desc)
                .decode_after(&text)
                .is_err(),
            "another order"
        );

        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[3] ^= 1;
        assert!(
            codec.decode_after(&URL_SAFE_NO_PAD.encode(bytes)).is_err(),
            "altered"
        );
        for junk in ["", "%%%", "AAAA", "not a cursor"] {
            assert!(codec.decode_after(junk).is_err(), "{junk}");
        }
    }
}
