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

/// Serves the audit endpoint until interrupted.
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
        axum::serve(listener, app)
            .await
            .context("serving the audit endpoint")?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn handle(
    State(deps): State<Arc<Deps>>,
    method: Method,
    uri: Uri,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
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
    (status, axum::Json(response.body))
}
