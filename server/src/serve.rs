//! The listener: accepts connections (plain or TLS) up to a limit and a per-peer limit,
//! serves each with hyper's HTTP/1.1 under a header timeout, a minimum send rate and a
//! connection lifetime, and drains them gracefully on shutdown.

use crate::access_log::{AccessLog, Entry};
use crate::limits::{PeerConnections, SendProgress, SendRate, Watched};
use crate::resolve::{resolve, Refusal};
use crate::response::{plan, FileInfo};
use crate::small_files::{self, Identity, SmallFiles};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

type Body = BoxBody<Bytes, io::Error>;

/// A body is read and sent in pieces of this size (all TUF metadata fits in one).
const PIECE: u64 = 1024 * 1024;

/// How the server runs.
pub struct Settings {
    /// The repository directory, canonical ([`crate::resolve::canonical_root`]).
    pub repo: PathBuf,
    /// TLS, when given a certificate and key.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client must send a complete request head within this time (slowloris).
    pub header_timeout: Duration,
    /// A connection is closed after this time, whatever it is doing.
    pub connection_lifetime: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one peer (an IPv4 address, an IPv6 /64) may hold at once; more are closed
    /// as soon as they are accepted.
    pub max_connections_per_peer: usize,
    /// A client that takes what is sent to it slower than this is disconnected.
    pub send_rate: SendRate,
    /// On shutdown, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Requests are logged here.
    pub access_log: AccessLog,
    /// Request heads larger than this are refused (431).
    pub max_head_bytes: usize,
}

impl Settings {
    /// Defaults for `repo`: 10 s header timeout, 30 min per connection, 1024 connections (32
    /// per peer), at least 1024 bytes/s over 30 s for a client being sent a response, 10 s
    /// grace, 16 KiB request heads, access log to stdout.
    pub fn new(repo: PathBuf) -> Self {
        Self {
            repo,
            tls: None,
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(30 * 60),
            max_connections: 1024,
            max_connections_per_peer: 32,
            send_rate: SendRate {
                min_bytes_per_sec: 1024,
                window: Duration::from_secs(30),
            },
            shutdown_grace: Duration::from_secs(10),
            access_log: AccessLog::new(Box::new(io::stdout())),
            max_head_bytes: 16 * 1024,
        }
    }
}

