//! portcullis: an Envoy ext_authz v3 gRPC server.
//!
//! A `Check` goes through [`check::Checker::check`]: view the request →
//! extract the credential → cached or verified identity → route rule →
//! OK response (spoofable headers removed, identity injected) or 401/403.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod cache;
pub mod check;
pub mod clock;
pub mod config;
pub mod deny;
pub mod explain;
pub mod groups;
pub mod headers;
pub mod identity;
pub mod idp;
pub mod policy;
pub mod redact;
pub mod request;
pub mod response;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod traces;
pub mod verify;
