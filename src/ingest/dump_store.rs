//! Where raw dumps are kept once downloaded (`CHATSINK_DUMP_STORE`), so `reprocess` can load a
//! session again without asking RealtimeKit: a directory (the default, `CHATSINK_DATA_DIR/dumps`;
//! instances on one host or a shared volume can share it), an S3 bucket (instances that share
//! nothing), or nowhere (`none`: a reprocess downloads again through the Chat Replay API).
//!
//! A download always lands in a local file first (the parser reads a file); keeping it is a
//! rename into the directory, or an upload to the bucket, done before the load commits, so the
//! key a session row names always has its object behind it.
//!
//! The key kept in the database is relative to the store: `<session>/<sha256>.csv`.

use crate::domain::SessionId;
use futures_util::StreamExt;
use object_store::{aws::AmazonS3Builder, path::Path as ObjectPath, ObjectStore};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// `CHATSINK_DUMP_STORE` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpStoreLocation {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
    None,
}

impl DumpStoreLocation {
    /// A directory path, `s3://bucket[/prefix]`, or `none`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("give a directory, s3://bucket/prefix or none".into());
        }
        if raw.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        let Some(rest) = raw.strip_prefix("s3://") else {
            if raw.contains("://") {
                return Err(format!(
                    "'{raw}' is not a directory, an s3:// URL or none (only s3 buckets are supported)"
                ));
            }
            return Ok(Self::Dir(PathBuf::from(raw)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok {
            return Err(format!(
                "'{bucket}' is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and dashes)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") {
            return Err(format!("the prefix '{prefix}' may not hold '.' or '..'"));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The default: `dumps` under the data dir.
    pub fn default_under(data_dir: &Path) -> Self {
        Self::Dir(data_dir.join("dumps"))
    }
}

impl fmt::Display for DumpStoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::None => f.write_str("none"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DumpStoreError {
    #[error("the dump store {store}: {source}")]
    Io {
        store: String,
        source: std::io::Error,
    },
    #[error("the dump store {store}: {source}")]
    Object {
        store: String,
        source: object_store::Error,
    },
    #[error("the dump store {store} holds a key chatsink did not write: '{key}'")]
    BadKey { store: String, key: String },
}

/// A dump on local disk to parse: either the kept copy itself (a directory store) or a working
/// copy that goes when this is dropped.
#[derive(Debug)]
pub struct LocalDump {
    path: PathBuf,
    temporary: bool,
}

impl LocalDump {
    pub(super) fn temporary(path: PathBuf) -> Self {
        Self {
            path,
            temporary: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalDump {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[derive(Clone)]
enum Kind {
    Dir(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        prefix: String,
    },
    None,
}

/// The dump store `serve` and `reprocess` keep dumps in.
#[derive(Clone)]
pub struct DumpStore {
    kind: Kind,
    shown: String,
    /// Where working copies go: the data dir's `tmp`, which downloads use too.
    tmp_dir: PathBuf,
}

impl DumpStore {
    /// Opens `location`. For S3 the usual AWS variables apply (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...); an `http://` endpoint
    /// is allowed (a local S3-speaking server) because the operator chose it.
    pub fn open(location: &DumpStoreLocation, data_dir: &Path) -> anyhow::Result<Self> {
        let kind = match location {
            DumpStoreLocation::Dir(path) => Kind::Dir(path.clone()),
            DumpStoreLocation::None => Kind::None,
            DumpStoreLocation::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let endpoint = std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .ok();
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_endpoint(endpoint);
                }
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    builder = builder.with_region("us-east-1");
                }
                let store = builder
                    .build()
                    .map_err(|e| anyhow::anyhow!("CHATSINK_DUMP_STORE {location}: {e}"))?;
                Kind::Object {
                    store: Arc::new(store),
                    prefix: prefix.clone(),
                }
            }
        };
        Ok(Self {
            kind,
            shown: location.to_string(),
            tmp_dir: data_dir.join("tmp"),
        })
    }

    /// Keeps the downloaded file at `downloaded` (in the data dir's `tmp`) as `session`'s dump
    /// with this digest. Returns the file to parse and the key to record (`None`: not kept).
    pub async fn keep(
        &self,
        downloaded: LocalDump,
        session: &SessionId,
        sha256: &str,
    ) -> Result<(LocalDump, Option<String>), DumpStoreError> {
        let key = format!("{}/{sha256}.csv", file_safe(session.as_str()));
        match &self.kind {
            Kind::None => Ok((downloaded, None)),
            Kind::Dir(root) => {
                let kept = root.join(&key);
                self.place(&downloaded.path, &kept)
                    .await
                    .map_err(|source| self.io(source))?;
                // The working copy moved: nothing to remove.
                let mut downloaded = downloaded;
                downloaded.temporary = false;
                Ok((
                    LocalDump {
                        path: kept,
                        temporary: false,
                    },
                    Some(key),
                ))
            }
            Kind::Object { store, prefix } => {
                let object = object_path(prefix, &key);
                upload(store.as_ref(), &downloaded.path, &object)
                    .await
                    .map_err(|e| self.object_error(e))?;
                Ok((downloaded, Some(key)))
            }
        }
    }

    /// Deletes the kept dump under `key` (erasure, retention); one already gone is no error.
    pub async fn remove(&self, key: &str) -> Result<(), DumpStoreError> {
        if !key_is_ours(key) {
            return Err(DumpStoreError::BadKey {
                store: self.shown.clone(),
                key: key.to_owned(),
            });
        }
        match &self.kind {
            Kind::None => Ok(()),
            Kind::Dir(root) => match tokio::fs::remove_file(root.join(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(e)),
                _ => Ok(()),
            },
            Kind::Object { store, prefix } => match store.delete(&object_path(prefix, key)).await {
                Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
                    Err(self.object_error(e))
                }
                _ => Ok(()),
            },
        }
    }

    /// The kept dump under `key`, as a local file; `None` when the store no longer has it (or
    /// keeps none), so the caller downloads it again.
    pub async fn fetch(&self, key: &str) -> Result<Option<LocalDump>, DumpStoreError> {
        if !key_is_ours(key) {
            return Err(DumpStoreError::BadKey {
                store: self.shown.clone(),
                key: key.to_owned(),
            });
        }
        match &self.kind {
            Kind::None => Ok(None),
            Kind::Dir(root) => {
                let path = root.join(key);
                Ok(path.is_file().then_some(LocalDump {
                    path,
                    temporary: false,
                }))
            }
            Kind::Object { store, prefix } => {
                let object = object_path(prefix, key);
                let got = match store.get(&object).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(self.object_error(e)),
                };
                let local = LocalDump::temporary(
                    working_file(&self.tmp_dir).await.map_err(|e| self.io(e))?,
                );
                let mut file = tokio::io::BufWriter::with_capacity(
                    256 * 1024,
                    tokio::fs::File::create(&local.path)
                        .await
                        .map_err(|e| self.io(e))?,
                );
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.object_error(e))?;
                    file.write_all(&chunk).await.map_err(|e| self.io(e))?;
                }
                file.flush().await.map_err(|e| self.io(e))?;
                Ok(Some(local))
            }
        }
    }

    /// Moves `from` to `to`, durably: a rename, or a copy and rename when the store is on
    /// another filesystem than the data dir (a shared volume).
    async fn place(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let dir = to.parent().expect("a key has a directory").to_owned();
        tokio::fs::create_dir_all(&dir).await?;
        match tokio::fs::rename(from, to).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                let part = dir.join(format!(".{}.part", uuid::Uuid::new_v4()));
                tokio::fs::copy(from, &part).await?;
                tokio::fs::File::open(&part).await?.sync_all().await?;
                tokio::fs::rename(&part, to).await?;
                let _ = tokio::fs::remove_file(from).await;
            }
            Err(e) => return Err(e),
        }
        sync_dir(&dir).await
    }

    fn io(&self, source: std::io::Error) -> DumpStoreError {
        DumpStoreError::Io {
            store: self.shown.clone(),
            source,
        }
    }

    fn object_error(&self, source: object_store::Error) -> DumpStoreError {
        DumpStoreError::Object {
            store: self.shown.clone(),
            source,
        }
    }
}

/// A new working file's path in `tmp_dir` (the data dir's `tmp`), created if need be. Named
/// `<pid>-<uuid>.part`, so the downloader's start-up sweep removes what a crash left.
pub(super) async fn working_file(tmp_dir: &Path) -> std::io::Result<PathBuf> {
    tokio::fs::create_dir_all(tmp_dir).await?;
    Ok(tmp_dir.join(format!(
        "{}-{}.part",
        std::process::id(),
        uuid::Uuid::new_v4()
    )))
}

/// Uploads the file at `from` to `to`, in parts for a large file.
async fn upload(
    store: &dyn ObjectStore,
    from: &Path,
    to: &ObjectPath,
) -> Result<(), object_store::Error> {
    let io = |source: std::io::Error| object_store::Error::Generic {
        store: "local file",
        source: Box::new(source),
    };
    let mut file = tokio::fs::File::open(from).await.map_err(io)?;
    let upload = store.put_multipart(to).await?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buffer)
            .await
            .map_err(io)?;
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(4).await?;
        writer.write(&buffer[..n]);
    }
    writer.finish().await?;
    Ok(())
}

