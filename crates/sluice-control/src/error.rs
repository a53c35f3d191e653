use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_log::LogError;
use sluice_store::StoreError;

/// Admin API errors: `{"code","message","fields"?}`.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            fields: vec![field.into()],
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::Conflict { .. } => Self {
                fields: vec!["name".into()],
                ..Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            },
            StoreError::Storage(_) => {
                tracing::error!(error = %e, "store error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store cannot be read right now; retry",
                )
            }
        }
    }
}

impl From<LogError> for AdminError {
    fn from(e: LogError) -> Self {
        tracing::error!(error = %e, "log error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the event log cannot be read right now; retry",
        )
    }
}

/// The admin API's error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code (`not_found`, `conflict`, `invalid`, `unauthorized`, …).
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The offending fields, for 409 and 422.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            fields: self.fields,
        })
        .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
