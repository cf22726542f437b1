//! Property tests over the parsers that face the outside: the signature headers, the webhook
//! JSON, the dump CSV and the download URL policy. `cargo test` runs a few hundred cases each;
//! `benches/fuzz.sh` runs them for longer. Failing inputs proptest finds are saved under
//! `proptest-regressions/` and replayed first on every run; the ones found so far are also
//! spelled out as plain tests at the end.

use crate::helpers::*;
use chatsink::config::{RsaKeySource, VerifySettings};
use chatsink::domain::parse_event;
use chatsink::domain::HostPattern;
use chatsink::domain::LoadRow;
use chatsink::ingest::{DumpReader, UrlPolicy};
use chatsink::webhook::{sign_hmac, verify_hmac, DeliveryHeaders, HmacError, Verifier};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(&VerifySettings {
        rsa_key: RsaKeySource::Key(rsa::RsaPublicKey::from(&rsa_keys().0)),
        dyte_key: RsaKeySource::Key(rsa::RsaPublicKey::from(&rsa_keys().0)),
        key_refetch_interval: std::time::Duration::from_secs(60),
        hmac_keys: vec![secrecy::SecretSlice::from(HMAC_KEY.to_vec())],
        insecure_skip_verify: false,
    })
    .unwrap()
}

/// Header-ish text: printable ASCII plus the separators the parsers split on.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,120}",
        "(v1,[A-Za-z0-9+/=]{0,60} ?){0,4}",
        "v[0-9],[A-Za-z0-9+/]{43}=",
    ]
}

