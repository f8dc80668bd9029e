//! A fault-injecting HTTP reverse proxy on `127.0.0.1`, in front of a real registry (plain
//! HTTP): each request is forwarded, or, on a seeded random fraction of requests, answered
//! with a fault instead — `429` with `Retry-After`, `503`, the connection cut before anything
//! is forwarded, the connection cut after forwarding (the upstream did the work; the client
//! gets the headers and half of the body, or nothing when there is no body), or a stall (the
//! request held for a while, then forwarded). Counters per kind say what was injected.
//!
//! Plain `std::net`, a thread per client connection (keep-alive honoured), one upstream
//! connection per request (`Connection: close`), bodies buffered whole (test images are
//! small): request bodies sent chunked are forwarded with a `Content-Length`. The `Host` header
//! is passed on as the client sent it (the proxy's address), so the registry's `Location`
//! headers already name the proxy; a `Location` naming the upstream is rewritten to the proxy
//! all the same, so a client never leaves it (the promoter refuses to send credentials to
//! another origin).
//!
//! The random choices come from one seeded generator ([`Rng`]), so a run's sequence of faults
//! is fixed by the seed for a given order of requests (concurrent clients may interleave
//! differently from one run to the next).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A small seeded pseudo-random generator (SplitMix64): enough for choosing faults, and no
/// dependency of the harness's own.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A number in `range` (`start..end`, end excluded; `start` when empty).
    pub fn u64(&mut self, range: std::ops::Range<u64>) -> u64 {
        if range.end <= range.start {
            return range.start;
        }
        range.start + self.next_u64() % (range.end - range.start)
    }
}

/// How often each fault is injected (probabilities per request, tried in this order; their sum
/// should stay well below 1 so that a run converges).
#[derive(Clone, Debug)]
pub struct Faults {
    /// `429 Too Many Requests` with `Retry-After: retry_after`.
    pub throttle: f64,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after: u64,
    /// `503 Service Unavailable`.
    pub unavailable: f64,
    /// The connection closed before the request is forwarded (nothing done upstream).
    pub cut_before: f64,
    /// The request forwarded, then the connection closed mid-answer: headers and half of the
    /// body are sent (nothing at all when the answer has no body).
    pub cut_mid_answer: f64,
    /// The request held for a random time up to `stall_for`, then forwarded.
    pub stall: f64,
    /// The longest stall (keep it shorter than the client's request timeout).
    pub stall_for: Duration,
    /// Whether requests of a blob upload session (`PATCH`/`PUT …/blobs/uploads/…`) may be cut
    /// mid-answer too; when false they are forwarded instead.
    pub cut_uploads: bool,
    /// The first request with this method whose path contains this text is cut mid-answer,
    /// whatever the probabilities say (then this is cleared).
    pub cut_once: Option<(String, String)>,
}

impl Faults {
    /// No fault at all: a plain proxy.
    pub fn none() -> Self {
        Faults {
            throttle: 0.0,
            retry_after: 0,
            unavailable: 0.0,
            cut_before: 0.0,
            cut_mid_answer: 0.0,
            stall: 0.0,
            stall_for: Duration::ZERO,
            cut_uploads: true,
            cut_once: None,
        }
    }

    /// Each kind on about `each` of the requests, 429s asking for `Retry-After: 1`, stalls up
    /// to 2 s.
    pub fn each(each: f64) -> Self {
        Faults {
            throttle: each,
            retry_after: 1,
            unavailable: each,
            cut_before: each,
            cut_mid_answer: each,
            stall: each,
            stall_for: Duration::from_secs(2),
            cut_uploads: true,
            cut_once: None,
        }
    }
}

/// What a proxy did, per kind.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests forwarded (stalled ones and those cut mid-answer included).
    pub forwarded: AtomicU64,
    /// 429s answered.
    pub throttled: AtomicU64,
    /// 503s answered.
    pub unavailable: AtomicU64,
    /// Connections cut before forwarding.
    pub cut_before: AtomicU64,
    /// Connections cut after forwarding, mid-answer.
    pub cut_mid_answer: AtomicU64,
    /// Requests stalled.
    pub stalled: AtomicU64,
    /// Upstream failures (the upstream refused or broke the connection): answered 502.
    pub upstream_errors: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests received.
    pub requests: u64,
    /// Requests forwarded.
    pub forwarded: u64,
    /// 429s.
    pub throttled: u64,
    /// 503s.
    pub unavailable: u64,
    /// Cut before forwarding.
    pub cut_before: u64,
    /// Cut mid-answer.
    pub cut_mid_answer: u64,
    /// Stalled.
    pub stalled: u64,
    /// 502s for upstream failures.
    pub upstream_errors: u64,
}

