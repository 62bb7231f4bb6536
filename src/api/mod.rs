//! The gRPC edges: request validation, mapping to and from wire messages, status codes. No
//! business rules live here; they are in the ledger and the stores.

pub mod admin;
pub mod auth;
pub mod convert;
pub mod event_json;
pub mod events;
pub mod quota;
pub mod status;
pub mod validate;