/// Loads a PEM certificate chain and private key into a rustls server configuration
/// (TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish (up to
/// the grace period).
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let tls = settings.tls.clone().map(TlsAcceptor::from);
    let small_files = Arc::new(SmallFiles::default());
    let peers = Arc::new(PeerConnections::default());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    crate::log_line(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over its peer's share: closed at once, the slot goes back to the others.
        let Some(peer_slot) = peers.enter(peer.ip(), settings.max_connections_per_peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let progress = Arc::new(SendProgress::default());
        let stream = Watched::new(stream, progress.clone());
        let settings = settings.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let small_files = small_files.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            let rate = settings.send_rate;
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(settings.header_timeout)
                .max_buf_size(settings.max_head_bytes.max(8192));
            let lifetime = settings.connection_lifetime;
            let service_settings = settings.clone();
            let service = service_fn(move |req| {
                handle(service_settings.clone(), small_files.clone(), peer, req)
            });
            match tls {
                None => {
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    let _ =
                        tokio::time::timeout(lifetime, until_stalled(conn, &progress, rate)).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(settings.header_timeout, acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        let conn =
                            watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                        let serving = until_stalled(conn, &progress, rate);
                        let _ = tokio::time::timeout(lifetime, serving).await;
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(settings.shutdown_grace) => {
            crate::log_line("grace period over, closing the remaining connections");
        }
    }
    settings.access_log.flush();
    Ok(())
}

/// Runs `conn` until it ends, or until its client takes what it is sent slower than `rate`
/// (the connection is then dropped: closed).
async fn until_stalled(conn: impl Future, progress: &SendProgress, rate: SendRate) {
    tokio::select! {
        _ = conn => {}
        () = progress.stalled(rate) => {}
    }
}

async fn handle(
    settings: Arc<Settings>,
    small_files: Arc<SmallFiles>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let response = respond(&settings.repo, &small_files, &req).await;
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    settings.access_log.record(&Entry {
        peer,
        method: req.method().as_str(),
        target: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        version: match req.version() {
            hyper::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        status: response.status().as_u16(),
        bytes,
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .map(HeaderValue::as_bytes),
        elapsed: started.elapsed(),
    });
    Ok(response)
}

async fn respond(repo: &Path, small_files: &SmallFiles, req: &Request<Incoming>) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let (path, meta) = match resolve(repo, req.uri().path()) {
        Ok(found) => found,
        Err(Refusal::BadPath(why)) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        Err(Refusal::Outside) => return text(StatusCode::FORBIDDEN, "forbidden\n"),
        Err(Refusal::NotFound) => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    match file_response(&path, &meta, req, head, small_files) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
        Err(e) => {
            crate::log_line(&format!("{}: {e}", path.display()));
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n")
        }
    }
}

fn file_info(path: &Path, meta: &std::fs::Metadata) -> io::Result<FileInfo> {
    Ok(FileInfo {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        len: meta.len(),
        modified: meta.modified()?,
        inode: meta.ino(),
    })
}

/// Answers from the metadata `resolve` already has when no body is needed (304, 416, HEAD):
/// the polling fleet's common case costs one `lstat`. A small file whose identity matches a
/// cached copy is answered from memory ([`SmallFiles`]). Otherwise the body is read from the
/// file opened and `fstat`ed again, so headers and bytes describe the same file even if it was
/// replaced in between.
///
/// Reads happen on the worker thread, not tokio's blocking pool: these are page-cache hits
/// measured in microseconds, and a pool round trip per piece costs more than the work
/// (bench/server.sh). A cold read blocks one worker for a disk access, as in nginx without aio.
fn file_response(
    path: &Path,
    meta: &std::fs::Metadata,
    req: &Request<Incoming>,
    head: bool,
    small_files: &SmallFiles,
) -> io::Result<Response<Body>> {
    let mut plan = plan(&file_info(path, meta)?, req.headers(), head);
    let body = match plan.body {
        None => empty(),
        // Large files are never cached, so for them this lookup only ever misses.
        Some(range) => match small_files.get(path, Identity::of(meta)) {
            Some(data) => slice_body(&data, range)?,
            None => {
                let (file, now) = open_same_or_replan(path, meta, req, head, &mut plan)?;
                match plan.body {
                    None => empty(),
                    Some(range) if now.len() <= small_files::MAX_FILE_BYTES => {
                        let data = read_whole(file, now.len())?;
                        small_files.put(path, Identity::of(&now), data.clone());
                        slice_body(&data, range)?
                    }
                    Some((offset, len)) => FileBody::new(file, offset, len).boxed(),
                }
            }
        },
    };
    let mut response = Response::new(body);
    *response.status_mut() = plan.status;
    *response.headers_mut() = plan.headers;
    Ok(response)
}

/// Opens `path`; if it is no longer the file `meta` described (replaced since the `lstat`),
/// decides the answer again for the file actually opened.
fn open_same_or_replan(
    path: &Path,
    meta: &std::fs::Metadata,
    req: &Request<Incoming>,
    head: bool,
    plan: &mut crate::response::Plan,
) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::File::open(path)?;
    let now = file.metadata()?;
    if Identity::of(&now) != Identity::of(meta) {
        *plan = crate::response::plan(&file_info(path, &now)?, req.headers(), head);
    }
    Ok((file, now))
}

/// Reads a small file whole; it must have exactly the length its `fstat` gave.
fn read_whole(file: std::fs::File, len: u64) -> io::Result<Bytes> {
    use std::io::Read;
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 != len {
        return Err(io::Error::other("the file changed length while being read"));
    }
    Ok(Bytes::from(data))
}

/// The part `range` (offset, length) of `data` as a body.
fn slice_body(data: &Bytes, (offset, len): (u64, u64)) -> io::Result<Body> {
    let start = usize::try_from(offset).map_err(io::Error::other)?;
    let end = usize::try_from(offset.saturating_add(len)).map_err(io::Error::other)?;
    if start > end || end > data.len() {
        return Err(io::Error::other("range outside the cached file"));
    }
    Ok(Full::new(data.slice(start..end))
        .map_err(|never| match never {})
        .boxed())
}

/// A file's byte range as a response body, read piece by piece as hyper asks for it.
struct FileBody {
    file: std::fs::File,
    offset: u64,
    remaining: u64,
}

impl FileBody {
    fn new(file: std::fs::File, offset: u64, len: u64) -> Self {
        Self {
            file,
            offset,
            remaining: len,
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        use std::os::unix::fs::FileExt;
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining.min(PIECE)).unwrap_or(PIECE as usize);
        let mut buf = vec![0u8; want];
        let n = match self.file.read_at(&mut buf, self.offset) {
            Ok(0) => {
                return std::task::Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while being served",
                ))))
            }
            Ok(n) => n,
            Err(e) => return std::task::Poll::Ready(Some(Err(e))),
        };
        buf.truncate(n);
        self.offset += n as u64;
        self.remaining -= n as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}