proptest! {

    #[test]
    fn hmac_headers_never_panic(
        id in proptest::option::of("[ -~]{0,40}"),
        timestamp in proptest::option::of(prop_oneof![
            "[ -~]{0,24}",
            any::<i64>().prop_map(|t| t.to_string()),
        ]),
        signature in header_text(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        now in any::<i64>(),
    ) {
        let result = verify_hmac(&[HMAC_KEY.to_vec()], id.as_deref(), timestamp.as_deref(), &signature, &body, now);
        prop_assert!(result.is_err());
    }

    /// Inside the time window, so every case reaches the signature comparison: only the right
    /// signature passes (random ones, well-formed or not, and the right one for another key or
    /// another body are refused as a mismatch or as no signature).
    #[test]
    fn inside_the_window_only_the_right_signature_passes(
        id in "[a-zA-Z0-9_]{1,30}",
        skew in -300i64..=300,
        signature in prop_oneof![
            header_text(),
            proptest::collection::vec(any::<u8>(), 32).prop_map(|b| {
                use base64::Engine;
                format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(b))
            }),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let now = 1_780_000_000;
        let timestamp = (now + skew).to_string();
        let result = verify_hmac(&[HMAC_KEY.to_vec()], Some(&id), Some(&timestamp), &signature, &body, now);
        prop_assert!(
            matches!(result, Err(HmacError::Mismatch | HmacError::NoSignature)),
            "{:?}", result
        );
        let other_key = sign_hmac(HMAC_KEY_2, &id, now + skew, &body);
        prop_assert_eq!(
            verify_hmac(&[HMAC_KEY.to_vec()], Some(&id), Some(&timestamp), &other_key, &body, now),
            Err(HmacError::Mismatch)
        );
        let right = sign_hmac(HMAC_KEY, &id, now + skew, &body);
        prop_assert_eq!(
            verify_hmac(&[HMAC_KEY.to_vec()], Some(&id), Some(&timestamp), &right, &body, now),
            Ok(())
        );
    }

    /// The window alone: the right signature, at any distance from now.
    #[test]
    fn the_time_window_is_five_minutes_either_way(
        skew in prop_oneof![-100_000i64..100_000, any::<i32>().prop_map(i64::from)],
    ) {
        let now = 1_780_000_000;
        let signature = sign_hmac(HMAC_KEY, "msg_1", now + skew, b"{}");
        let result = verify_hmac(&[HMAC_KEY.to_vec()], Some("msg_1"), Some(&(now + skew).to_string()), &signature, b"{}", now);
        if skew.abs() <= 300 {
            prop_assert_eq!(result, Ok(()));
        } else {
            prop_assert_eq!(result, Err(HmacError::OutsideTolerance));
        }
    }

    #[test]
    fn a_real_hmac_signature_passes_within_tolerance_and_fails_on_any_change(
        id in "[a-zA-Z0-9_]{1,30}",
        skew in -400i64..400,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        flip in any::<prop::sample::Index>(),
    ) {
        let now = 1_780_000_000;
        let timestamp = now + skew;
        let signature = sign_hmac(HMAC_KEY, &id, timestamp, &body);
        let ok = verify_hmac(&[HMAC_KEY_2.to_vec(), HMAC_KEY.to_vec()], Some(&id), Some(&timestamp.to_string()), &signature, &body, now);
        prop_assert_eq!(ok.is_ok(), skew.abs() <= 300);
        if !body.is_empty() && skew.abs() <= 300 {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            prop_assert!(verify_hmac(&[HMAC_KEY.to_vec()], Some(&id), Some(&timestamp.to_string()), &signature, &changed, now).is_err());
        }
    }

    #[test]
    fn rsa_and_mixed_headers_never_panic_and_never_pass_unsigned(
        rtk in proptest::option::of(header_text()),
        dyte in proptest::option::of(header_text()),
        webhook_signature in proptest::option::of(header_text()),
        webhook_timestamp in proptest::option::of("[0-9-]{0,12}"),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let headers = DeliveryHeaders {
            rtk_signature: rtk,
            rtk_uuid: None,
            dyte_signature: dyte,
            dyte_uuid: None,
            webhook_id: Some("msg_1".into()),
            webhook_timestamp,
            webhook_signature,
            rtk_webhook_id: None,
        };
        let result = runtime().block_on(verifier().verify(&headers, &body));
        prop_assert!(result.is_err());
    }

    #[test]
    fn webhook_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_event(&body);
    }

    #[test]
    fn chat_synced_needs_exactly_its_two_fields(
        session in proptest::option::of("[a-zA-Z0-9-]{1,40}"),
        url in proptest::option::of("https://[a-z]{1,10}\\.example\\.com/[a-z0-9]{0,20}\\.csv"),
        expiry in proptest::option::of(prop_oneof![
            "[ -~]{0,30}",
            Just("2026-06-10T10:30:00.000Z".to_owned()),
        ]),
        title in proptest::option::of(any::<String>()),
        extra in proptest::collection::hash_map("[a-z]{1,8}", any::<i32>(), 0..4),
    ) {
        let mut object = serde_json::Map::new();
        object.insert("event".into(), "meeting.chatSynced".into());
        if let Some(s) = &session { object.insert("sessionId".into(), s.clone().into()); }
        if let Some(u) = &url { object.insert("chatDownloadUrl".into(), u.clone().into()); }
        if let Some(e) = &expiry { object.insert("chatDownloadUrlExpiry".into(), e.clone().into()); }
        if let Some(t) = &title { object.insert("title".into(), t.clone().into()); }
        for (k, v) in extra {
            object.entry(k).or_insert(v.into());
        }
        let body = serde_json::to_vec(&object).unwrap();
        match parse_event(&body) {
            Ok(event) => {
                let synced = event.chat_synced.expect("a chatSynced event");
                prop_assert_eq!(Some(synced.session_id.as_str().to_owned()), session);
                prop_assert_eq!(Some(synced.chat_download_url), url);
            }
            Err(e) => {
                prop_assert!(session.is_none() || url.is_none(), "{e}");
                let expected_field = if session.is_none() { "sessionId" } else { "chatDownloadUrl" };
                prop_assert_eq!(e.field, expected_field);
            }
        }
    }

    #[test]
    fn arbitrary_dump_bytes_never_panic_and_lines_only_grow(
        header in prop_oneof![Just(DUMP_HEADER.to_owned()), "[ -~]{0,80}"],
        body in proptest::collection::vec(
            prop_oneof![
                Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r'), Just(0u8), Just(0xffu8), any::<u8>()
            ],
            0..600,
        ),
    ) {
        let mut input = format!("{header}\n").into_bytes();
        input.extend_from_slice(&body);
        let newlines = input.iter().filter(|b| **b == b'\n').count() as u64;
        if let Ok(mut reader) = DumpReader::new(&input[..]) {
            let mut last_line = 0;
            for row in reader.by_ref() {
                if let LoadRow::Rejected(r) = row {
                    prop_assert!(r.line >= last_line && r.line <= newlines + 1, "line {} of {}", r.line, newlines);
                    last_line = r.line;
                }
            }
            let _ = reader.error();
        }
    }

    #[test]
    fn any_message_written_as_csv_reads_back_exactly(
        rows in proptest::collection::vec(
            (
                "[a-zA-Z0-9-]{1,20}",
                any::<String>().prop_filter("ids are trimmed", |s| s.trim() == s && !s.is_empty()),
                any::<String>(),
                any::<bool>(),
                any::<bool>(),
                0i64..4_000_000_000_000,
                any::<bool>(),
            ),
            1..20,
        ),
    ) {
        let mut csv = format!("{DUMP_HEADER}\r\n");
        for (i, (id, user, text, pinned, edited, ms, crlf)) in rows.iter().enumerate() {
            let time = chatsink::domain::Timestamp::from_millis(*ms).to_rfc3339();
            let line = csv_row(&[
                &format!("{id}-{i}"), user, "fuzz-session", "m", "Ann",
                if *pinned { "true" } else { "false" },
                if *edited { "true" } else { "false" },
                "TEXT_MESSAGE", text, &time,
            ]);
            if *crlf {
                csv.push_str(&line);
            } else {
                csv.push_str(line.strip_suffix("\r\n").unwrap());
                csv.push('\n');
            }
        }
        let parsed: Vec<LoadRow> = DumpReader::new(csv.as_bytes()).unwrap().collect();
        prop_assert_eq!(parsed.len(), rows.len());
        for (row, (i, (id, user, text, pinned, edited, ms, _))) in parsed.iter().zip(rows.iter().enumerate()) {
            let LoadRow::Message(m) = row else {
                return Err(TestCaseError::fail(format!("rejected: {row:?}")));
            };
            prop_assert_eq!(&m.id, &format!("{id}-{i}"));
            prop_assert_eq!(&m.user_id, user);
            prop_assert_eq!(m.text(), Some(text.as_str()));
            prop_assert_eq!((m.pinned, m.edited), (*pinned, *edited));
            prop_assert_eq!(m.created.millis(), *ms);
        }
    }

    #[test]
    fn host_patterns_and_urls_never_panic(pattern in "[ -~]{0,40}", url in "[ -~]{0,80}") {
        if let (Ok(pattern), Ok(url)) = (HostPattern::parse(&pattern), url::Url::parse(&url)) {
            let _ = UrlPolicy::new(&[pattern], true).check_url(&url);
        }
    }

    #[test]
    fn only_listed_hosts_over_https_are_allowed(
        label in "[a-z][a-z0-9]{0,10}",
        other in "[a-z][a-z0-9]{0,10}",
        scheme in prop_oneof![Just("https"), Just("http"), Just("ftp"), Just("wss")],
        port in proptest::option::of(1u16..65535),
        ip in any::<[u8; 4]>(),
    ) {
        let patterns = ["*.storage.example.com", "api.example.org"].map(|p| HostPattern::parse(p).unwrap());
        let policy = UrlPolicy::new(&patterns, false);
        let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
        let sub = url::Url::parse(&format!("{scheme}://{label}.storage.example.com{port_part}/x.csv")).unwrap();
        let allowed = scheme == "https";
        prop_assert_eq!(policy.check_url(&sub).is_ok(), allowed);
        // A suffix that only looks like the domain, and unlisted hosts, never pass.
        let lookalike = url::Url::parse(&format!("https://{label}storage.example.com/x")).unwrap();
        prop_assert!(policy.check_url(&lookalike).is_err());
        if other != "api" {
            let unlisted = url::Url::parse(&format!("https://{other}.example.org/x")).unwrap();
            prop_assert!(policy.check_url(&unlisted).is_err());
        }
        let literal = url::Url::parse(&format!(
            "https://{}.{}.{}.{}/x", ip[0], ip[1], ip[2], ip[3]
        )).unwrap();
        prop_assert!(policy.check_url(&literal).is_err(), "unlisted IP literal {literal}");
    }
}

