//! RealtimeKit's RSA public key: given in the configuration, or fetched from the well-known URL
//! on first need and cached. When a signature fails with a fetched key, the key is fetched once
//! more (at most once a minute) in case RealtimeKit rotated it. Start-up never waits for it.

use crate::config::RsaKeySource;
use crate::domain::{parse_rsa_public_key, RsaPublicKey};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the RealtimeKit public key could not be fetched from {url}: {reason}")]
    Unavailable { url: String, reason: String },
}

/// A public key ready to verify with: for keys of 2048 bits and more, its PKCS#1 DER for `ring`,
/// encoded once rather than per delivery.
#[derive(Debug, PartialEq, Eq)]
pub struct RtkKey {
    pub key: RsaPublicKey,
    pub pkcs1_der: Option<Vec<u8>>,
}

impl RtkKey {
    pub fn new(key: RsaPublicKey) -> Self {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::traits::PublicKeyParts;
        let pkcs1_der = (key.size() >= 256)
            .then(|| key.to_pkcs1_der().ok())
            .flatten()
            .map(|der| der.as_bytes().to_vec());
        Self { key, pkcs1_der }
    }
}

pub struct RsaKeyStore {
    source: RsaKeySource,
    current: RwLock<Option<Arc<RtkKey>>>,
    fetching: tokio::sync::Mutex<()>,
    /// When a failed signature last caused a re-fetch; such re-fetches are rate-limited.
    last_refetch: Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl RsaKeyStore {
    pub fn new(source: RsaKeySource) -> Result<Self, reqwest::Error> {
        let current = match &source {
            RsaKeySource::Key(key) => Some(Arc::new(RtkKey::new(key.clone()))),
            RsaKeySource::Url(_) => None,
        };
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
        Ok(Self {
            source,
            current: RwLock::new(current),
            fetching: tokio::sync::Mutex::new(()),
            last_refetch: Mutex::new(None),
            client,
        })
    }

    fn cached(&self) -> Option<Arc<RtkKey>> {
        self.current.read().expect("key lock").clone()
    }

    /// The key, fetching it if it is not known yet.
    pub async fn key(&self) -> Result<Arc<RtkKey>, KeyError> {
        if let Some(key) = self.cached() {
            return Ok(key);
        }
        let _guard = self.fetching.lock().await;
        if let Some(key) = self.cached() {
            return Ok(key);
        }
        self.fetch().await
    }

    /// After a failed verification: a possibly rotated key, or `None` when the key is fixed by
    /// configuration, was fetched less than a minute ago, or did not change.
    pub async fn refreshed_key(&self, failed: &Arc<RtkKey>) -> Option<Arc<RtkKey>> {
        if matches!(self.source, RsaKeySource::Key(_)) {
            return None;
        }
        let _guard = self.fetching.lock().await;
        if let Some(current) = self.cached().filter(|c| !Arc::ptr_eq(c, failed)) {
            return Some(current);
        }
        {
            let mut last = self.last_refetch.lock().expect("refetch lock");
            if last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let key = self.fetch().await.ok()?;
        (*key != **failed).then_some(key)
    }

    async fn fetch(&self) -> Result<Arc<RtkKey>, KeyError> {
        let RsaKeySource::Url(url) = &self.source else {
            unreachable!("a configured key is always cached");
        };
        let unavailable = |reason: String| KeyError::Unavailable {
            url: url.clone(),
            reason,
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let body: serde_json::Value =
            crate::domain::json::from_slice(&bytes).map_err(|e| unavailable(e.to_string()))?;
        let pem = body
            .pointer("/data/publicKey")
            .and_then(|v| v.as_str())
            .ok_or_else(|| unavailable("no data.publicKey in the answer".into()))?;
        let key = Arc::new(RtkKey::new(
            parse_rsa_public_key(pem).map_err(|e| unavailable(e.to_string()))?,
        ));
        *self.current.write().expect("key lock") = Some(key.clone());
        tracing::info!(url = %url, "RealtimeKit public key fetched");
        Ok(key)
    }
}
