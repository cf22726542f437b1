//! Streams a dump from storage to a working file in the data dir, behind the URL policy.
//!
//! Memory stays flat whatever the size: bytes go from the socket to disk chunk by chunk while a
//! SHA-256 and a byte count run alongside; the cap applies to decoded (gunzipped) bytes.

use super::dump_store::{working_file, LocalDump};
use super::url_policy::{PolicyError, UrlPolicy};
use crate::config::DownloadSettings;
use crate::domain::SessionId;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download refused: {0}")]
    Policy(#[from] PolicyError),
    #[error("storage answered 403 Forbidden (the signed link has likely expired)")]
    Forbidden,
    #[error("the dump is larger than the {limit}-byte cap (CHATSINK_DOWNLOAD_MAX_BYTES)")]
    TooLarge { limit: u64 },
    #[error("storage answered HTTP {0}")]
    Status(u16),
    #[error("download failed: {0}")]
    Network(String),
    #[error("storing the dump failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("'{0}' is not a valid URL")]
    BadUrl(String),
}

impl DownloadError {
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Policy(_) | Self::TooLarge { .. } | Self::BadUrl(_) => true,
            // A signed S3 link that answers 404 or 400 will answer the same next time.
            Self::Status(code) => matches!(code, 400 | 404 | 410),
            Self::Forbidden | Self::Network(_) | Self::Io(_) => false,
        }
    }
}

/// Resolves names for the download client and refuses the lot when any address is not allowed,
/// so the client can only ever connect to an address that was checked.
struct GuardedResolver {
    policy: Arc<UrlPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check_address(&host, addr.ip())?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A downloaded dump in a working file, and the SHA-256 of its bytes.
#[derive(Debug)]
pub struct Downloaded {
    pub file: LocalDump,
    pub sha256: String,
}

#[derive(Clone)]
pub struct Downloader {
    client: reqwest::Client,
    policy: Arc<UrlPolicy>,
    max_bytes: u64,
    data_dir: PathBuf,
}

impl Downloader {
    pub fn new(settings: &DownloadSettings, data_dir: &Path) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(UrlPolicy::new(&settings.allow_hosts, settings.allow_http));
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("more than 5 redirects");
                }
                match redirect_policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
            // A proxy would do its own DNS and bypass the address checks.
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .gzip(true)
            .user_agent(concat!("chatsink/", env!("CARGO_PKG_VERSION")))
            .build()?;
        sweep_stale_parts(&data_dir.join("tmp"));
        Ok(Self {
            client,
            policy,
            max_bytes: settings.max_bytes,
            data_dir: data_dir.to_owned(),
        })
    }

    /// Downloads `url` into a working file in the data dir's `tmp`, fsynced, with its digest;
    /// the dump store keeps it from there.
    #[tracing::instrument(skip(self, url), fields(session_id = %session))]
    pub async fn download(
        &self,
        url: &str,
        session: &SessionId,
    ) -> Result<Downloaded, DownloadError> {
        let parsed = Url::parse(url).map_err(|_| DownloadError::BadUrl(redact_str(url)))?;
        self.policy.check_url(&parsed)?;
        let started = std::time::Instant::now();
        let mut response = self.client.get(parsed).send().await.map_err(classify)?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(DownloadError::Forbidden);
        }
        if !status.is_success() {
            return Err(DownloadError::Status(status.as_u16()));
        }
        // Content-Length is the decoded size only for unencoded bodies (reqwest drops it when it
        // decompresses), so it can stop an oversized file before the first byte.
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes)
        {
            return Err(DownloadError::TooLarge {
                limit: self.max_bytes,
            });
        }
        // Removed when dropped, however this ends, unless the dump store takes it.
        let file = LocalDump::temporary(working_file(&self.data_dir.join("tmp")).await?);
        let (sha256, bytes) = self.stream_to(&mut response, file.path()).await?;
        let seconds = started.elapsed().as_secs_f64();
        metrics::counter!("chatsink_download_bytes_total").increment(bytes);
        metrics::histogram!("chatsink_download_seconds").record(seconds);
        tracing::info!(bytes, sha256 = %sha256, seconds, "dump downloaded");
        Ok(Downloaded { file, sha256 })
    }

    async fn stream_to(
        &self,
        response: &mut reqwest::Response,
        path: &Path,
    ) -> Result<(String, u64), DownloadError> {
        let mut file =
            tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::create(path).await?);
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            total += chunk.len() as u64;
            if total > self.max_bytes {
                return Err(DownloadError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
            if total == chunk.len() as u64 {
                crate::failpoint::hit_async("download.mid").await;
            }
        }
        file.flush().await?;
        let file = file.into_inner();
        file.sync_all().await?;
        Ok((hex::encode(hasher.finalize()), total))
    }
}

/// Removes partial downloads left by a process that died mid-download. A part file is named
/// `<pid>-<uuid>.part`; it is stale when that process no longer runs here, or (where liveness
/// cannot be told, or the pid was reused) when nothing wrote to it for a day.
fn sweep_stale_parts(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    let procfs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".part") else {
            continue;
        };
        let owner_alive = stem
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .map(|pid| !procfs || Path::new(&format!("/proc/{pid}")).exists())
            .unwrap_or(false);
        let idle_for = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if !owner_alive || idle_for > std::time::Duration::from_secs(24 * 3600) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %name, "removed a partial download left by a crash")
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove a stale partial download")
                }
            }
        }
    }
}

/// A download URL as it may be logged or stored: no query string (a pre-signed S3 link carries
/// its credential and signature there, `X-Amz-Signature=...`), no user info, no fragment.
pub fn redact(url: &Url) -> String {
    let mut url = url.clone();
    if url.query().is_some() {
        url.set_query(Some("REDACTED"));
    }
    url.set_fragment(None);
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// [`redact`] for text that may not even parse as a URL: everything from the first `?` or `#`
/// goes.
pub fn redact_str(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => redact(&url),
        Err(_) => match raw.find(['?', '#']) {
            Some(at) => format!("{}?REDACTED", &raw[..at]),
            None => raw.to_owned(),
        },
    }
}

/// Finds a policy refusal in reqwest's error chain (from the resolver or the redirect check).
/// reqwest names the request's URL in its errors; it is redacted before the text goes to a log
/// or a job's `last_error`.
fn classify(mut error: reqwest::Error) -> DownloadError {
    if let Some(url) = error.url_mut() {
        *url = Url::parse(&redact(url)).expect("a redacted URL parses");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(policy) = e.downcast_ref::<PolicyError>() {
            return DownloadError::Policy(policy.clone());
        }
        source = e.source();
    }
    DownloadError::Network(error_chain(&error))
}

pub use crate::error_chain::error_chain;
