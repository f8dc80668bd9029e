//! A tiny fake registry on `127.0.0.1` (plain HTTP, a thread per connection, keep-alive
//! honoured) answering what real registries only do under load, failure or attack: throttling
//! with `Retry-After`, server errors, slow, trickled, short and endless answers, headers naming
//! other hosts. Every request is logged with its `Authorization` header, so a test can tell
//! which host was sent credentials.
//!
//! Plain `std::net` rather than `tiny_http`: tiny_http's connection pool can leave a burst of
//! new connections queued behind idle keep-alive ones until the client drops those (90 s).

use std::io::{BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request the fake registry received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The request target, e.g. `/v2/app/manifests/v1`.
    pub url: String,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
    /// When it was received.
    pub at: Instant,
}

/// How the body of a reply is sent.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes, with their `Content-Length`.
    Bytes(Vec<u8>),
    /// `len` filler bytes made on the fly (nothing that large is held in memory); with a
    /// `Content-Length` when `sized`, else until the connection is closed.
    Filler {
        /// Bytes sent.
        len: u64,
        /// Whether `Content-Length` announces them.
        sized: bool,
    },
    /// These bytes, one at a time, `every` apart.
    Trickle {
        /// The bytes.
        bytes: Vec<u8>,
        /// The pause between two bytes.
        every: Duration,
    },
    /// `Content-Length: declared`, then `sent` bytes, then nothing, the connection kept open.
    Short {
        /// The length announced.
        declared: usize,
        /// The bytes actually sent.
        sent: Vec<u8>,
    },
}

/// What the fake registry answers.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// Time taken before answering.
    pub delay: Duration,
}

impl Reply {
    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            delay: Duration::ZERO,
        }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With `body`.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = Body::Bytes(body.to_vec());
        self
    }

    /// With a body sent as `body` says.
    pub fn sending(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// Answered after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

struct State {
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A fake registry: every request is answered by a handler given the request and its index
/// (0 for the first request received).
pub struct Fake {
    state: Arc<State>,
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Fake {
    /// Starts a fake answering with `handler`.
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake registry");
        let port = listener.local_addr().expect("a local address").port();
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    let handler = Arc::clone(&handler);
                    std::thread::spawn(move || serve_connection(stream, &state, &*handler));
                }
            })
        };
        Fake {
            state,
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Answers the scripted replies in order, then the last one forever.
    pub fn script(replies: Vec<Reply>) -> Self {
        Self::start(move |_, index| {
            replies
                .get(index)
                .or_else(|| replies.last())
                .cloned()
                .unwrap_or_else(|| Reply::status(500))
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `HOST/PATH`, parsed.
    pub fn repository(&self, path: &str) -> promoter::reference::Repository {
        format!("{}/{path}", self.host())
            .parse()
            .expect("HOST/PATH")
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("the request log").clone()
    }

    /// The most requests that were ever being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor up.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A parsed request: its line, `Authorization` and body length.
struct Request {
    method: String,
    url: String,
    authorization: Option<String>,
    length: usize,
}

/// Reads a request's line and headers; `None` when the client closed the connection.
fn read_request(reader: &mut impl std::io::BufRead) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let mut request = Request {
        method: parts.next().unwrap_or_default().to_owned(),
        url: parts.next().unwrap_or_default().to_owned(),
        authorization: None,
        length: 0,
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(request);
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("authorization") {
                request.authorization = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                request.length = value.parse().unwrap_or(0);
            }
        }
    }
}

/// Serves the requests of one connection until the client closes it.
fn serve_connection(stream: TcpStream, state: &State, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        let mut body = vec![0; request.length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let seen = Seen {
            method: request.method,
            url: request.url,
            authorization: request.authorization,
            at: Instant::now(),
        };
        let index = {
            let mut log = state.seen.lock().expect("the request log");
            log.push(seen.clone());
            log.len() - 1
        };
        let reply = handler(&seen, index);
        std::thread::sleep(reply.delay);
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        let keep_open = send_reply(&mut writer, &reply, seen.method == "HEAD").is_ok();
        if !keep_open {
            return;
        }
    }
}

/// Writes `reply`; an error ends the connection (a write failed, or the body's end is the
/// connection's end).
fn send_reply(writer: &mut TcpStream, reply: &Reply, head_only: bool) -> std::io::Result<()> {
    let length = match &reply.body {
        Body::Bytes(bytes) => Some(bytes.len() as u64),
        Body::Filler { len, sized } => sized.then_some(*len),
        Body::Trickle { bytes, .. } => Some(bytes.len() as u64),
        Body::Short { declared, .. } => Some(*declared as u64),
    };
    let mut head = format!("HTTP/1.1 {} Fake\r\n", reply.status);
    match length {
        Some(length) => head.push_str(&format!("Content-Length: {length}\r\n")),
        None => head.push_str("Connection: close\r\n"),
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    if head_only {
        return writer.flush();
    }
    match &reply.body {
        Body::Bytes(bytes) => writer.write_all(bytes)?,
        Body::Filler { len, sized } => {
            let chunk = vec![b'x'; 64 << 10];
            let mut left = *len;
            while left > 0 {
                let n = left.min(chunk.len() as u64);
                writer.write_all(&chunk[..n as usize])?;
                left -= n;
            }
            if !sized {
                writer.flush()?;
                return Err(std::io::Error::other("the body ends with the connection"));
            }
        }
        Body::Trickle { bytes, every } => {
            for byte in bytes {
                writer.write_all(std::slice::from_ref(byte))?;
                writer.flush()?;
                std::thread::sleep(*every);
            }
        }
        Body::Short { sent, .. } => {
            writer.write_all(sent)?;
            writer.flush()?;
            std::thread::sleep(Duration::from_secs(600));
            return Err(std::io::Error::other("the answer was never finished"));
        }
    }
    writer.flush()
}
