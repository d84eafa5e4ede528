//! Start-up and shutdown: bind both listeners, serve ext_authz v3 and
//! grpc.health.v1 on `listen` and admin HTTP on `admin_listen`, load keys in
//! the background (readiness follows), and on SIGTERM/SIGINT go unready
//! first, then drain in-flight Checks within the grace period.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::admin::{self, AdminState};
use crate::check::Checker;
use crate::config::Config;
use crate::idp::IdpClient;
use crate::session::Sessions;
use crate::telemetry::Metrics;
use crate::verify::oidc::OidcVerifier;
use crate::verify::warrant::{reload, LoadError, Trust, WarrantVerifier};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("browser sessions: {0}")]
    Sessions(#[from] crate::session::SessionError),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("admin server failed: {0}")]
    Admin(std::io::Error),
    #[error("{}: {source}", source.field())]
    Tenuo {
        #[from]
        source: LoadError,
    },
}

/// Largest CheckRequest decoded. Envoy's own request carries the HTTP headers
/// (at most its `max_request_headers_kb`, 60 KiB by default) and, when enabled,
/// the body up to `with_request_body.max_request_bytes` (64 KiB in
/// envoy/envoy.yaml); anything near this is not a request worth buffering.
pub const MAX_CHECK_REQUEST_BYTES: usize = 1 << 20;
/// HTTP/2 streams per connection. Each may buffer up to one message, so this
/// bounds a connection's memory; Envoy opens another connection when it needs
/// more concurrency than a peer allows.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// gRPC metadata (the HTTP/2 header block of a Check call, not the checked
/// request's headers, which travel in the message) is a few hundred bytes.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Detects peers that vanished without closing (a dead node, a dropped NAT
/// entry), so their connections do not linger.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

pub struct AuthzService {
    checker: Arc<Checker>,
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.checker.check(request.get_ref()).await))
    }
}

/// tonic refuses a message over `max_decoding_message_size` with
/// OUT_OF_RANGE; gRPC's status-code table names RESOURCE_EXHAUSTED for a
/// message larger than the configured maximum. Check itself never answers
/// OUT_OF_RANGE (every decision is an OK CheckResponse), so the rewrite cannot
/// relabel anything else. The refusal is a headers-only response (tonic
/// rejects before calling the handler), so the header is all there is to fix.
#[derive(Clone)]
struct OversizeIsResourceExhausted<S>(S);

impl<S: NamedService> NamedService for OversizeIsResourceExhausted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for OversizeIsResourceExhausted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let out_of_range = http::HeaderValue::from(tonic::Code::OutOfRange as i32);
            if resp.headers().get("grpc-status") == Some(&out_of_range) {
                let exhausted = http::HeaderValue::from(tonic::Code::ResourceExhausted as i32);
                resp.headers_mut().insert("grpc-status", exhausted);
            }
            Ok(resp)
        })
    }
}

/// Builds the checker for a config: reads the Tenuo files it names; OIDC
/// keys are not loaded yet.
pub fn build_checker(config: Config) -> Result<Arc<Checker>, ServeError> {
    let metrics = Arc::new(Metrics::new());
    // One client for every call to an IdP: bearer keys and browser logins
    // share its discovery documents.
    let idp = Arc::new(IdpClient::new(config.oidc.fetch_timeout)?);
    let oidc = OidcVerifier::new(&config.oidc, idp.clone(), metrics.clone());
    let warrant = match &config.tenuo {
        Some(t) => {
            let trust = Trust::load(t)?;
            metrics.tenuo_reloaded(true, Some(trust.issuers));
            Some(WarrantVerifier::new(trust))
        }
        None => None,
    };
    let sessions = config.sessions.as_ref().map(|s| Sessions::new(s, &idp)).transpose()?;
    let checker = Checker::new(config, oidc, warrant, metrics);
    Ok(Arc::new(match sessions {
        Some(s) => checker.with_sessions(s),
        None => checker,
    }))
}

