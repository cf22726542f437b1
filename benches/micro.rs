//! Micro-benchmarks: dump row parsing, webhook event parsing, signature verification, cursor
//! encoding.
//! `cargo bench --bench micro`

use base64::Engine;
use chatsink::api::Cursor;
use chatsink::config::{RsaKeySource, VerifySettings};
use chatsink::domain::{After, MessageFilter, Order};
use chatsink::dumpgen;
use chatsink::ingest::DumpReader;
use chatsink::webhook::{sign_hmac, verify_hmac, DeliveryHeaders, Verifier};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

fn parse_rows(c: &mut Criterion) {
    let mut dump = Vec::new();
    let rows = dumpgen::write_dump(&mut dump, 7, "bench-", 5, 2000).unwrap();
    let mut group = c.benchmark_group("dump");
    group.throughput(Throughput::Elements(rows));
    group.bench_function(BenchmarkId::new("parse_rows", rows), |b| {
        b.iter(|| DumpReader::new(&dump[..]).unwrap().count())
    });
    group.finish();
}

/// A `meeting.chatSynced` body as the system bench sends it, parsed as the webhook does.
fn parse_event(c: &mut Criterion) {
    let body = dumpgen::chat_synced_body(
        "3f1c2d4e-aaaa-4bbb-8ccc-0123456789ab",
        "https://bucket.s3.amazonaws.com/chat/3f1c2d4e.csv?X-Amz-Signature=abc",
    );
    c.bench_function("event/parse_chat_synced", |b| {
        b.iter(|| chatsink::domain::parse_event(&body).unwrap())
    });
}

fn verify_signatures(c: &mut Criterion) {
    let body = br#"{"event":"meeting.chatSynced","sessionId":"s-1","meetingId":"m-1","chatDownloadUrl":"https://example.com/x.csv","chatDownloadUrlExpiry":"2099-01-01T00:00:00Z"}"#;
    let key = b"bench-secret-key-0123456789abcdef".to_vec();
    let now = 1_780_000_000;
    let hmac = sign_hmac(&key, "msg_1", now, body);
    c.bench_function("verify/hmac", |b| {
        b.iter(|| {
            verify_hmac(
                std::slice::from_ref(&key),
                Some("msg_1"),
                Some(&now.to_string()),
                &hmac,
                body,
                now,
            )
            .unwrap()
        })
    });

    let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = RsaPublicKey::from(&private);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(SigningKey::<Sha256>::new(private).sign(body).to_bytes());
    let verifier = Verifier::new(&VerifySettings {
        rsa_key: RsaKeySource::Key(public.clone()),
        dyte_key: RsaKeySource::Key(public),
        key_refetch_interval: std::time::Duration::from_secs(60),
        hmac_keys: vec![],
        insecure_skip_verify: false,
    })
    .unwrap();
    let headers = DeliveryHeaders {
        rtk_signature: Some(signature),
        ..DeliveryHeaders::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("verify/rsa-2048", |b| {
        b.iter(|| runtime.block_on(verifier.verify(&headers, body)).unwrap())
    });
}

fn cursors(c: &mut Criterion) {
    let filter = MessageFilter {
        users: vec!["user-00042".into()],
        kinds: vec!["text".into()],
        pinned: Some(true),
        ..MessageFilter::default()
    };
    let cursor = Cursor::for_messages(&filter, Order::Asc);
    let after = After {
        created_ms: 1_780_000_123_456,
        seq: 987_654,
    };
    let encoded = cursor.encode_after(after);
    c.bench_function("cursor/encode", |b| b.iter(|| cursor.encode_after(after)));
    c.bench_function("cursor/decode", |b| {
        b.iter(|| cursor.decode_after(&encoded).unwrap())
    });
}

criterion_group!(benches, parse_rows, parse_event, verify_signatures, cursors);
criterion_main!(benches);
