//! `chatsink demo` and `chatsink send-test-webhook`: the whole path on one machine, with no
//! network beyond loopback. A small loopback server plays RealtimeKit's storage (S3) for a
//! generated dump; the delivery is signed with a Standard Webhooks secret.

use crate::config::{Cli, Command, DemoArgs, SendTestWebhookArgs};
use crate::dumpgen;
use crate::startup::Application;
use anyhow::{bail, Context};
use base64::Engine;
use rand::RngCore;
use secrecy::ExposeSecret;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `body` at `/<name>` on a loopback port; counts completed downloads.
pub struct DumpServer {
    pub url: String,
    downloads: Arc<AtomicUsize>,
}

impl DumpServer {
    pub async fn start(name: &str, body: Vec<u8>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let downloads = Arc::new(AtomicUsize::new(0));
        let counter = downloads.clone();
        let body = Arc::new(body);
        let path = format!("/{name}");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (body, counter, path) = (body.clone(), counter.clone(), path.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&head);
                    let found = request.split_whitespace().nth(1) == Some(path.as_str());
                    let (status, payload): (&str, &[u8]) = if found {
                        ("200 OK", &body)
                    } else {
                        ("404 Not Found", b"not found")
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nconnection: close\r\n\r\n",
                        payload.len()
                    );
                    if socket.write_all(head.as_bytes()).await.is_ok()
                        && socket.write_all(payload).await.is_ok()
                        && found
                    {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{addr}/{name}"),
            downloads,
        })
    }

    pub fn downloads(&self) -> usize {
        self.downloads.load(Ordering::SeqCst)
    }
}

/// Posts `body` signed with the Standard Webhooks `key`; returns the status and the JSON answer.
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    key: &[u8],
    body: Vec<u8>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let timestamp = chrono::Utc::now().timestamp();
    let signature = crate::webhook::sign_hmac(key, &id, timestamp, &body);
    let response = client
        .post(format!(
            "{}/webhooks/realtimekit",
            base.trim_end_matches('/')
        ))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach chatsink at {base}"))?;
    let status = response.status().as_u16();
    let answer = response.json().await.unwrap_or_default();
    Ok((status, answer))
}

/// A generated dump for `session` whose messages were sent in the last hours, seeded by the
/// session id (the same id gives the same dump), and the session as its webhook describes it.
fn generated_dump(session: &str, messages: usize) -> (Vec<u8>, dumpgen::GeneratedSession) {
    use sha2::Digest;
    let seed = u64::from_be_bytes(
        sha2::Sha256::digest(session.as_bytes())[..8]
            .try_into()
            .expect("8 bytes"),
    );
    // Messages come ~2 s apart: start far enough back that the session has ended by now.
    let span_ms = messages as i64 * 2_100 + 60_000;
    let start = chrono::Utc::now().timestamp_millis() - span_ms;
    let mut dump = Vec::new();
    let generated =
        dumpgen::write_sessions_from(&mut dump, seed, &[session.to_owned()], messages, start)
            .expect("writing to memory");
    (dump, generated.into_iter().next().expect("one session"))
}

