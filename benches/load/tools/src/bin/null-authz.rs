//! null-authz ADDR SECONDS [RESPONSE [MODE]]: serve ext_authz v3 on ADDR
//! (loopback only), answer every Check with the same prebuilt response, exit
//! by itself after SECONDS. RESPONSE is a CheckResponse in protobuf (as
//! `grpc-load --capture` writes portcullis' answer), so the baseline sends
//! exactly the bytes portcullis sends; without it, a fixed OK of the same
//! shape. MODE (what Envoy's share of the hop depends on): `as-is` (default),
//! `no-removals` (the same injected headers, no `headers_to_remove`), `bare`
//! (an OK with no header edits at all).

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use prost::Message;
use tonic::{Request, Response, Status};

struct Null(CheckResponse);

#[tonic::async_trait]
impl Authorization for Null {
    async fn check(&self, _req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

fn fixed_ok() -> CheckResponse {
    // The shape of portcullis' answer for a plain user token: inject the
    // user, remove the built-in spoofable names.
    let remove = [
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-user",
        "x-auth-request-preferred-username",
        "x-auth-request-access-token",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
    ];
    CheckResponse {
        status: Some(rpc::Status::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: "x-user-id".into(),
                    value: "bench-user".into(),
                    ..Default::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..Default::default()
            }],
            headers_to_remove: remove.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn without_removals(mut r: CheckResponse) -> CheckResponse {
    if let Some(HttpResponse::OkResponse(ok)) = r.http_response.as_mut() {
        ok.headers_to_remove.clear();
    }
    r
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: null-authz 127.0.0.1:PORT SECONDS [RESPONSE [as-is|no-removals|bare]]";
    let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let response = match args.get(3) {
        Some(path) => CheckResponse::decode(std::fs::read(path).expect("read RESPONSE").as_slice())
            .expect("RESPONSE: a CheckResponse"),
        None => fixed_ok(),
    };
    let response = match args.get(4).map(String::as_str) {
        None | Some("as-is") => response,
        Some("no-removals") => without_removals(response),
        Some("bare") => CheckResponse {
            status: Some(rpc::Status::default()),
            ..Default::default()
        },
        Some(other) => panic!("MODE: as-is, no-removals or bare, not {other:?}"),
    };
    assert!(addr.ip().is_loopback(), "loopback addresses only");
    let stop = tokio::time::sleep(Duration::from_secs(secs));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(AuthorizationServer::new(Null(response)))
        .serve_with_shutdown(addr, stop)
        .await
        .expect("serve");
}
