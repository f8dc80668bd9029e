//! A recording HTTP server on `127.0.0.1` (tiny_http, nothing of the promoter's own client or
//! server): it keeps every request it gets ([`Recorded`]) and answers each as a closure of the
//! test decides ([`Reply`]). Used as a webhook receiver, a registry's notification endpoint, or
//! a fake API (GitHub) serving fixed answers.
//!
//! Every request is recorded before it is answered, so once a client has its answer,
//! [`Receiver::requests`] holds the request. The server stops when the [`Receiver`] is dropped.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The method (`POST`, `GET`, ...).
    pub method: String,
    /// The path and query, as sent (`/hooks/promoter?team=images`).
    pub path: String,
    /// The headers in the order sent, names as sent; see [`Recorded::header`].
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What the receiver answers: a status, headers and a body.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// `status` with `body` and no header but `Content-Length`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same, with the header `name: value` added.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn into_response(self) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let mut response = tiny_http::Response::from_data(self.body).with_status_code(self.status);
        for (name, value) in self.headers {
            response.add_header(
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                    .expect("a valid header"),
            );
        }
        response
    }
}

/// Decides the reply to the n-th request (from 0).
type Responder = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// An HTTP server on `127.0.0.1` recording every request; stopped on drop.
pub struct Receiver {
    server: Arc<tiny_http::Server>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl Receiver {
    /// Starts on a free port; `respond` is given each request's index (from 0) and the request,
    /// already recorded, and returns the reply.
    pub fn start(respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Box<Responder> = Box::new(respond);
        let thread = std::thread::spawn({
            let server = Arc::clone(&server);
            let requests = Arc::clone(&requests);
            move || {
                for mut request in server.incoming_requests() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let recorded = Recorded {
                        method: request.method().to_string(),
                        path: request.url().to_owned(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|h| (h.field.to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    let index = {
                        let mut all = requests.lock().expect("lock");
                        all.push(recorded.clone());
                        all.len() - 1
                    };
                    let _ = request.respond(respond(index, &recorded).into_response());
                }
            }
        });
        Receiver {
            server,
            requests,
            thread: Some(thread),
            port,
        }
    }

    /// Starts on a free port, answering every request with `status` and `body`.
    pub fn answering(status: u16, body: &'static str) -> Self {
        Self::start(move |_, _| Reply::new(status, body))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` followed by `path` (`""`, or starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