fn object_path(prefix: &str, key: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(key)
    } else {
        ObjectPath::from(format!("{prefix}/{key}"))
    }
}

/// A key chatsink wrote: `<file-safe session>/<hex sha256>.csv`, nothing that could leave the
/// store's root.
fn key_is_ours(key: &str) -> bool {
    let Some((session, file)) = key.split_once('/') else {
        return false;
    };
    let Some(digest) = file.strip_suffix(".csv") else {
        return false;
    };
    !session.is_empty()
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && digest.len() == 64
        && digest.chars().all(|c| c.is_ascii_hexdigit())
}

/// A session id as a single path component.
fn file_safe(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_as_a_directory_a_bucket_or_none_and_bad_ones_say_why() {
        assert_eq!(
            DumpStoreLocation::parse("/srv/dumps").unwrap(),
            DumpStoreLocation::Dir("/srv/dumps".into())
        );
        assert_eq!(
            DumpStoreLocation::parse("NONE").unwrap(),
            DumpStoreLocation::None
        );
        assert_eq!(
            DumpStoreLocation::parse("s3://chat-dumps/prod/eu/").unwrap(),
            DumpStoreLocation::S3 {
                bucket: "chat-dumps".into(),
                prefix: "prod/eu".into()
            }
        );
        assert_eq!(
            DumpStoreLocation::parse("s3://chat-dumps")
                .unwrap()
                .to_string(),
            "s3://chat-dumps"
        );
        for bad in [
            "",
            "s3://",
            "s3://Bad_Bucket/x",
            "gs://b/p",
            "s3://bkt/a/../b",
        ] {
            assert!(DumpStoreLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_keys_chatsink_wrote_are_fetched() {
        let sha = "a".repeat(64);
        assert!(key_is_ours(&format!("s-1_x/{sha}.csv")));
        for bad in [
            format!("../{sha}.csv"),
            format!("s/../{sha}.csv"),
            format!("/{sha}.csv"),
            "s/short.csv".to_owned(),
            format!("dumps/s/{sha}.csv"),
        ] {
            assert!(!key_is_ours(&bad), "{bad}");
        }
    }
}
