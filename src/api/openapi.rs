//! The OpenAPI 3 document at `/openapi.json`: routes and bodies from the handlers' annotations,
//! query parameters from the same table the parser validates against.

use super::admin::{self, AuditList, AuditView, ErasedView};
use super::params::{self, ParamKind, ParamSpec};
use super::routes;
use super::views::*;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Required, Schema};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatsink query API",
        description = "Archived RealtimeKit meeting chat. Every /v1 route needs `Authorization: Bearer <token>`; a token scoped to meetings sees only those. The erasure routes and the audit log need an admin token."
    ),
    paths(
        routes::list_messages,
        routes::session_messages,
        routes::user_messages,
        routes::list_sessions,
        routes::get_session,
        routes::session_rejected,
        routes::list_users,
        routes::stats,
        admin::erase_user,
        admin::erase_message,
        admin::erase_session,
        admin::audit
    ),
    components(schemas(
        MessageView,
        MessageList,
        SessionView,
        SessionList,
        Organizer,
        MessageCounts,
        UserView,
        UserList,
        StatsView,
        DayCount,
        TopUser,
        PinnedCounts,
        RejectedRowView,
        RejectedList,
        ErasedView,
        AuditView,
        AuditList
    ))
)]
struct ApiDoc;

/// Every documented route with the parameters it accepts.
pub const ROUTE_PARAMS: &[(&str, &[ParamSpec])] = &[
    ("/v1/messages", params::MESSAGE_PARAMS),
    ("/v1/sessions/{id}/messages", params::SESSION_MESSAGE_PARAMS),
    ("/v1/users/{id}/messages", params::USER_MESSAGE_PARAMS),
    ("/v1/sessions", params::LIST_PARAMS),
    ("/v1/sessions/{id}", &[]),
    ("/v1/sessions/{id}/rejected", params::LIST_PARAMS),
    ("/v1/users", params::USER_LIST_PARAMS),
    ("/v1/stats", params::STATS_PARAMS),
    ("/v1/audit", params::AUDIT_PARAMS),
    // Erasure only (DELETE, no parameters).
    ("/v1/users/{id}", &[]),
    ("/v1/messages/{id}", &[]),
];

fn schema_of(spec: &ParamSpec) -> Schema {
    let one: Schema = match spec.kind {
        ParamKind::Text => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(params::MAX_TEXT_BYTES))
            .into(),
        ParamKind::Bool => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        // A date-time, a date or epoch digits (the description says which): no one format or
        // pattern states that set exactly, so the schema claims no more than a string.
        ParamKind::Time => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .into(),
        ParamKind::Integer { min, max } => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
            .into(),
        ParamKind::Choice(choices) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(choices.iter().copied()))
            .into(),
    };
    if spec.repeatable {
        ArrayBuilder::new()
            .items(utoipa::openapi::RefOr::T(one))
            .max_items(Some(params::MAX_REPEATS))
            .into()
    } else {
        one
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (path, specs) in ROUTE_PARAMS {
        let Some(item) = doc.paths.paths.get_mut(*path) else {
            continue;
        };
        let Some(operation) = item.get.as_mut() else {
            continue;
        };
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        for spec in *specs {
            parameters.push(
                ParameterBuilder::new()
                    .name(spec.name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(spec.description))
                    .schema(Some(schema_of(spec)))
                    .explode(Some(spec.repeatable))
                    .build(),
            );
        }
    }
    // Any request can be refused before routing (src/head_limit.rs), and any route with its
    // wrong method is a 405.
    for item in doc.paths.paths.values_mut() {
        for operation in [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()]
            .into_iter()
            .flatten()
        {
            for (status, description) in [
                ("405", "This route does not answer that method"),
                ("414", "The request line is longer than 65534 bytes"),
                ("431", "The request's headers are longer than 98304 bytes"),
            ] {
                operation.responses.responses.insert(
                    status.to_owned(),
                    utoipa::openapi::RefOr::T(
                        utoipa::openapi::ResponseBuilder::new()
                            .description(description)
                            .build(),
                    ),
                );
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}