pub async fn send_test_webhook(args: SendTestWebhookArgs) -> anyhow::Result<ExitCode> {
    let Some(secret) = args
        .hmac_secret
        .iter()
        .map(|s| s.expose_secret())
        .find(|s| !s.trim().is_empty())
    else {
        bail!(
            "{}",
            needs_settings(&args.url, "this command has no HMAC secret to sign with")
        );
    };
    let key = crate::config::parse_hmac_secret(secret)
        .map_err(|e| anyhow::anyhow!("--hmac-secret {e}"))?;
    let session = args
        .session
        .clone()
        .unwrap_or_else(|| format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    crate::domain::SessionId::parse(&session).map_err(|e| anyhow::anyhow!("--session {e}"))?;
    let (dump, generated) = generated_dump(&session, args.messages);
    let storage = DumpServer::start(&format!("{session}.csv"), dump).await?;
    let client = reqwest::Client::new();
    let body = dumpgen::chat_synced_body_for(&generated, &storage.url);
    let (status, answer) = post_signed(&client, &args.url, key.expose_secret(), body).await?;
    println!(
        "POST {}/webhooks/realtimekit -> {status} {answer}",
        args.url.trim_end_matches('/')
    );
    if status == 401 {
        bail!(
            "{}",
            needs_settings(&args.url, "the service refused the signature")
        );
    }
    if status != 200 {
        bail!("the delivery was not accepted");
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    while storage.downloads() == 0 {
        if Instant::now() > deadline {
            bail!(
                "the service did not download the dump within {} s. For this test it must allow \
                 loopback downloads: CHATSINK_DOWNLOAD_ALLOW_HOSTS=127.0.0.1 CHATSINK_DOWNLOAD_ALLOW_HTTP=true",
                args.wait_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "session {session}: {} messages served to chatsink from {}",
        args.messages, storage.url
    );
    let generated = std::fs::read_to_string(args.data_dir.join(crate::startup::READ_TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let token = args
        .read_token
        .iter()
        .map(|t| t.trim().to_owned())
        .find(|t| !t.is_empty())
        .or(generated);
    let Some(token) = token else {
        println!(
            "not waiting for the load: no read token. Pass --read-token (or CHATSINK_READ_TOKENS) \
             with one of the service's, or --data-dir with its data dir (it writes read-token there)"
        );
        return Ok(ExitCode::SUCCESS);
    };
    {
        let loaded = tokio::time::timeout(
            Duration::from_secs(args.wait_secs),
            wait_until_queryable(&client, &args.url, &token, &session),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "session {session} was not loaded within {} s",
                args.wait_secs
            )
        })??;
        println!("session {session} is loaded and queryable ({loaded})");
    }
    println!(
        "query it: curl -H 'Authorization: Bearer {token}' '{}/v1/messages?session={session}&limit=5'",
        args.url.trim_end_matches('/')
    );
    Ok(ExitCode::SUCCESS)
}

/// Why a test delivery cannot go through, and every setting both sides need for it, in one
/// message (with a fresh secret to use).
fn needs_settings(url: &str, why: &str) -> String {
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_hex(24))
    );
    format!(
        "{why}. A test delivery needs the service at {url} to accept a Standard Webhooks secret and \
         to download from loopback, and this command to sign with the same secret. Start it with\n  \
         CHATSINK_HMAC_SECRETS={secret} CHATSINK_DOWNLOAD_ALLOW_HOSTS=127.0.0.1 \
         CHATSINK_DOWNLOAD_ALLOW_HTTP=true chatsink serve\nand run\n  \
         CHATSINK_HMAC_SECRETS={secret} chatsink send-test-webhook --url {url}"
    )
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.keep {
        std::fs::create_dir_all(dir).with_context(|| format!("--keep {}", dir.display()))?;
        let result = run_demo(&args, dir).await;
        println!(
            "the demo's archive is kept in {0}: CHATSINK_DATABASE={0}/chatsink.db CHATSINK_DATA_DIR={0}/data chatsink serve",
            dir.display()
        );
        return result;
    }
    let dir = std::env::temp_dir().join(format!("chatsink-demo-{}", random_hex(4)));
    std::fs::create_dir_all(&dir)?;
    let result = run_demo(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_demo(args: &DemoArgs, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let token = random_hex(16);
    let listen = args.listen.to_string();
    let database = dir.join("chatsink.db").display().to_string();
    let data_dir = dir.join("data").display().to_string();
    let cli = <Cli as clap::Parser>::try_parse_from([
        "chatsink",
        "serve",
        "--listen",
        &listen,
        "--database",
        &database,
        "--data-dir",
        &data_dir,
        "--hmac-secrets",
        &secret,
        "--read-tokens",
        &token,
        "--download-allow-hosts",
        "127.0.0.1",
        "--download-allow-http",
        "true",
    ])?;
    let Command::Serve(serve) = cli.command else {
        unreachable!("parsed a serve command")
    };
    let app = Application::build(serve.settings()?).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_handle();
    let server = tokio::spawn(app.run_until_stopped());

    let session = format!("demo-{}", random_hex(4));
    println!(
        "chatsink demo: serving on {base} with a temporary database in {}",
        dir.display()
    );
    let (dump, generated) = generated_dump(&session, args.messages);
    let storage = DumpServer::start(&format!("{session}.csv"), dump).await?;
    println!(
        "a loopback server plays RealtimeKit's storage: {} ({} generated messages)",
        storage.url, args.messages
    );
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (status, answer) = post_signed(
        &client,
        &base,
        &key,
        dumpgen::chat_synced_body_for(&generated, &storage.url),
    )
    .await?;
    println!("sent a signed meeting.chatSynced: {status} {answer}");
    if status != 200 {
        bail!("the demo delivery was refused");
    }
    let loaded = wait_until_queryable(&client, &base, &token, &session).await?;
    println!(
        "session {session} loaded and queryable {} ms after the webhook ({loaded})\n",
        started.elapsed().as_millis()
    );

    println!("What an analyst sees (TOKEN={token}):\n");
    for path in [
        format!("/v1/sessions/{session}"),
        format!("/v1/messages?session={session}&limit=2"),
        "/v1/messages?type=image&limit=1".to_owned(),
        "/v1/messages?pinned=true&limit=1".to_owned(),
        "/v1/messages?q=roadmap&limit=1".to_owned(),
        "/v1/users?limit=3".to_owned(),
    ] {
        println!("$ curl -H \"Authorization: Bearer $TOKEN\" '{base}{path}'");
        let body: serde_json::Value = client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        println!("{}\n", serde_json::to_string_pretty(&body)?);
    }
    println!(
        "$ curl -H \"Authorization: Bearer $TOKEN\" '{base}/v1/messages?session={session}&format=csv' > messages.csv\n"
    );
    println!(
        "In a browser: open {base}/ui/ and paste the read token {token}\n(its transcript: {base}/ui/sessions/{session})\n"
    );
    if args.once {
        stop.stop(true).await;
    } else {
        println!("serving on {base} until Ctrl-C (the database is removed on exit)");
    }
    server.await??;
    Ok(ExitCode::SUCCESS)
}

async fn wait_until_queryable(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    session: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body: serde_json::Value = client
            .get(format!(
                "{}/v1/sessions/{session}",
                base.trim_end_matches('/')
            ))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await
            .unwrap_or_default();
        if body["status"] == "loaded" {
            return Ok(format!("{} messages", body["messageCounts"]["total"]));
        }
        if Instant::now() > deadline {
            bail!("the demo session was not loaded within 60 s: {body}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `chatsink probe URL`: 0 on a 2xx answer.
pub async fn probe(url: &str) -> anyhow::Result<ExitCode> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    println!("{url}: {status}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
