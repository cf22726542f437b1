//! Deciding whether a delivery really comes from RealtimeKit (or a relay holding a shared
//! secret). Always over the raw body bytes as received, never a re-serialisation.

use super::rtk_key::{KeyError, Recheck, RsaKeyStore, RtkKey};
use super::standard_webhooks::{verify_hmac, HmacError};
use crate::config::VerifySettings;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use secrecy::ExposeSecret;
use sha2::Sha256;
use std::sync::Arc;

/// The headers verification looks at, lifted out of the HTTP request by the handler.
#[derive(Debug, Default, Clone)]
pub struct DeliveryHeaders {
    pub rtk_signature: Option<String>,
    pub rtk_uuid: Option<String>,
    pub dyte_signature: Option<String>,
    pub dyte_uuid: Option<String>,
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    pub webhook_signature: Option<String>,
    /// `rtk-webhook-id`: which webhook configuration sent the delivery (recorded, not verified).
    pub rtk_webhook_id: Option<String>,
}

impl DeliveryHeaders {
    /// The sender's id for this delivery, used for de-duplication.
    pub fn delivery_id(&self) -> Option<String> {
        [&self.rtk_uuid, &self.dyte_uuid, &self.webhook_id]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    RtkRsa,
    DyteRsa,
    Hmac,
    Insecure,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RtkRsa => "rtk-rsa",
            Self::DyteRsa => "dyte-rsa",
            Self::Hmac => "hmac",
            Self::Insecure => "insecure",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no signature header: send rtk-signature, dyte-signature or webhook-signature")]
    Missing,
    #[error("{header}: {reason}")]
    Rejected {
        header: &'static str,
        reason: String,
    },
    /// The key could not be obtained: the sender should retry (503), not give up (401).
    #[error("{0}")]
    KeyUnavailable(#[from] KeyError),
    /// The signature failed, and the key may have been rotated since it was last fetched: the
    /// sender should retry (503 with `Retry-After`) once it can be re-checked.
    #[error("{header}: the signature does not match the cached public key, which may be stale and cannot be re-checked now ({why}); retry")]
    KeyStale {
        header: &'static str,
        retry_after: std::time::Duration,
        why: String,
    },
}

pub struct Verifier {
    rsa: Arc<RsaKeyStore>,
    /// Legacy `dyte-signature` deliveries: a key of their own (no source says Dyte and
    /// RealtimeKit share one).
    dyte: Arc<RsaKeyStore>,
    hmac_keys: Vec<Vec<u8>>,
    insecure: bool,
}

impl Verifier {
    pub fn new(settings: &VerifySettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            rsa: Arc::new(RsaKeyStore::new(
                settings.rsa_key.clone(),
                settings.key_refetch_interval,
            )?),
            dyte: Arc::new(RsaKeyStore::new(
                settings.dyte_key.clone(),
                settings.key_refetch_interval,
            )?),
            hmac_keys: settings
                .hmac_keys
                .iter()
                .map(|k| k.expose_secret().to_vec())
                .collect(),
            insecure: settings.insecure_skip_verify,
        })
    }

    /// Accepts the delivery when any configured scheme whose header is present verifies it.
    pub async fn verify(
        &self,
        headers: &DeliveryHeaders,
        body: &[u8],
    ) -> Result<Scheme, VerifyError> {
        if self.insecure {
            tracing::warn!("signature NOT verified: --insecure-skip-verify is on");
            return Ok(Scheme::Insecure);
        }
        let arrived = std::time::Instant::now();
        let mut first_error = None;
        if let (Some(signature), false) = (&headers.webhook_signature, self.hmac_keys.is_empty()) {
            let now = chrono::Utc::now().timestamp();
            match verify_hmac(
                &self.hmac_keys,
                headers.webhook_id.as_deref(),
                headers.webhook_timestamp.as_deref(),
                signature,
                body,
                now,
            ) {
                Ok(()) => return Ok(Scheme::Hmac),
                Err(e) => first_error = Some(hmac_rejection(e)),
            }
        }
        for (header, value, scheme, keys) in [
            (
                "rtk-signature",
                &headers.rtk_signature,
                Scheme::RtkRsa,
                &self.rsa,
            ),
            (
                "dyte-signature",
                &headers.dyte_signature,
                Scheme::DyteRsa,
                &self.dyte,
            ),
        ] {
            let Some(value) = value else { continue };
            match verify_rsa(keys, header, value, body, arrived).await {
                Ok(()) => return Ok(scheme),
                Err(e @ (VerifyError::KeyUnavailable(_) | VerifyError::KeyStale { .. })) => {
                    return Err(e)
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(VerifyError::Missing))
    }
}

async fn verify_rsa(
    keys: &RsaKeyStore,
    header: &'static str,
    value: &str,
    body: &[u8],
    arrived: std::time::Instant,
) -> Result<(), VerifyError> {
    let rejected = |reason: &str| VerifyError::Rejected {
        header,
        reason: reason.to_owned(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| rejected("not base64"))?;
    let key = keys.key().await?;
    if rsa_matches(&key, body, &bytes) {
        return Ok(());
    }
    match keys.recheck(&key, arrived).await {
        Recheck::Rotated(rotated) if rsa_matches(&rotated, body, &bytes) => Ok(()),
        Recheck::NotNow { retry_after, why } => Err(VerifyError::KeyStale {
            header,
            retry_after,
            why,
        }),
        _ => Err(rejected("signature does not match the body")),
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256. Keys of 2048 bits and more go through `ring` (already in the
/// tree for TLS), whose constant-time assembly verifies several times faster than the `rsa`
/// crate: RSA verification was the webhook's largest cost. Smaller (legacy) keys, which `ring`
/// refuses, use the `rsa` crate.
fn rsa_matches(key: &RtkKey, body: &[u8], signature: &[u8]) -> bool {
    if let Some(der) = &key.pkcs1_der {
        return ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            der,
        )
        .verify(body, signature)
        .is_ok();
    }
    Signature::try_from(signature).is_ok_and(|signature| {
        VerifyingKey::<Sha256>::new(key.key.clone())
            .verify(body, &signature)
            .is_ok()
    })
}

fn hmac_rejection(e: HmacError) -> VerifyError {
    let header = match e {
        HmacError::MissingId => "webhook-id",
        HmacError::BadTimestamp | HmacError::OutsideTolerance => "webhook-timestamp",
        HmacError::NoSignature | HmacError::Mismatch => "webhook-signature",
    };
    VerifyError::Rejected {
        header,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::{RsaPrivateKey, RsaPublicKey};

    /// Both paths: `ring` for 2048-bit keys, the `rsa` crate for a legacy 1024-bit one.
    #[test]
    fn rsa_matches_only_the_signed_body_with_either_backend() {
        for bits in [1024, 2048] {
            let private = RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
            let public = RtkKey::new(RsaPublicKey::from(&private));
            assert_eq!(public.pkcs1_der.is_some(), bits >= 2048);
            let body = b"{\"event\":\"meeting.chatSynced\"}";
            let raw = SigningKey::<Sha256>::new(private).sign(body).to_vec();
            assert!(rsa_matches(&public, body, &raw), "{bits}");
            assert!(!rsa_matches(&public, b"{}", &raw), "{bits}");
            let mut flipped = raw.clone();
            flipped[10] ^= 1;
            assert!(!rsa_matches(&public, body, &flipped), "{bits}");
        }
    }
}