impl Counts {
    /// The faults injected, all kinds together.
    pub fn faults(&self) -> u64 {
        self.throttled + self.unavailable + self.cut_before + self.cut_mid_answer + self.stalled
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, o: Counts) -> Counts {
        Counts {
            requests: self.requests + o.requests,
            forwarded: self.forwarded + o.forwarded,
            throttled: self.throttled + o.throttled,
            unavailable: self.unavailable + o.unavailable,
            cut_before: self.cut_before + o.cut_before,
            cut_mid_answer: self.cut_mid_answer + o.cut_mid_answer,
            stalled: self.stalled + o.stalled,
            upstream_errors: self.upstream_errors + o.upstream_errors,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests={} forwarded={} 429={} 503={} cut-before={} cut-mid-answer={} stalled={} \
             upstream-errors={}",
            self.requests,
            self.forwarded,
            self.throttled,
            self.unavailable,
            self.cut_before,
            self.cut_mid_answer,
            self.stalled,
            self.upstream_errors
        )
    }
}

struct Shared {
    upstream: String,
    host: String,
    faults: Mutex<Faults>,
    rng: Mutex<Rng>,
    counters: Counters,
}

/// A running proxy; stops accepting on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// The fault chosen for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Throttle,
    Unavailable,
    CutBefore,
    CutMidAnswer,
    Stall(Duration),
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`HOST:PORT`), injecting
    /// `faults` chosen with a generator seeded with `seed`.
    pub fn start(upstream: &str, faults: Faults, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("a local address").port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            host: format!("127.0.0.1:{port}"),
            faults: Mutex::new(faults),
            rng: Mutex::new(Rng::with_seed(seed)),
            counters: Counters::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || serve_connection(stream, &shared));
                }
            })
        };
        FaultProxy {
            shared,
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, the address clients use.
    pub fn host(&self) -> String {
        self.shared.host.clone()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes the faults from now on (e.g. [`Faults::none`] to let a run settle).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().expect("the faults") = faults;
    }

    /// What it did so far.
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counts {
            requests: load(&c.requests),
            forwarded: load(&c.forwarded),
            throttled: load(&c.throttled),
            unavailable: load(&c.unavailable),
            cut_before: load(&c.cut_before),
            cut_mid_answer: load(&c.cut_mid_answer),
            stalled: load(&c.stalled),
            upstream_errors: load(&c.upstream_errors),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A request or an answer: its first line, headers and whole body.
struct Message {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Headers a proxy does not pass on (hop by hop, or recomputed).
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Reads a first line and headers; `None` at the end of the stream.
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let line = line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            return Some((line, headers));
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

/// Reads a body as its headers say: chunked, `Content-Length`, or (`to_end`, an answer on a
/// closing connection) until the end of the stream.
fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_end: bool,
) -> std::io::Result<Vec<u8>> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .map_err(|e| std::io::Error::other(format!("chunk size {size:?}: {e}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut trailer = String::new();
                    if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    }
    if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|e| std::io::Error::other(format!("content-length {length:?}: {e}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_end {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// The fault for a request `line` (`METHOD PATH HTTP/1.1`).
fn choose(shared: &Shared, line: &str) -> Fault {
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let faults = {
        let mut faults = shared.faults.lock().expect("the faults");
        if faults
            .cut_once
            .as_ref()
            .is_some_and(|(m, p)| m == method && path.contains(p.as_str()))
        {
            faults.cut_once = None;
            return Fault::CutMidAnswer;
        }
        faults.clone()
    };
    let upload = path.contains("/blobs/uploads/") && (method == "PUT" || method == "PATCH");
    let mut rng = shared.rng.lock().expect("the generator");
    let roll = rng.f64();
    let mut bound = 0.0;
    for (p, fault) in [
        (faults.throttle, Fault::Throttle),
        (faults.unavailable, Fault::Unavailable),
        (faults.cut_before, Fault::CutBefore),
        (faults.cut_mid_answer, Fault::CutMidAnswer),
    ] {
        bound += p;
        if roll < bound {
            if fault == Fault::CutMidAnswer && upload && !faults.cut_uploads {
                return Fault::None;
            }
            return fault;
        }
    }
    bound += faults.stall;
    if roll < bound {
        let most = u64::try_from(faults.stall_for.as_millis()).unwrap_or(u64::MAX);
        return Fault::Stall(Duration::from_millis(rng.u64(most / 4..most + 1)));
    }
    Fault::None
}

/// Serves one client connection's requests until it closes (or a fault cuts it).
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut writer = stream;
    while let Some((line, headers)) = read_head(&mut reader) {
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let request = Message {
            line,
            headers,
            body,
        };
        let counters = &shared.counters;
        counters.requests.fetch_add(1, Ordering::SeqCst);
        let head_only = request.line.starts_with("HEAD ");
        let fault = choose(shared, &request.line);
        let answer = match fault {
            Fault::Throttle => {
                counters.throttled.fetch_add(1, Ordering::SeqCst);
                let retry_after = shared.faults.lock().expect("the faults").retry_after;
                Ok(canned(
                    429,
                    "TOOMANYREQUESTS",
                    &[("Retry-After", retry_after.to_string())],
                ))
            }
            Fault::Unavailable => {
                counters.unavailable.fetch_add(1, Ordering::SeqCst);
                Ok(canned(503, "UNAVAILABLE", &[]))
            }
            Fault::CutBefore => {
                counters.cut_before.fetch_add(1, Ordering::SeqCst);
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Fault::Stall(pause) => {
                counters.stalled.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(pause);
                forward(shared, &request)
            }
            Fault::CutMidAnswer | Fault::None => forward(shared, &request),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                counters.upstream_errors.fetch_add(1, Ordering::SeqCst);
                canned(
                    502,
                    "BAD GATEWAY",
                    &[(
                        "X-Proxy-Error",
                        error.to_string().replace(['\r', '\n'], " "),
                    )],
                )
            }
        };
        if fault == Fault::CutMidAnswer {
            counters.cut_mid_answer.fetch_add(1, Ordering::SeqCst);
            if !head_only && !answer.body.is_empty() {
                let _ = write_answer(&mut writer, &answer, false, Some(answer.body.len() / 2));
            }
            let _ = writer.flush();
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        if write_answer(&mut writer, &answer, head_only, None).is_err() {
            return;
        }
    }
}

/// An answer made up here: `status` with a registry-style JSON error body.
fn canned(status: u16, code: &str, headers: &[(&str, String)]) -> Message {
    let body =
        format!(r#"{{"errors":[{{"code":"{code}","message":"injected by the fault proxy"}}]}}"#);
    let mut all = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    all.extend(headers.iter().map(|(n, v)| ((*n).to_owned(), v.clone())));
    Message {
        line: format!("HTTP/1.1 {status} Fault"),
        headers: all,
        body: body.into_bytes(),
    }
}

/// Sends `request` upstream on a connection of its own and reads the whole answer.
fn forward(shared: &Shared, request: &Message) -> std::io::Result<Message> {
    shared.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    let upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{}\r\n", request.line);
    for (name, value) in &request.headers {
        if !hop_by_hop(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let has_body = !request.body.is_empty()
        || request.header("content-length").is_some()
        || request.header("transfer-encoding").is_some();
    if has_body {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut writer = upstream.try_clone()?;
    writer.write_all(head.as_bytes())?;
    writer.write_all(&request.body)?;
    writer.flush()?;
    let mut reader = BufReader::new(upstream);
    let (line, headers) =
        read_head(&mut reader).ok_or_else(|| std::io::Error::other("the upstream closed"))?;
    let head_only = request.line.starts_with("HEAD ");
    let status_has_no_body = line
        .split_whitespace()
        .nth(1)
        .is_some_and(|s| s == "204" || s == "304" || s.starts_with('1'));
    let body = if head_only || status_has_no_body {
        Vec::new()
    } else {
        read_body(&mut reader, &headers, true)?
    };
    let upstream_origin = format!("http://{}", shared.upstream);
    let headers = headers
        .into_iter()
        .map(|(name, value)| {
            if name.eq_ignore_ascii_case("location") && value.starts_with(&upstream_origin) {
                let rest = &value[upstream_origin.len()..];
                (name, format!("http://{}{rest}", shared.host))
            } else {
                (name, value)
            }
        })
        .collect();
    Ok(Message {
        line,
        headers,
        body,
    })
}

/// Writes `answer` to the client with a `Content-Length` (for a HEAD, the upstream's); with
/// `cut_at`, only that many body bytes.
fn write_answer(
    writer: &mut TcpStream,
    answer: &Message,
    head_only: bool,
    cut_at: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!("{}\r\n", answer.line);
    for (name, value) in &answer.headers {
        if !hop_by_hop(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let length = if head_only {
        answer.header("content-length").map(str::to_owned)
    } else {
        Some(answer.body.len().to_string())
    };
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    if !head_only {
        let end = cut_at.unwrap_or(answer.body.len()).min(answer.body.len());
        writer.write_all(&answer.body[..end])?;
    }
    writer.flush()
}
