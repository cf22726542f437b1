//! Who is asking: every `/v1` request's bearer token becomes a [`Reader`], or the request is a
//! 401. Tokens from the environment (`CHATSINK_READ_TOKENS`, `CHATSINK_ADMIN_TOKENS`) are
//! compared in constant time; tokens made by `chatsink token create` are looked up by their hash
//! on every request, so a revocation holds from the next request on, on every instance.

use super::error::ApiError;
use super::ApiState;
use crate::domain::Reader;
use crate::governance::{hash_secret, tokens::PREFIX};
use crate::store::StoreError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The 1-based place of `presented` among `tokens`. Every token is compared (no early exit),
/// so timing says nothing about which one matched.
fn position(tokens: &[SecretString], presented: &str) -> Option<usize> {
    tokens.iter().enumerate().fold(None, |found, (i, token)| {
        let same: bool = token
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        found.or(same.then_some(i + 1))
    })
}

impl ApiState {
    /// The reader a presented token names: none for a token that is unknown, revoked or expired.
    pub async fn reader_for(&self, presented: &str) -> Result<Option<Reader>, StoreError> {
        let from_env = |variable: &str, i: usize, admin: bool| Reader {
            name: format!("{variable}#{i}"),
            admin,
            meetings: None,
        };
        if let Some(i) = position(&self.admin_tokens, presented) {
            return Ok(Some(from_env("CHATSINK_ADMIN_TOKENS", i, true)));
        }
        if let Some(i) = position(&self.read_tokens, presented) {
            return Ok(Some(from_env("CHATSINK_READ_TOKENS", i, false)));
        }
        // Only chatsink's own tokens are looked up: random strings cost no query.
        if !presented.starts_with(PREFIX) {
            return Ok(None);
        }
        let Some((token, now)) = self.store.token_by_hash(&hash_secret(presented)).await? else {
            return Ok(None);
        };
        if let Some(why) = &token.unreadable_scope {
            tracing::warn!(
                token = %token.name,
                why = %why,
                "a token whose scope cannot be read is refused; revoke it and make a new one"
            );
        }
        Ok(token.usable_at(now).then(|| token.reader()))
    }
}

fn bearer(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default()
        .to_owned()
}

/// Admits a request with a usable token, with its [`Reader`] in the request's extensions.
pub async fn require_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let presented = bearer(&request);
    let reader = match request.app_data::<web::Data<ApiState>>().cloned() {
        Some(state) if !presented.is_empty() => state.reader_for(&presented).await,
        _ => Ok(None),
    };
    let refused = match reader {
        Ok(Some(reader)) => {
            request.extensions_mut().insert(reader);
            return Ok(next.call(request).await?.map_into_left_body());
        }
        Ok(None) => ApiError::Unauthorized,
        Err(e) => ApiError::Storage(e),
    };
    Ok(request
        .into_response(refused.error_response())
        .map_into_right_body())
}

impl Reader {
    /// Deleting routes and the audit log are for admin tokens only.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