/// Serves until SIGTERM/SIGINT. `source` is the config file, re-read for
/// Tenuo trust reloads.
pub async fn run(config: Config, source: PathBuf) -> Result<(), ServeError> {
    let (listen, admin_listen) = (config.listen, config.admin_listen);
    let (delay, grace) = (config.shutdown_delay, config.shutdown_grace);
    let reload_every = config.tenuo.as_ref().map(|t| t.reload_interval);
    let checker = build_checker(config)?;
    match reload_every {
        Some(every) => {
            tokio::spawn(reload::watch(checker.clone(), source, every));
        }
        // SIGHUP's default action ends the process: a config reloader that
        // sends it (or a `kill -HUP` by habit) would stop a replica at once,
        // with no shutdown delay. Only the tenuo section reloads; without
        // one, SIGHUP is logged and changes nothing.
        None => {
            tokio::spawn(ignore_sighup());
        }
    }
    let grpc = bind(listen).await?;
    let admin = bind(admin_listen).await?;
    tracing::info!(event = "listening", grpc = %grpc.local_addr().map_err(|e| bind_err(listen, e))?, admin = %admin.local_addr().map_err(|e| bind_err(admin_listen, e))?, version = env!("CARGO_PKG_VERSION"));

    checker.oidc().spawn_refreshers();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = AdminState {
        checker: checker.clone(),
        shutting_down: shutting_down.clone(),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_ready(health.clone(), state.clone()));

    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    // The builder's `tcp_nodelay`/`tcp_keepalive` only apply to listeners tonic
    // binds itself; for ours they are set on every accepted socket here.
    // Without TCP_NODELAY, Checks multiplexed on Envoy's single HTTP/2
    // connection wait ~40 ms each for delayed ACKs (Nagle).
    let incoming = TcpIncoming::from(grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    let authz = AuthorizationServer::new(AuthzService { checker }).max_decoding_message_size(MAX_CHECK_REQUEST_BYTES);
    let grpc_server = tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .add_service(health_service)
            .add_service(OversizeIsResourceExhausted(authz))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = grpc_stopped.await;
            }),
    );
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin_server = tokio::spawn(admin::serve(admin, admin::router(state), async {
        let _ = admin_stopped.await;
    }));

    let signal = shutdown_signal().await;
    tracing::info!(
        event = "shutdown_started",
        signal,
        delay_seconds = delay.as_secs(),
        grace_seconds = grace.as_secs()
    );
    shutting_down.store(true, Ordering::Release);
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<AuthorizationServer<AuthzService>>().await;
    tokio::time::sleep(delay).await;
    let _ = stop_grpc.send(());
    let drained = tokio::time::timeout(grace, grpc_server).await;
    let _ = stop_admin.send(());
    let _ = tokio::time::timeout(admin::SHUTDOWN_GRACE + Duration::from_secs(1), admin_server).await;
    match drained {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => tracing::error!(event = "shutdown", error = %join, "gRPC server task failed"),
        Err(_) => tracing::warn!(event = "shutdown", "grace period over; in-flight Checks dropped"),
    }
    tracing::info!(event = "shutdown_complete");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|e| bind_err(addr, e))
}

fn bind_err(addr: std::net::SocketAddr, source: std::io::Error) -> ServeError {
    ServeError::Bind {
        addr: addr.to_string(),
        source,
    }
}

/// Flips gRPC health to SERVING once every issuer's keys are loaded.
async fn report_ready(health: tonic_health::server::HealthReporter, state: AdminState) {
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<AuthorizationServer<AuthzService>>().await;
    while !state.is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !state.shutting_down.load(Ordering::Acquire) {
        health.set_service_status("", ServingStatus::Serving).await;
        health.set_serving::<AuthorizationServer<AuthzService>>().await;
        tracing::info!(event = "ready");
    }
}

/// Logs every SIGHUP: there is nothing to reload without a `tenuo` section.
async fn ignore_sighup() {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; SIGHUP stops the process");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!(
            event = "reload_ignored",
            "SIGHUP: only the tenuo section is reloaded and there is none; restart to apply config changes"
        );
    }
}

async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
