//! `promoter invoke` and `promoter audit serve`: the Lambda functions' handlers, run here.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use promoter::queue::Queue;
use promoter::steps::Deps;
use promoter::steps::http::HttpRequest;
use promoter::steps::{Function, audit, local};

use crate::exit::INVALID;

/// Runs one function on an event file exactly as Lambda would (`promoter_lambda::invoke`:
/// the payload decoded as one of the function's, then its step) and prints its result (and the
/// messages it queued in process), or its error with Lambda's `errorType`.
pub fn invoke(function: Function, event: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(event).with_context(|| format!("reading {}", event.display()))?;
    let payload: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let deps = Deps::from_env().await?;
        let result = promoter_lambda::invoke(function, &payload, &deps).await;
        let queued = queued_messages(&deps).await?;
        let (code, output) = match result {
            Ok(response) => (
                ExitCode::SUCCESS,
                serde_json::json!({ "result": response, "queued": queued }),
            ),
            Err(error) => (
                INVALID,
                serde_json::json!({
                    "error": promoter::error_chain::error_chain(&error),
                    "errorType": error.error_type(),
                    "retryable": error.is_retryable(),
                    "queued": queued,
                }),
            ),
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
        Ok(code)
    })
}

/// The messages waiting in the in-process queues, by queue.
async fn queued_messages(deps: &Deps) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (name, queue) in [
        ("copy", &deps.queues.copy),
        ("sign", &deps.queues.sign),
        ("notify", &deps.queues.notify),
    ] {
        if let Queue::Memory(_) = queue {
            let messages: Vec<serde_json::Value> = queue
                .receive(usize::MAX)
                .await?
                .into_iter()
                .map(|m| serde_json::from_str(&m.body).unwrap_or(serde_json::Value::String(m.body)))
                .collect();
            if !messages.is_empty() {
                out.insert(name.to_owned(), serde_json::Value::Array(messages));
            }
        }
    }
    Ok(serde_json::Value::Object(out))
}

/// How long a client may take to send a request's headers, and then its body: a client
/// trickling either is cut off instead of holding a connection (and a task) forever.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest notification body read (a distribution batch of events is a few KiB).
const MAX_BODY_BYTES: usize = 4 << 20;

/// Serves the audit endpoint until interrupted.
///
/// Connections are served by hyper directly rather than `axum::serve`, which sets no timer and
/// so no header read timeout: here headers must arrive within [`REQUEST_READ_TIMEOUT`], and the
/// handler reads the body within the same time and up to [`MAX_BODY_BYTES`].
pub fn serve_audit(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let deps = Arc::new(Deps::from_env().await?);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&deps));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "audit endpoint listening on http://{}",
            listener.local_addr()?
        );
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(REQUEST_READ_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection ended");
                }
            });
        }
    })
}

/// The request's body, read within [`REQUEST_READ_TIMEOUT`] and up to [`MAX_BODY_BYTES`]; or
/// the answer saying why not (408, 413).
async fn read_body(body: axum::body::Body) -> Result<Bytes, (StatusCode, &'static str)> {
    match tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is too large or broken",
        )),
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "the body was not sent in time")),
    }
}

async fn handle(
    State(deps): State<Arc<Deps>>,
    method: Method,
    uri: Uri,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err((status, error)) => {
            return (status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        }
    };
    let request = HttpRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().ok()?.to_owned(),
                ))
            })
            .collect(),
        body: body.to_vec(),
    };
    let response = audit::handle_http(&request, &deps).await;
    if matches!(deps.queues.notify, Queue::Memory(_)) {
        // Alerts are delivered from this process (the notify function's work).
        for handled in local::drain(&deps, 4, Duration::from_secs(1)).await {
            if let Err(error) = handled.result {
                tracing::warn!(error = %promoter::error_chain::error_chain(&error), "alert not delivered");
            }
        }
    }
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(response.body)).into_response()
}
