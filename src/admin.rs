//! Admin HTTP: `/healthz` (the process runs), `/readyz` (every issuer's keys
//! are loaded and we are not shutting down), `/metrics` (Prometheus text).
//!
//! Served by a small HTTP/1.1 accept loop rather than `axum::serve`, which has
//! no header-read timeout and no connection limit: a client that opens
//! connections and sends nothing (slow-loris) could otherwise hold them
//! forever and starve the probes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::Readiness;
use crate::cache::DecisionCache;
use crate::telemetry::Metrics;

/// Time a client has to send a complete request head, counted from the
/// connection's start or the end of its previous response (so idle
/// keep-alive connections are closed after it too). Probes and scrapers send
/// their request at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once. More wait in the kernel's accept queue
/// until a slot frees up, which the header timeout guarantees.
pub const MAX_CONNECTIONS: usize = 64;
/// Read buffer per connection (hyper's minimum is 8 KiB); admin requests are
/// a request line and a few headers.
const MAX_BUF_BYTES: usize = 16 * 1024;
/// How long in-flight admin requests get at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the admin endpoints read; never the request path itself.
#[derive(Clone)]
pub struct AdminState {
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    /// The identity cache, for its entry count.
    pub cache: Arc<DecisionCache>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_BYTES);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first, then accept: excess clients queue in the kernel
        // instead of costing us a task and a buffer each.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(event = "admin_accept_failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Responses are single small writes; never hold them back (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an admin connection");
        }
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Timeouts and client resets end up here; nothing to report.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if s.readiness.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for issuer keys\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    // moka counts lazily; settle pending work so the gauge is exact at scrape time.
    s.cache.sync();
    let body = s.metrics.render(s.cache.entry_count());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
