//! Why a request's query string or publish body is refused with 400; the
//! text is the JSON error the client reads.

use std::fmt;

use super::channel_name::BadName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    InvalidJson(String),
    NotAnObject,
    NotAString(&'static str),
    MissingMessage,
    MissingMessageInQuery,
    BadPercentEncoding,
    QueryNotUtf8,
    SinceNotAnInteger,
    EpochWithoutSince,
    SinceWithoutEpoch,
    EmptyEpoch,
    /// More than one of `client_id`, `channel` and `user`.
    TooManyTargets,
    BadChannel(BadName),
    BadUser(BadName),
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::InvalidJson(why) => write!(f, "invalid JSON: {why}"),
            BadRequest::NotAnObject => f.write_str("body must be a JSON object"),
            BadRequest::NotAString(field) => write!(f, "\"{field}\" must be a string"),
            BadRequest::MissingMessage => f.write_str("missing \"message\" (a string)"),
            BadRequest::MissingMessageInQuery => {
                f.write_str("missing \"message\": send a JSON body or ?message=...")
            }
            BadRequest::BadPercentEncoding => f.write_str("bad percent-encoding in query"),
            BadRequest::QueryNotUtf8 => f.write_str("query is not UTF-8"),
            BadRequest::SinceNotAnInteger => {
                f.write_str("\"since\" must be a non-negative integer")
            }
            BadRequest::EpochWithoutSince => f.write_str("\"since\" is required with \"epoch\""),
            BadRequest::SinceWithoutEpoch => f.write_str("\"epoch\" is required with \"since\""),
            BadRequest::EmptyEpoch => f.write_str("\"epoch\" must not be empty"),
            BadRequest::TooManyTargets => {
                f.write_str("give at most one of \"client_id\", \"channel\" and \"user\"")
            }
            BadRequest::BadChannel(why) => write!(f, "bad \"channel\": {why}"),
            BadRequest::BadUser(why) => write!(f, "bad \"user\": {why}"),
        }
    }
}
