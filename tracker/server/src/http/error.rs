//! Errors of the HTTP API as JSON bodies: `{"success": false, "error": {"code", "name",
//! "message"}}` with the protocol's codes (seed 000's 1001-1005 and §1.5's others) and an HTTP
//! status that says the same to clients that only look at the status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracker_proto::ErrorCode;

use crate::handler::Refused;

/// A refused HTTP request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    /// The error with the status that fits `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: status_of(code),
            code,
            message: message.into(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn bad_field(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadField, message)
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::new(r.code, r.text)
    }
}

/// The HTTP status of each protocol error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        PeerNotFound | FileNotFound => StatusCode::NOT_FOUND,
        HashMismatch => StatusCode::CONFLICT,
        ConnectionRefused | Forbidden => StatusCode::FORBIDDEN,
        TooLong => StatusCode::PAYLOAD_TOO_LARGE,
        CookieRequired => StatusCode::UNAUTHORIZED,
        CapacityExceeded | RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ChunkNotAvailable | BadRequest | UnknownFlag | MissingField | ExtraField | BadNumber
        | BadFileName | BadAddress | BadChunks | NotUtf8 | BadField => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": {
                "code": self.code.code(),
                "name": self.code.name(),
                "message": self.message,
            }
        });
        let mut response = (self.status, Json(body)).into_response();
        // For /metrics: errors are counted by code where the answer leaves.
        response.extensions_mut().insert(self.code);
        response
    }
}
