//! Bearer tokens for `/v1`: every configured read token is compared in constant time.

use super::error::ApiError;
use super::ApiState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

pub fn token_matches(state: &ApiState, presented: &str) -> bool {
    // Check every token (no early exit) so timing says nothing about which one matched.
    state
        .read_tokens
        .iter()
        .fold(subtle::Choice::from(0), |found, token| {
            found | token.expose_secret().as_bytes().ct_eq(presented.as_bytes())
        })
        .into()
}

pub async fn require_read_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let allowed = request
        .app_data::<web::Data<ApiState>>()
        .is_some_and(|state| !presented.is_empty() && token_matches(state, &presented));
    if allowed {
        Ok(next.call(request).await?.map_into_left_body())
    } else {
        let response = ApiError::Unauthorized.error_response();
        Ok(request.into_response(response).map_into_right_body())
    }
}
