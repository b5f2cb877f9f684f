//! Error codes carried by `ERROR` lines, and the typed reasons a datagram fails to parse.

use std::fmt;

use thiserror::Error;

use crate::types::{
    AddrError, ChunkRangesError, FileIdError, FileInfoError, FileNameError, HexError,
};

/// The code and NAME of an `ERROR <code> <NAME> <text>` line (protocol.txt §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    PeerNotFound,
    FileNotFound,
    ChunkNotAvailable,
    HashMismatch,
    ConnectionRefused,
    BadRequest,
    UnknownFlag,
    MissingField,
    ExtraField,
    BadNumber,
    BadFileName,
    BadAddress,
    BadChunks,
    TooLong,
    NotUtf8,
    BadField,
    CookieRequired,
    Forbidden,
    CapacityExceeded,
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::PeerNotFound,
        ErrorCode::FileNotFound,
        ErrorCode::ChunkNotAvailable,
        ErrorCode::HashMismatch,
        ErrorCode::ConnectionRefused,
        ErrorCode::BadRequest,
        ErrorCode::UnknownFlag,
        ErrorCode::MissingField,
        ErrorCode::ExtraField,
        ErrorCode::BadNumber,
        ErrorCode::BadFileName,
        ErrorCode::BadAddress,
        ErrorCode::BadChunks,
        ErrorCode::TooLong,
        ErrorCode::NotUtf8,
        ErrorCode::BadField,
        ErrorCode::CookieRequired,
        ErrorCode::Forbidden,
        ErrorCode::CapacityExceeded,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
    ];

    pub fn code(self) -> u16 {
        match self {
            ErrorCode::PeerNotFound => 1001,
            ErrorCode::FileNotFound => 1002,
            ErrorCode::ChunkNotAvailable => 1003,
            ErrorCode::HashMismatch => 1004,
            ErrorCode::ConnectionRefused => 1005,
            ErrorCode::BadRequest => 1100,
            ErrorCode::UnknownFlag => 1101,
            ErrorCode::MissingField => 1102,
            ErrorCode::ExtraField => 1103,
            ErrorCode::BadNumber => 1104,
            ErrorCode::BadFileName => 1105,
            ErrorCode::BadAddress => 1106,
            ErrorCode::BadChunks => 1107,
            ErrorCode::TooLong => 1108,
            ErrorCode::NotUtf8 => 1109,
            ErrorCode::BadField => 1110,
            ErrorCode::CookieRequired => 1200,
            ErrorCode::Forbidden => 1201,
            ErrorCode::CapacityExceeded => 1202,
            ErrorCode::RateLimited => 1203,
            ErrorCode::Unavailable => 1204,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::PeerNotFound => "PEER_NOT_FOUND",
            ErrorCode::FileNotFound => "FILE_NOT_FOUND",
            ErrorCode::ChunkNotAvailable => "CHUNK_NOT_AVAILABLE",
            ErrorCode::HashMismatch => "HASH_MISMATCH",
            ErrorCode::ConnectionRefused => "CONNECTION_REFUSED",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownFlag => "UNKNOWN_FLAG",
            ErrorCode::MissingField => "MISSING_FIELD",
            ErrorCode::ExtraField => "EXTRA_FIELD",
            ErrorCode::BadNumber => "BAD_NUMBER",
            ErrorCode::BadFileName => "BAD_FILENAME",
            ErrorCode::BadAddress => "BAD_ADDRESS",
            ErrorCode::BadChunks => "BAD_CHUNKS",
            ErrorCode::TooLong => "TOO_LONG",
            ErrorCode::NotUtf8 => "NOT_UTF8",
            ErrorCode::BadField => "BAD_FIELD",
            ErrorCode::CookieRequired => "COOKIE_REQUIRED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::CapacityExceeded => "CAPACITY_EXCEEDED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

/// Why a datagram is not a well-formed message. Each maps to the [`ErrorCode`] the tracker
/// answers with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("datagram of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("datagram is not UTF-8 text")]
    NotUtf8,
    #[error("expected {expected:?} as the first word")]
    BadKeyword { expected: &'static str },
    #[error("empty token (tokens are separated by single spaces)")]
    EmptyToken,
    #[error("unknown flag {0:?} (flags are 1-10)")]
    UnknownFlag(String),
    #[error("missing {0}")]
    MissingField(&'static str),
    #[error("unexpected {0:?}")]
    ExtraField(String),
    #[error("duplicate field {0:?}")]
    DuplicateField(String),
    #[error("{field} {value:?} is not a valid number")]
    BadNumber { field: &'static str, value: String },
    #[error("bad file name: {0}")]
    FileName(#[from] FileNameError),
    #[error("bad address: {0}")]
    Addr(#[from] AddrError),
    #[error("bad chunk list: {0}")]
    Chunks(#[from] ChunkRangesError),
    #[error("bad {field}: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("malformed response line: {0}")]
    BadLine(String),
}

impl ParseError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::TooLong { .. } => ErrorCode::TooLong,
            ParseError::NotUtf8 => ErrorCode::NotUtf8,
            ParseError::BadKeyword { .. } | ParseError::EmptyToken | ParseError::BadLine(_) => {
                ErrorCode::BadRequest
            }
            ParseError::UnknownFlag(_) => ErrorCode::UnknownFlag,
            ParseError::MissingField(_) => ErrorCode::MissingField,
            ParseError::ExtraField(_) | ParseError::DuplicateField(_) => ErrorCode::ExtraField,
            ParseError::BadNumber { .. } => ErrorCode::BadNumber,
            ParseError::FileName(_) => ErrorCode::BadFileName,
            ParseError::Addr(_) => ErrorCode::BadAddress,
            ParseError::Chunks(_) => ErrorCode::BadChunks,
            ParseError::BadField { .. } => ErrorCode::BadField,
        }
    }
}

impl From<FileIdError> for ParseError {
    fn from(e: FileIdError) -> Self {
        ParseError::BadField {
            field: "id",
            reason: e.to_string(),
        }
    }
}

impl From<FileInfoError> for ParseError {
    fn from(e: FileInfoError) -> Self {
        ParseError::BadField {
            field: "file",
            reason: e.to_string(),
        }
    }
}

pub(crate) fn hex_field(field: &'static str) -> impl Fn(HexError) -> ParseError {
    move |e| ParseError::BadField {
        field,
        reason: e.to_string(),
    }
}
