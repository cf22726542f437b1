//! Secrets a client puts in a URL never reach a log or the audit log: before any other layer
//! (the request log, the audit log, the handlers) sees a request, the values of token-like query
//! parameters are replaced with `REDACTED`. Tokens are only ever read from the `Authorization`
//! header, so nothing a route does needs them.
//!
//! Redacted: every parameter whose name says it holds a secret (`access_token`, `api_key`,
//! `password`, ...), and `token` (the audit log's filter by a token's *name*) when its value is a
//! secret chatsink accepts: one of the environment's tokens, or one made by `token create`.

use super::ApiState;
use crate::governance::tokens::PREFIX;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use secrecy::ExposeSecret;
use std::borrow::Cow;
use subtle::ConstantTimeEq;

pub const REDACTED: &str = "REDACTED";

/// Whether a parameter of this name holds a secret whatever its value.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    if name == "token" {
        return false;
    }
    ["token", "secret", "passw", "apikey", "api_key", "signature"]
        .iter()
        .any(|word| name.contains(word))
        || ["key", "auth", "authorization"].contains(&name.as_str())
        || name.ends_with("_key")
}

/// `query` with the value of every secret-bearing parameter replaced by [`REDACTED`]; the other
/// parameters are kept byte for byte. `is_secret` says whether a `token=` value is a secret.
pub fn redact_query<'q>(query: &'q str, is_secret: impl Fn(&str) -> bool) -> Cow<'q, str> {
    let mut changed = false;
    let pairs: Vec<Cow<'q, str>> = query
        .split('&')
        .map(|pair| {
            let (raw_name, _) = pair.split_once('=').unwrap_or((pair, ""));
            let Some((name, value)) = url::form_urlencoded::parse(pair.as_bytes()).next() else {
                return Cow::Borrowed(pair);
            };
            let secret =
                secret_name(&name) || name.eq_ignore_ascii_case("token") && is_secret(value.trim());
            if secret && value.as_ref() != REDACTED {
                changed = true;
                Cow::Owned(format!("{raw_name}={REDACTED}"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    if changed {
        Cow::Owned(pairs.join("&"))
    } else {
        Cow::Borrowed(query)
    }
}

impl ApiState {
    /// Whether `value` is a secret this service accepts (or one `token create` could have made).
    fn is_secret(&self, value: &str) -> bool {
        value.starts_with(PREFIX)
            || self
                .read_tokens
                .iter()
                .chain(&self.admin_tokens)
                .fold(false, |found, token| {
                    found | bool::from(token.expose_secret().as_bytes().ct_eq(value.as_bytes()))
                })
    }
}

/// The outermost layer: rewrites the request's query with its secrets redacted.
pub async fn redact_secrets(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request.app_data::<web::Data<ApiState>>().cloned();
    if let (Some(state), Some(query)) = (state, request.uri().query()) {
        if let Cow::Owned(redacted) = redact_query(query, |v| state.is_secret(v)) {
            let path = request.uri().path();
            if let Ok(uri) = format!("{path}?{redacted}").parse() {
                request.head_mut().uri = uri;
            }
        }
    }
    next.call(request).await
}

#[cfg(test)]
mod tests {
    use super::{redact_query, REDACTED};

    #[test]
    fn secret_parameters_are_redacted_and_the_rest_kept_byte_for_byte() {
        let secret = |v: &str| v == "s3cret" || v.starts_with("chatsink_");
        let cases = [
            ("limit=5&q=a%20b", "limit=5&q=a%20b"),
            ("access_token=abc&limit=5", "access_token=REDACTED&limit=5"),
            ("Access-Token=abc", "Access-Token=REDACTED"),
            (
                "api_key=1&apiKey=2&password=3&client_secret=4",
                "api_key=REDACTED&apiKey=REDACTED&password=REDACTED&client_secret=REDACTED",
            ),
            ("token=s3cret", "token=REDACTED"),
            ("token=chatsink%5Fabc", "token=REDACTED"),
            (
                "token=ci-reader&since=2026-12-01",
                "token=ci-reader&since=2026-12-01",
            ),
            ("monkey=1&keyword=2", "monkey=1&keyword=2"),
            ("x&token", "x&token"),
        ];
        for (query, expected) in cases {
            assert_eq!(redact_query(query, secret), expected, "{query}");
        }
        assert_eq!(redact_query("token=REDACTED", secret), "token=REDACTED");
        assert!(!redact_query("a=1&bearer_token=zz", secret).contains("zz"));
        assert!(redact_query("a=1&bearer_token=zz", secret).contains(REDACTED));
    }
}
