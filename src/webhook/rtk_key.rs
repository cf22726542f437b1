//! RealtimeKit's RSA public key (and Dyte's, a store of its own): given in the configuration, or
//! fetched from the well-known URL on first need and cached. Start-up never waits for it.
//!
//! When a signature fails with a fetched key, RealtimeKit may have rotated it (how and when is
//! not published), and a 4xx would never be retried. So the key is fetched again, at most once
//! a refetch interval (a minute by default, so forgeries cannot make chatsink hammer the URL):
//! a delivery is refused (401) only once the key was re-checked after it arrived; while the key
//! cannot be re-checked (too soon after the last fetch, or the fetch failed) it is a 503 with
//! `Retry-After`, and RealtimeKit's retry finds the rotated key.

use crate::config::RsaKeySource;
use crate::domain::{parse_rsa_public_key, RsaPublicKey};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a failed signature's re-check of the key found.
#[derive(Debug)]
pub enum Recheck {
    /// The key is fixed by configuration: the signature is simply wrong.
    Fixed,
    /// The key was fetched after the delivery arrived and is the one that failed: the
    /// signature is wrong.
    Current,
    /// A key other than the one that failed: verify with it.
    Rotated(Arc<RtkKey>),
    /// The key could not be re-checked now (the last fetch was too recent, or fetching
    /// failed): the sender should retry after this long.
    NotNow { retry_after: Duration, why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the RealtimeKit public key could not be fetched from {url}: {reason}. On a host that cannot reach it, pin the key: CHATSINK_RTK_PUBLIC_KEY_FILE (CHATSINK_DYTE_PUBLIC_KEY_FILE for dyte-signature deliveries)")]
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
    /// When a fetch last succeeded: deliveries that arrived before it were checked against a
    /// key at least as new as theirs.
    last_fetched: Mutex<Option<Instant>>,
    refetch_interval: Duration,
    client: reqwest::Client,
}

impl RsaKeyStore {
    pub fn new(source: RsaKeySource, refetch_interval: Duration) -> Result<Self, reqwest::Error> {
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
            last_fetched: Mutex::new(None),
            refetch_interval,
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

    /// After `failed` did not verify a delivery that `arrived` then: whether the key is
    /// current for it, rotated, or cannot be re-checked now (see the module's doc).
    pub async fn recheck(&self, failed: &Arc<RtkKey>, arrived: Instant) -> Recheck {
        if matches!(self.source, RsaKeySource::Key(_)) {
            return Recheck::Fixed;
        }
        let _guard = self.fetching.lock().await;
        if let Some(current) = self.cached().filter(|c| !Arc::ptr_eq(c, failed)) {
            return Recheck::Rotated(current);
        }
        if self
            .last_fetched
            .lock()
            .expect("fetched lock")
            .is_some_and(|fetched| fetched >= arrived)
        {
            return Recheck::Current;
        }
        {
            let mut last = self.last_refetch.lock().expect("refetch lock");
            if let Some(wait) = last
                .map(|t| self.refetch_interval.saturating_sub(t.elapsed()))
                .filter(|wait| !wait.is_zero())
            {
                return Recheck::NotNow {
                    retry_after: wait,
                    why: "the public key was re-fetched moments ago; it is re-checked once a minute at most".into(),
                };
            }
            *last = Some(Instant::now());
        }
        metrics::counter!("chatsink_rtk_key_refetches_total").increment(1);
        match self.fetch().await {
            Ok(key) if *key != **failed => Recheck::Rotated(key),
            Ok(_) => Recheck::Current,
            Err(e) => {
                metrics::counter!("chatsink_rtk_key_fetch_failures_total").increment(1);
                tracing::warn!(error = %e, "the public key could not be re-checked after a failed signature");
                Recheck::NotNow {
                    retry_after: self.refetch_interval,
                    why: e.to_string(),
                }
            }
        }
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
            // With its causes: "error sending request" alone does not say "connection refused".
            .map_err(|e| unavailable(crate::error_chain::error_chain(&e)))?;
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
        *self.last_fetched.lock().expect("fetched lock") = Some(Instant::now());
        tracing::info!(url = %url, "public key fetched");
        Ok(key)
    }
}
