//! A real HTTP server on 127.0.0.1 for tests of calls to providers: it
//! answers every request with what a closure says, after an optional
//! delay, and remembers what it was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use url::Url;

/// One request as the server saw it.
#[derive(Clone)]
pub struct Seen {
    pub path: String,
    /// `host:port` of this server (for answers that point back at it).
    pub host: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    /// The header's value, or "" when it is absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

pub struct Reply {
    status: u16,
    location: Option<String>,
    body: String,
    delay: Duration,
}

impl Reply {
    pub fn json(body: &str) -> Self {
        Self {
            status: 200,
            location: None,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn redirect(status: u16, to: &str) -> Self {
        Self {
            location: Some(to.to_string()),
            ..Self::json("").status(status)
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub struct TestServer {
    base: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub async fn serve(answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let base = Url::parse(&format!("http://{host}/")).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (answer, log, host) = (answer.clone(), log.clone(), host.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let s = Seen {
                path: parts.uri.path().to_string(),
                host,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            log.lock().unwrap().push(s.clone());
            let reply = answer(&s);
            tokio::time::sleep(reply.delay).await;
            let mut resp = Response::builder()
                .status(reply.status)
                .header("content-type", "application/json");
            if let Some(to) = reply.location {
                resp = resp.header("location", to);
            }
            resp.body(Body::from(reply.body)).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer { base, seen }
}
