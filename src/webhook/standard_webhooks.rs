//! The shared-secret scheme, following the Standard Webhooks spec: `webhook-signature` carries
//! space-separated `v1,<base64 HMAC-SHA256>` entries over `{webhook-id}.{webhook-timestamp}.{body}`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a timestamp may be from now, in either direction (replay protection).
pub const TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HmacError {
    #[error("webhook-id is missing")]
    MissingId,
    #[error("webhook-timestamp is missing or not an integer")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 5 minutes from now")]
    OutsideTolerance,
    #[error("webhook-signature has no v1 signature")]
    NoSignature,
    #[error("no configured secret produced the signature")]
    Mismatch,
}

/// Verifies against every key (rotation: any one may match). Comparison is constant-time.
pub fn verify_hmac(
    keys: &[Vec<u8>],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), HmacError> {
    let id = id
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(HmacError::MissingId)?;
    let timestamp_text = timestamp.map(str::trim).ok_or(HmacError::BadTimestamp)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| HmacError::BadTimestamp)?;
    if now_secs.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(HmacError::OutsideTolerance);
    }
    let signatures: Vec<Vec<u8>> = signature_header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if signatures.is_empty() {
        return Err(HmacError::NoSignature);
    }
    for key in keys {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_text.as_bytes());
        mac.update(b".");
        mac.update(body);
        for signature in &signatures {
            if mac.clone().verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(HmacError::Mismatch)
}

/// Signs like a Standard Webhooks sender: `v1,<base64>`. Used by tests, benches and tooling.
pub fn sign_hmac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rotation() {
        let old = b"old-key".to_vec();
        let new = b"new-key".to_vec();
        let header = sign_hmac(&new, "msg_1", 1000, b"{}");
        assert_eq!(
            verify_hmac(
                &[old.clone(), new],
                Some("msg_1"),
                Some("1000"),
                &header,
                b"{}",
                1000
            ),
            Ok(())
        );
        assert_eq!(
            verify_hmac(&[old], Some("msg_1"), Some("1000"), &header, b"{}", 1000),
            Err(HmacError::Mismatch)
        );
    }

    #[test]
    fn several_signatures_in_one_header() {
        let key = b"k".to_vec();
        let good = sign_hmac(&key, "i", 5, b"x");
        let header = format!("v1,AAAA v2,zzz {good}");
        assert_eq!(
            verify_hmac(&[key], Some("i"), Some("5"), &header, b"x", 5),
            Ok(())
        );
    }

    #[test]
    fn tolerance_both_directions() {
        let key = b"k".to_vec();
        let h = sign_hmac(&key, "i", 1000, b"x");
        for (now, ok) in [
            (1000 + 299, true),
            (1000 - 299, true),
            (1000 + 300, true),
            (1000 + 301, false),
            (1000 - 301, false),
        ] {
            assert_eq!(
                verify_hmac(
                    std::slice::from_ref(&key),
                    Some("i"),
                    Some("1000"),
                    &h,
                    b"x",
                    now
                )
                .is_ok(),
                ok,
                "{now}"
            );
        }
    }

    #[test]
    fn malformed_headers() {
        let key = vec![1u8];
        assert_eq!(
            verify_hmac(
                std::slice::from_ref(&key),
                None,
                Some("1"),
                "v1,AA==",
                b"",
                1
            ),
            Err(HmacError::MissingId)
        );
        assert_eq!(
            verify_hmac(
                std::slice::from_ref(&key),
                Some("i"),
                Some("x"),
                "v1,AA==",
                b"",
                1
            ),
            Err(HmacError::BadTimestamp)
        );
        assert_eq!(
            verify_hmac(&[key], Some("i"), Some("1"), "garbage", b"", 1),
            Err(HmacError::NoSignature)
        );
    }
}
