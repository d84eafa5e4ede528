//! Admin HTTP: `/healthz` (the process runs), `/readyz` (every issuer's keys
//! are loaded and we are not shutting down), `/metrics` (Prometheus text).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::check::Checker;

#[derive(Clone)]
pub struct AdminState {
    pub checker: Arc<Checker>,
    pub shutting_down: Arc<AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

impl AdminState {
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire) && self.checker.is_ready()
    }
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if s.shutting_down.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for issuer keys\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    // moka counts lazily; settle pending work so the gauge is exact at scrape time.
    s.checker.cache().sync();
    let body = s.checker.metrics().render(s.checker.cache().entry_count());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
