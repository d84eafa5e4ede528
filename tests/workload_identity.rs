//! Workload identity through real Envoy over mTLS: envoy/envoy.yaml with a
//! `DownstreamTlsContext` on its listener that requires a client
//! certificate signed by a CA made here (openssl CLI), so Envoy fills
//! `attributes.source.principal` with the peer's URI SAN. Clients are
//! reqwest over rustls, presenting certificates made alike.
//!
//! What is shown: a listed principal passes with `x-portcullis-principal`
//! injected and a client's own value of it gone; another SAN is
//! `403 principal_not_allowed` (an XFCC header naming the listed one does
//! not help); a TLS client without a certificate, or with one of another
//! CA, never gets past Envoy's handshake; principals combine with a bearer
//! token on an `oidc` rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails by panicking

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;
use tempfile::TempDir;

const DEPLOYER: &str = "spiffe://cluster.local/ns/ci/sa/deployer";
const INTRUDER: &str = "spiffe://cluster.local/ns/ci/sa/intruder";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (the test needs the openssl CLI)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>.pem`, `<name>.key`) in `dir`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf certificate `<name>.pem` (key `<name>.key`, both in
/// `<name>.bundle` for reqwest) signed by CA `ca`, with `ext` as extensions.
fn leaf(dir: &Path, ca: &str, name: &str, ext: &str) -> PathBuf {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-CAserial",
            &format!("{ca}.srl"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    let mut bundle = std::fs::read(dir.join(format!("{name}.key"))).unwrap();
    bundle.extend(std::fs::read(dir.join(format!("{name}.pem"))).unwrap());
    let path = dir.join(format!("{name}.bundle"));
    std::fs::write(&path, bundle).unwrap();
    path
}

/// Every certificate the tests use, in one temporary directory.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn make() -> Self {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        ca(d, "ca");
        ca(d, "other-ca");
        leaf(
            d,
            "ca",
            "server",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1",
        );
        for (name, ca_name, uri) in [
            ("deployer", "ca", DEPLOYER),
            ("intruder", "ca", INTRUDER),
            // The listed SAN, from a CA Envoy does not trust.
            ("forged", "other-ca", DEPLOYER),
        ] {
            leaf(
                d,
                ca_name,
                name,
                &format!("extendedKeyUsage=clientAuth\nsubjectAltName=URI:{uri}"),
            );
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// A client trusting our CA, presenting `name`'s certificate (or none).
    fn client(&self, name: Option<&str>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.path("ca.pem")).unwrap()).unwrap();
        let mut b = reqwest::Client::builder().no_proxy().tls_certs_only([ca]);
        if let Some(name) = name {
            let bundle = std::fs::read(self.path(&format!("{name}.bundle"))).unwrap();
            b = b.identity(reqwest::Identity::from_pem(&bundle).unwrap());
        }
        b.build().unwrap()
    }
}

/// envoy/envoy.yaml's listener behind TLS that requires a client
/// certificate of our CA (what a mesh sidecar's inbound listener does).
fn with_mtls(rendered: &str, certs: &Certs) -> String {
    let chain = "      filter_chains:\n        - filters:\n";
    assert_eq!(
        rendered.matches(chain).count(),
        1,
        "envoy/envoy.yaml must have one filter chain"
    );
    let tls = format!(
        r#"      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              require_client_certificate: true
              common_tls_context:
                tls_certificates:
                  - certificate_chain: {{ filename: "{cert}" }}
                    private_key: {{ filename: "{key}" }}
                validation_context:
                  trusted_ca: {{ filename: "{ca}" }}
          filters:
"#,
        cert = certs.path("server.pem"),
        key = certs.path("server.key"),
        ca = certs.path("ca.pem"),
    );
    rendered.replacen(chain, &tls, 1)
}

fn start(certs: &Certs) -> Stack {
    let mut s = Stack::builder()
        .without_envoy()
        .rules(json!([
            {"path_prefix": "/hooks", "require": "workload", "allowed_principals": [DEPLOYER]},
            {"path_prefix": "/deploy", "require": "oidc",
             "allowed_principals": ["spiffe://cluster.local/ns/ci/sa/deploy*"]},
            {"path_prefix": "/", "require": "oidc"},
        ]))
        .start();
    s.start_envoy_edited(|r| with_mtls(r, certs));
    s
}

/// `GET path` over TLS to Envoy, as a [`Resp`]; `Err` when the connection
/// or the handshake fails.
fn get(s: &Stack, client: &reqwest::Client, path: &str, headers: &[(&str, &str)]) -> Result<Resp, reqwest::Error> {
    let url = format!("https://{}{path}", s.envoy());
    s.block_on(async {
        let mut req = client.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = r.bytes().await?.to_vec();
        Ok(Resp { status, headers, body })
    })
}

/// The Envoy listener's counter `name` (`listener.<addr>.ssl.<name>`).
fn listener_ssl_stat(s: &Stack, name: &str) -> u64 {
    let admin = s.envoy_admin.expect("envoy admin");
    let stats = http::send(admin, &Req::get("/stats?filter=ssl")).expect("envoy /stats");
    stats
        .text()
        .lines()
        .filter(|l| l.starts_with("listener.") && l.contains(&format!(".ssl.{name}: ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_listed_workload_passes_and_its_principal_is_injected() {
    let certs = Certs::make();
    let s = start(&certs);
    let deployer = certs.client(Some("deployer"));
    let r = get(
        &s,
        &deployer,
        "/hooks/release",
        &[
            ("x-portcullis-principal", INTRUDER),
            ("X_Portcullis_Principal", INTRUDER),
        ],
    )
    .expect("mTLS request");
    let echo = assert_allowed(&r);
    assert_eq!(
        echo.header_all("x-portcullis-principal"),
        [DEPLOYER],
        "{:?}",
        echo.headers
    );
    assert!(echo.header("x_portcullis_principal").is_none(), "{:?}", echo.headers);
    assert!(echo.header("x-user-id").is_none(), "no user was proven");

    // Another SAN of the same CA: Envoy accepts the handshake, portcullis
    // refuses the principal; an XFCC header claiming the listed one changes
    // nothing (Envoy sanitizes it by default, portcullis never reads it).
    let hits = s.echo_hits();
    let intruder = certs.client(Some("intruder"));
    let r = get(
        &s,
        &intruder,
        "/hooks/release",
        &[("x-forwarded-client-cert", &format!("By={DEPLOYER};URI={DEPLOYER}"))],
    )
    .expect("mTLS request");
    assert_denied(&r, 403, "principal_not_allowed");
    assert_eq!(s.echo_hits(), hits);
}

#[test]
fn without_a_certificate_of_the_trusted_ca_envoy_refuses_the_connection() {
    let certs = Certs::make();
    let s = start(&certs);
    // TLS without a client certificate: `require_client_certificate` ends
    // the handshake in Envoy; portcullis is never asked.
    let r = get(&s, &certs.client(None), "/hooks/release", &[]);
    assert!(r.is_err(), "no client certificate, yet: {:?}", r.map(|r| r.summary()));
    assert!(listener_ssl_stat(&s, "fail_verify_no_cert") >= 1);
    // The listed SAN from a CA Envoy does not trust: refused alike.
    let r = get(&s, &certs.client(Some("forged")), "/hooks/release", &[]);
    assert!(r.is_err(), "untrusted CA, yet: {:?}", r.map(|r| r.summary()));
    assert!(listener_ssl_stat(&s, "fail_verify_error") + listener_ssl_stat(&s, "connection_error") >= 1);
    assert_eq!(s.echo_hits(), 0);
    assert_eq!(s.admin("/metrics").text().matches("missing_principal").count(), 0);
}

#[test]
fn a_principal_and_a_bearer_token_are_both_required_on_an_oidc_rule() {
    let certs = Certs::make();
    let s = start(&certs);
    let token = s.token_for("alice", &["users"]);
    let bearer = format!("Bearer {token}");
    let deployer = certs.client(Some("deployer"));
    let echo = assert_allowed(&get(&s, &deployer, "/deploy/x", &[("authorization", &bearer)]).unwrap());
    assert_eq!(echo.header_all("x-portcullis-principal"), [DEPLOYER]);
    assert_eq!(echo.header_all("x-user-id"), ["alice"]);
    assert_denied(
        &get(&s, &deployer, "/deploy/x", &[]).unwrap(),
        401,
        "missing_credential",
    );
    let intruder = certs.client(Some("intruder"));
    assert_denied(
        &get(&s, &intruder, "/deploy/x", &[("authorization", &bearer)]).unwrap(),
        403,
        "principal_not_allowed",
    );
    // A rule without allowed_principals: the token decides, the verified
    // principal is still passed on.
    let echo = assert_allowed(&get(&s, &intruder, "/other", &[("authorization", &bearer)]).unwrap());
    assert_eq!(echo.header_all("x-portcullis-principal"), [INTRUDER]);
}

/// A mesh-only deployment: no IdP, no OIDC provider, no API keys, no
/// Tenuo; the rules admit workloads by principal alone. It starts, is
/// ready, and decides by the certificate Envoy verified.
#[test]
fn a_config_of_workload_rules_alone_serves_without_any_idp() {
    let certs = Certs::make();
    let mut s = Stack::builder()
        .idps(0)
        .without_envoy()
        .config(|c| {
            c["oidc"] = json!({"providers": []});
            c["rules"] = json!([
                {"path_prefix": "/hooks", "require": "workload", "allowed_principals": [DEPLOYER]},
            ]);
        })
        .start();
    s.start_envoy_edited(|r| with_mtls(r, &certs));
    let deployer = certs.client(Some("deployer"));
    let echo = assert_allowed(&get(&s, &deployer, "/hooks/x", &[]).expect("mTLS request"));
    assert_eq!(echo.header("x-portcullis-principal"), Some(DEPLOYER));
    let intruder = certs.client(Some("intruder"));
    let r = get(&s, &intruder, "/hooks/x", &[]).expect("mTLS request");
    assert_denied(&r, 403, "principal_not_allowed");
    // Outside the rules: refused, whoever asks; a bearer token proves nothing here.
    let r = get(&s, &deployer, "/other", &[("authorization", "Bearer x.y.z")]).expect("mTLS request");
    assert_denied(&r, 403, "no_matching_rule");
}
