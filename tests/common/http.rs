//! A deliberately dumb HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Tests need to put exact bytes on the wire: duplicated headers, mixed-case
//! and underscore names, non-UTF-8 values, odd request targets. Every request
//! is sent with `Connection: close` and the response is read to EOF.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A request as raw bytes (method, target, headers in order, body).
#[derive(Clone, Debug)]
pub struct Req {
    method: String,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Self {
        Req {
            method: method.to_string(),
            target: target.as_bytes().to_vec(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    pub fn post_json(target: &str, body: &Value) -> Self {
        let mut r = Self::new("POST", target);
        r.body = serde_json::to_vec(body).expect("serialize body");
        r.header("content-type", "application/json")
    }

    /// The body, sent as is (with its `Content-Length`).
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Request target as raw bytes (for targets that are not valid UTF-8).
    pub fn target_bytes(mut self, target: &[u8]) -> Self {
        self.target = target.to_vec();
        self
    }

    /// Adds a header line exactly as given (name case preserved, duplicates kept).
    pub fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name.as_bytes(), value.as_bytes())
    }

    pub fn header_bytes(mut self, name: &[u8], value: &[u8]) -> Self {
        self.headers.push((name.to_vec(), value.to_vec()));
        self
    }

    pub fn headers(mut self, headers: &[(&str, &str)]) -> Self {
        for (n, v) in headers {
            self = self.header(n, v);
        }
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    /// Every header occurrence in order, names as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Every value of `name` in `headers`, in order (ASCII case-insensitive;
/// `x_user_id` and `x-user-id` are different names). Responses and what the
/// echo upstream received are read the same way.
fn values<'a, 'n>(headers: &'a [(String, String)], name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Resp {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        values(&self.headers, name).next()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        values(&self.headers, name).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The request as the echo upstream saw it (panics if this response did
    /// not come from the echo upstream).
    pub fn upstream(&self) -> Echo {
        assert_eq!(
            self.status,
            200,
            "expected the request to reach the upstream; got {} {:?} (deny reason {:?})",
            self.status,
            self.text(),
            self.header("x-portcullis-deny-reason")
        );
        Echo::from_json(&self.json())
    }

    /// One-line summary for assertion messages.
    pub fn summary(&self) -> String {
        if self.status == 200 {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
                if v.get("headers").is_some() {
                    let echo = Echo::from_json(&v);
                    return format!(
                        "status=200 (reached the upstream: {} {}, x-user-id={:?}, groups={:?})",
                        echo.method,
                        echo.path,
                        echo.header_all("x-user-id"),
                        echo.header_all("x-auth-request-groups")
                    );
                }
            }
        }
        let mut body = self.text();
        if body.len() > 300 {
            body.truncate(300);
            body.push('…');
        }
        format!(
            "status={} reason={:?} www-authenticate={:?} body={body:?}",
            self.status,
            self.header("x-portcullis-deny-reason"),
            self.header("www-authenticate")
        )
    }
}

/// What the echo upstream received.
#[derive(Clone, Debug)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Echo {
    pub fn from_json(v: &Value) -> Echo {
        let headers = v["headers"]
            .as_array()
            .expect("echo body has headers")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().expect("header name").to_string(),
                    pair[1].as_str().expect("header value").to_string(),
                )
            })
            .collect();
        Echo {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            path: v["path"].as_str().unwrap_or_default().to_string(),
            headers,
        }
    }

    /// Every value received under this name.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        values(&self.headers, name).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        values(&self.headers, name).next()
    }
}

/// Sends raw bytes and parses the response. Write errors are tolerated as
/// long as a response can still be read (a server may answer 4xx and close
/// before it has consumed an oversized request).
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let write_result = stream.write_all(raw).and_then(|_| stream.flush());
    let mut buf = Vec::new();
    let read_result = stream.read_to_end(&mut buf);
    if buf.is_empty() {
        write_result?;
        read_result?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    parse_response(&buf)
}

pub fn send(addr: SocketAddr, req: &Req) -> std::io::Result<Resp> {
    send_raw(addr, &req.to_bytes(&addr.to_string()))
}

/// `Ok` when `GET path` answers 200; otherwise what it answered, for a
/// readiness poll's last error.
pub fn get_ok(addr: SocketAddr, path: &str) -> Result<(), String> {
    match send(addr, &Req::get(path)) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("{path} answered {}", r.status)),
        Err(e) => Err(e.to_string()),
    }
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

pub fn parse_response(buf: &[u8]) -> std::io::Result<Resp> {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no end of headers in {:?}", String::from_utf8_lossy(buf))))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let rest = &buf[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if rest.len() < len {
            return Err(invalid(format!("body truncated: {} of {len} bytes", rest.len())));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Resp { status, headers, body })
}

fn decode_chunked(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunk size line missing"))?;
        let size_str = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_str.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| invalid(format!("bad chunk size {size_hex:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(invalid("chunk truncated"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
