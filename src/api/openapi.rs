//! The OpenAPI 3 document at `/openapi.json`: routes and bodies from the handlers' annotations,
//! query parameters from the same table the parser validates against.

use super::params::{self, ParamKind, ParamSpec};
use super::routes;
use super::views::*;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Required, Schema};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatsink query API",
        description = "Archived RealtimeKit meeting chat. Every /v1 route needs `Authorization: Bearer <token>`."
    ),
    paths(
        routes::list_messages,
        routes::session_messages,
        routes::user_messages,
        routes::list_sessions,
        routes::get_session,
        routes::session_rejected,
        routes::list_users,
        routes::stats
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
        RejectedList
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
];

fn schema_of(spec: &ParamSpec) -> Schema {
    let one: Schema = match spec.kind {
        ParamKind::Text => ObjectBuilder::new().schema_type(Type::String).into(),
        ParamKind::Bool => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        ParamKind::Time => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
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
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}
