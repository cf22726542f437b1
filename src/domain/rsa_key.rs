//! RealtimeKit's RSA public key as text (settings, files and its key endpoint): the one parser.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
pub use rsa::RsaPublicKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RSA public key in PEM form: {0}")]
pub struct RsaKeyError(String);

/// Parses an SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM. RealtimeKit's key
/// endpoint and environment variables may carry it with literal `\n` sequences: those are
/// unescaped first.
pub fn parse_rsa_public_key(text: &str) -> Result<RsaPublicKey, RsaKeyError> {
    let pem = text.replace("\\n", "\n").replace("\\r", "");
    let pem = pem.trim();
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| RsaKeyError(e.to_string()))
}
