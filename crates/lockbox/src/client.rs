//! A small HTTP/1.1 client for the daemon's Unix socket.
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use lockbox_proto::{ErrorBody, exit_codes};
use serde::de::DeserializeOwned;

/// What went wrong talking to the daemon, with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// Nothing answers on the socket.
    Unreachable(PathBuf),
    /// The socket exists but this user may not open it (not in its group).
    Denied(PathBuf),
    /// The socket belongs to someone who is neither root nor this user: whoever made it
    /// could read what the client sends (a value on `secret create`).
    Untrusted { socket: PathBuf, owner: u32 },
    /// The daemon answered with an error status.
    Api { status: u16, message: String },
    /// Anything else (broken connection, undecodable answer).
    Other(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(p) => write!(
                f,
                "Cannot connect to the lockbox daemon at unix://{}. Is 'lockbox daemon' running?",
                p.display()
            ),
            ClientError::Denied(p) => write!(
                f,
                "permission denied opening the lockbox socket unix://{}: ask an administrator to start the daemon with --group and add you to that group, or to grant you what you need (lockbox policy)",
                p.display()
            ),
            ClientError::Untrusted { socket, owner } => write!(
                f,
                "refusing the socket unix://{}: it belongs to uid {owner}, which is neither root nor you, so it may not be lockbox's; remove it if it is not, or point -H at the daemon's socket",
                socket.display()
            ),
            ClientError::Api { message, .. } => write!(f, "Error response from daemon: {message}"),
            ClientError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable(_) => exit_codes::UNREACHABLE,
            ClientError::Denied(_) => exit_codes::DENIED,
            ClientError::Api { status: 403, .. } => exit_codes::DENIED,
            ClientError::Untrusted { .. } => exit_codes::FAILURE,
            ClientError::Api {
                status: 503,
                message,
            } if message.contains("needs to be unlocked") => exit_codes::LOCKED,
            _ => exit_codes::FAILURE,
        }
    }
}

/// A client bound to one socket path.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    socket: PathBuf,
}

/// Connects to the daemon's socket after checking that it is the daemon's: a socket owned
/// by another user (not root, not the caller) is refused before a byte is sent, since a
/// squatter who made it first would receive the request (security finding 2).
async fn connect(socket: &Path) -> Result<tokio::net::UnixStream, ClientError> {
    if let Ok(st) = rustix::fs::stat(socket) {
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != 0 && st.st_uid != me {
            return Err(ClientError::Untrusted {
                socket: socket.to_owned(),
                owner: st.st_uid,
            });
        }
    }
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => ClientError::Denied(socket.to_owned()),
            _ => ClientError::Unreachable(socket.to_owned()),
        })?;
    // The path may have been swapped between the check above and the connect: the kernel's
    // word on who is listening is what counts, before a byte is sent.
    if let Ok(cred) = stream.peer_cred() {
        let me = rustix::process::geteuid().as_raw();
        if cred.uid() != 0 && cred.uid() != me {
            return Err(ClientError::Untrusted {
                socket: socket.to_owned(),
                owner: cred.uid(),
            });
        }
    }
    Ok(stream)
}

/// Percent-encodes a query value or path segment.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub(crate) fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    /// Sends one request; returns the status and body of a 2xx answer.
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let (status, _, bytes) = self.raw_with_headers(method, path, body).await?;
        Ok((status, bytes))
    }

    /// [`Client::raw`], also returning the answer's headers.
    pub(crate) async fn raw_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), ClientError> {
        let stream = connect(&self.socket).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Other(format!("cannot talk to the daemon: {e}")))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "lockbox");
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Other(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Other(format!("daemon: {e}")))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Other(format!("daemon: {e}")))?
            .to_bytes();
        if status >= 400 {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ClientError::Api { status, message });
        }
        Ok((status, headers, bytes))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (_, b) = self.raw(Method::GET, path, None).await?;
        serde_json::from_slice(&b)
            .map_err(|e| ClientError::Other(format!("undecodable answer from the daemon: {e}")))
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let (_, b) = self
            .raw(
                Method::POST,
                path,
                Some(serde_json::to_vec(body).expect("serialisable")),
            )
            .await?;
        serde_json::from_slice(&b)
            .map_err(|e| ClientError::Other(format!("undecodable answer from the daemon: {e}")))
    }

    pub(crate) async fn post_empty(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), ClientError> {
        self.raw(
            Method::POST,
            path,
            Some(serde_json::to_vec(body).expect("serialisable")),
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.raw(Method::DELETE, path, None).await.map(|_| ())
    }
}

/// A long-lived response read one JSON object a line (workload streams, events). Lines may
/// carry secret values, so they come out in zeroizing buffers.
pub(crate) struct Lines {
    body: hyper::body::Incoming,
    buf: zeroize::Zeroizing<Vec<u8>>,
}

impl Lines {
    /// The next line without its newline; `None` once the daemon ends the stream.
    pub(crate) async fn next(&mut self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = zeroize::Zeroizing::new(self.buf[..i].to_vec());
                self.buf.drain(..=i);
                return Some(line);
            }
            let frame = self.body.frame().await?.ok()?;
            if let Some(d) = frame.data_ref() {
                self.buf.extend_from_slice(d);
            }
        }
    }
}

/// Opens a long-lived request on the daemon's socket and returns its body as lines, or the
/// daemon's error. The request body may carry values: it is serialised into a zeroizing
/// buffer that is dropped once sent.
pub(crate) async fn open_lines(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Lines, ClientError> {
    let stream = connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Other(format!("cannot talk to the daemon: {e}")))?;
    tokio::spawn(conn);
    let payload = zeroize::Zeroizing::new(
        body.map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default(),
    );
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "lockbox");
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(&payload)))
        .map_err(|e| ClientError::Other(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Other(format!("daemon: {e}")))?;
    let status = resp.status().as_u16();
    if status >= 400 {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        return Err(ClientError::Api { status, message });
    }
    Ok(Lines {
        body: resp.into_body(),
        buf: zeroize::Zeroizing::new(Vec::new()),
    })
}

impl Client {
    /// Streams a long-lived response to `sink`, a line at a time, until the daemon ends it.
    pub(crate) async fn stream(
        &self,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ClientError> {
        let mut lines = open_lines(&self.socket, Method::GET, path, None).await?;
        while let Some(mut line) = lines.next().await {
            line.push(b'\n');
            if sink(&line).is_err() {
                break;
            }
        }
        Ok(())
    }
}