// Reproducers of what the properties above found, kept as plain tests.

#[test]
fn an_extreme_timestamp_is_rejected_not_an_overflow() {
    // Found by `hmac_headers_never_panic_...`: `now - timestamp` overflowed i64.
    for timestamp in [i64::MIN, i64::MAX] {
        let result = verify_hmac(
            &[HMAC_KEY.to_vec()],
            Some("msg_1"),
            Some(&timestamp.to_string()),
            "v1,AAAA",
            b"{}",
            1_780_000_000,
        );
        assert!(result.is_err());
    }
}

/// The Standard Webhooks specification's published example, so the signing scheme is checked
/// against someone else's implementation and not only against chatsink's own signer.
#[test]
fn the_standard_webhooks_known_answer_vector_verifies() {
    use base64::Engine;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let (id, timestamp) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330);
    let body = br#"{"test": 2432232314}"#;
    let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_eq!(sign_hmac(&key, id, timestamp, body), expected);
    assert_eq!(
        verify_hmac(
            std::slice::from_ref(&key),
            Some(id),
            Some("1614265330"),
            expected,
            body,
            timestamp
        ),
        Ok(())
    );
    // Several signatures in one header, the right one last; a wrong version prefix is ignored.
    let header = format!("v1,Zm9v v2,{} {expected}", &expected[3..]);
    assert_eq!(
        verify_hmac(
            std::slice::from_ref(&key),
            Some(id),
            Some("1614265330"),
            &header,
            body,
            timestamp
        ),
        Ok(())
    );
    assert_eq!(
        verify_hmac(
            &[key],
            Some(id),
            Some("1614265330"),
            &format!("v2,{}", &expected[3..]),
            body,
            timestamp
        ),
        Err(HmacError::NoSignature)
    );
}
