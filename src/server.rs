//! Start-up and shutdown: bind both listeners, serve ext_authz v3 and
//! grpc.health.v1 on `listen` and admin HTTP on `admin_listen`, load keys in
//! the background (readiness follows), and on SIGTERM/SIGINT go unready
//! first, then drain in-flight Checks within the grace period. If the gRPC
//! or the admin server stops by itself, the process stops too, and says why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::admin::{self, AdminState};
use crate::app::{App, Readiness};
use crate::check::{Checker, Outcome};
use crate::config::Config;
use crate::traces::{Traces, TracesError};
use crate::verify::warrant::reload::Reloader;
use crate::verify::warrant::LoadError;

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
    /// A server task ended without being asked to (`server` names which).
    #[error("{server} server stopped unexpectedly")]
    Stopped { server: &'static str },
    #[error("{server} server task failed: {source}")]
    Task { server: &'static str, source: JoinError },
    #[error("{}: {source}", source.field())]
    Tenuo {
        #[from]
        source: LoadError,
    },
    #[error("{0}")]
    ApiKeys(#[from] crate::verify::apikey::LoadError),
    #[error("{0}")]
    Traces(#[from] TracesError),
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
/// request's headers, which travel in the message) is a few hundred bytes,
/// except when Envoy traces: its span then carries the client's
/// `tracestate` (unbounded by Envoy, up to its `max_request_headers_kb`,
/// 60 KiB by default) into the call. Refused here, the call would fail
/// (503, or with `failure_mode_allow: true` an unchecked pass).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Detects peers that vanished without closing (a dead node, a dropped NAT
/// entry), so their connections do not linger.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

pub struct AuthzService {
    checker: Arc<Checker>,
    /// `None`: tracing is off, and a Check pays nothing for it.
    traces: Option<Arc<Traces>>,
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let response = match &self.traces {
            None => self.checker.check(request.get_ref()).await,
            // Boxed: the span would otherwise enlarge every Check's future.
            Some(traces) => Box::pin(self.traced(traces, &request)).await,
        };
        Ok(Response::new(response))
    }
}

impl AuthzService {
    async fn traced(&self, traces: &Traces, request: &Request<CheckRequest>) -> CheckResponse {
        // Dropped with this future if the caller gives up (Envoy's timeout):
        // the span then still ends, marked cancelled.
        let span = traces.start(request.metadata(), request.get_ref());
        let trace_id = span.trace_id();
        let mut out = Outcome {
            timed: trace_id.is_some(),
            trace_id,
            ..Outcome::default()
        };
        let response = self.checker.check_recorded(request.get_ref(), &mut out).await;
        traces.finish(span, &out, &self.checker);
        response
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
    Ok(App::new(config)?.checker)
}

/// Serves until SIGTERM/SIGINT, or until the gRPC or admin server stops by
/// itself (an error). `source` is the config file, whose `tenuo` section is
/// re-read for trust reloads.
pub async fn run(config: Config, source: PathBuf) -> Result<(), ServeError> {
    let (listen, admin_listen) = (config.listen, config.admin_listen);
    let (delay, grace) = (config.shutdown_delay, config.shutdown_grace);
    let reload_every = config.tenuo.as_ref().map(|t| t.reload_interval);
    let tracing_config = config.tracing.clone();
    let app = App::new(config)?;
    let traces = tracing_config
        .map(|c| Traces::new(&c, app.metrics.clone()))
        .transpose()?
        .map(Arc::new);
    if let Some(keys) = &app.api_keys {
        tokio::spawn(keys.clone().watch(app.metrics.clone()));
    }
    match (reload_every, &app.warrant) {
        (Some(every), Some(verifier)) => {
            let reloader = Reloader::new(verifier.clone(), app.metrics.clone(), source);
            tokio::spawn(reloader.watch(every));
        }
        // SIGHUP's default action ends the process: a config reloader that
        // sends it (or a `kill -HUP` by habit) would stop a replica at once,
        // with no shutdown delay. The tenuo section and the API key file
        // reload on it; without either, SIGHUP is logged and changes nothing.
        // (API keys alone: their watcher listens.)
        _ if app.api_keys.is_some() => {}
        _ => {
            tokio::spawn(ignore_sighup());
        }
    }
    let grpc = bind(listen).await?;
    let admin = bind(admin_listen).await?;
    tracing::info!(event = "listening", grpc = %grpc.local_addr().map_err(|e| bind_err(listen, e))?, admin = %admin.local_addr().map_err(|e| bind_err(admin_listen, e))?, version = env!("CARGO_PKG_VERSION"));

    app.oidc.spawn_refreshers();
    let readiness = app.readiness.clone();
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_ready(health.clone(), readiness.clone()));

    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    // The builder's `tcp_nodelay`/`tcp_keepalive` only apply to listeners tonic
    // binds itself; for ours they are set on every accepted socket here.
    // Without TCP_NODELAY, Checks multiplexed on Envoy's single HTTP/2
    // connection wait ~40 ms each for delayed ACKs (Nagle).
    let incoming = TcpIncoming::from(grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    let authz = AuthorizationServer::new(AuthzService {
        checker: app.checker,
        traces: traces.clone(),
    })
    .max_decoding_message_size(MAX_CHECK_REQUEST_BYTES);
    let mut grpc_server = tokio::spawn(
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
    let admin_state = AdminState {
        readiness: readiness.clone(),
        metrics: app.metrics,
        cache: app.cache,
    };
    let mut admin_server = tokio::spawn(admin::serve(admin, admin::router(admin_state), async {
        let _ = admin_stopped.await;
    }));

    let signal = match first_stop(&mut grpc_server, &mut admin_server, shutdown_signal()).await {
        Stop::Signal(signal) => signal,
        Stop::Failed(error) => {
            // Nothing to drain on the side that stopped; the other side is
            // stopped at once: this replica cannot serve, and its
            // orchestrator should know now rather than after a delay.
            tracing::error!(event = "server_stopped", reason = %error);
            readiness.shut_down();
            health.set_service_status("", ServingStatus::NotServing).await;
            health.set_not_serving::<AuthorizationServer<AuthzService>>().await;
            let _ = stop_grpc.send(());
            let _ = stop_admin.send(());
            shut_down_traces(traces).await;
            return Err(error);
        }
    };
    tracing::info!(
        event = "shutdown_started",
        signal,
        delay_seconds = delay.as_secs(),
        grace_seconds = grace.as_secs()
    );
    readiness.shut_down();
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<AuthorizationServer<AuthzService>>().await;
    tokio::time::sleep(delay).await;
    let _ = stop_grpc.send(());
    let drained = tokio::time::timeout(grace, grpc_server).await;
    let _ = stop_admin.send(());
    let _ = tokio::time::timeout(admin::SHUTDOWN_GRACE + Duration::from_secs(1), admin_server).await;
    let served = match drained {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            tracing::error!(event = "shutdown", error = %join, "gRPC server task failed");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(event = "shutdown", "grace period over; in-flight Checks dropped");
            Ok(())
        }
    };
    // Whatever the gRPC server's end, the spans of the Checks it answered go out.
    shut_down_traces(traces).await;
    served?;
    tracing::info!(event = "shutdown_complete");
    Ok(())
}

/// Exports the spans still queued. The SDK blocks its caller while it
/// waits for the collector (at most the export timeout), so not on a
/// runtime thread.
async fn shut_down_traces(traces: Option<Arc<Traces>>) {
    if let Some(traces) = traces {
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
}

/// What ended serving: a stop signal, or a server task that ended by itself.
#[derive(Debug)]
enum Stop {
    Signal(&'static str),
    Failed(ServeError),
}

/// Waits for whichever comes first: `signal`, or the end of either server
/// task. Neither task ends before it is told to, so an end is a failure.
async fn first_stop<E: Into<ServeError>>(
    grpc: &mut JoinHandle<Result<(), E>>,
    admin: &mut JoinHandle<()>,
    signal: impl std::future::Future<Output = &'static str>,
) -> Stop {
    tokio::select! {
        signal = signal => Stop::Signal(signal),
        ended = grpc => Stop::Failed(match ended {
            Ok(Ok(())) => ServeError::Stopped { server: "gRPC" },
            Ok(Err(error)) => error.into(),
            Err(source) => ServeError::Task { server: "gRPC", source },
        }),
        ended = admin => Stop::Failed(match ended {
            Ok(()) => ServeError::Stopped { server: "admin" },
            Err(source) => ServeError::Task { server: "admin", source },
        }),
    }
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
async fn report_ready(health: tonic_health::server::HealthReporter, readiness: Readiness) {
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<AuthorizationServer<AuthzService>>().await;
    while !readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !readiness.is_shutting_down() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Never ends, like a server that nobody asked to stop.
    fn serving<T: Send + 'static>() -> JoinHandle<T> {
        tokio::spawn(std::future::pending())
    }

    fn grpc_error() -> JoinHandle<Result<(), ServeError>> {
        tokio::spawn(async {
            Err(ServeError::Bind {
                addr: "127.0.0.1:1".into(),
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            })
        })
    }

    #[tokio::test]
    async fn a_signal_stops_serving() {
        let (mut grpc, mut admin) = (serving::<Result<(), ServeError>>(), serving());
        let stop = first_stop(&mut grpc, &mut admin, async { "SIGTERM" }).await;
        assert!(matches!(stop, Stop::Signal("SIGTERM")), "{stop:?}");
    }

    /// The error a stop carries; a signal is not one.
    fn failure(stop: Stop) -> String {
        match stop {
            Stop::Failed(e) => e.to_string(),
            Stop::Signal(s) => panic!("stopped by {s}, not by a failure"),
        }
    }

    #[tokio::test]
    async fn a_grpc_server_that_fails_stops_serving_with_its_error() {
        let (mut grpc, mut admin) = (grpc_error(), serving());
        let stop = first_stop(&mut grpc, &mut admin, std::future::pending()).await;
        assert_eq!(failure(stop), "cannot bind 127.0.0.1:1: address in use");
    }

    #[tokio::test]
    async fn a_server_that_ends_by_itself_stops_serving() {
        let (mut grpc, mut admin) = (serving::<Result<(), ServeError>>(), tokio::spawn(async {}));
        let stop = first_stop(&mut grpc, &mut admin, std::future::pending()).await;
        assert_eq!(failure(stop), "admin server stopped unexpectedly");
        let (mut grpc, mut admin) = (tokio::spawn(async { Ok::<(), ServeError>(()) }), serving());
        let stop = first_stop(&mut grpc, &mut admin, std::future::pending()).await;
        assert_eq!(failure(stop), "gRPC server stopped unexpectedly");
    }

    #[tokio::test]
    async fn a_server_task_that_panics_stops_serving() {
        let (mut grpc, mut admin) = (
            serving::<Result<(), ServeError>>(),
            tokio::spawn(async { panic!("boom") }),
        );
        let stop = first_stop(&mut grpc, &mut admin, std::future::pending()).await;
        let text = failure(stop);
        assert!(text.starts_with("admin server task failed: task "), "{text}");
        assert!(text.ends_with(" panicked with message \"boom\""), "{text}");
    }
}
