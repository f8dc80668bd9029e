//! When and how long to wait before retrying a request: exponential backoff with full jitter,
//! the server's `Retry-After` when it gives one, and a total budget after which the last error
//! stands. The one retry policy of every request the promoter sends (registries, token
//! endpoints, GitHub, Cloud Storage, notification sinks).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// How many times to try a request, and how long to wait in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub attempts: u32,
    /// The first backoff ceiling; it doubles on each retry.
    pub base: Duration,
    /// The largest wait, for backoff and for `Retry-After` alike.
    pub max: Duration,
    /// The time from the first try after which no retry starts: a peer that stays broken is
    /// reported within about this long (plus one request's deadline).
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            budget: Duration::from_secs(90),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first), or `None` when the policy allows
    /// no more: out of attempts, or the wait would end past the budget counted from `started`.
    pub fn next_wait(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        started: std::time::Instant,
    ) -> Option<Duration> {
        if retry >= self.attempts {
            return None;
        }
        let wait = self.delay(retry, retry_after);
        (started.elapsed() + wait <= self.budget).then_some(wait)
    }

    /// The wait before retry number `retry` (1 for the first retry): the server's
    /// `Retry-After` if given, else a random time up to `base × 2^(retry-1)`, capped at `max`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

/// True for answers worth retrying: 429 Too Many Requests, and 5xx except 501 (not implemented)
/// and 505 (HTTP version not supported), which will not change.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// True for transport errors worth another try: the connection failed or timed out, or the
/// request or body broke off.
pub fn is_retryable_transport(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// Sends `request`, and again while the answer is 429 or 5xx or the connection fails, as
/// `policy` allows (honouring `Retry-After`): the retry loop of clients without one of their own
/// (Cloud Storage state, Google's token endpoints). The last answer or error is returned; a
/// request whose body cannot be replayed (a stream) is sent once.
pub async fn send(
    policy: &RetryPolicy,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    let started = std::time::Instant::now();
    let mut retry = 0;
    loop {
        let Some(attempt) = request.try_clone() else {
            return request.send().await;
        };
        retry += 1;
        let wait = match attempt.send().await {
            Ok(response) if is_retryable_status(response.status()) => {
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                match policy.next_wait(retry, after, started) {
                    Some(wait) => wait,
                    None => return Ok(response),
                }
            }
            Err(error) if is_retryable_transport(&error) => {
                match policy.next_wait(retry, None, started) {
                    Some(wait) => wait,
                    None => return Err(error),
                }
            }
            other => return other,
        };
        tracing::debug!(retry, ?wait, "retrying a request");
        tokio::time::sleep(wait).await;
    }
}

/// Tries per unit of work (a unit's copy, a unit's signing) while it fails retryably: every
/// step is idempotent, so a retry only does what is still missing.
pub const UNIT_ATTEMPTS: u32 = 3;

/// Runs `work` up to [`UNIT_ATTEMPTS`] times while it fails with an error `retryable` accepts,
/// waiting a second more before each new try. The one retry loop of whole units of work, above
/// the client's per-request retries.
pub async fn retry_unit<T, E, F, Fut>(retryable: impl Fn(&E) -> bool, mut work: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut result = work().await;
    for attempt in 2..=UNIT_ATTEMPTS {
        match &result {
            Err(error) if retryable(error) => {
                tracing::info!(attempt, %error, "retrying unit");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                result = work().await;
            }
            _ => break,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            budget: Duration::from_secs(60),
        };
        for _ in 0..100 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(3, None) <= Duration::from_millis(400));
            assert!(policy.delay(30, None) <= Duration::from_secs(1));
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(90))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn no_retry_past_the_attempts_or_the_budget() {
        let policy = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_secs(10),
            budget: Duration::from_secs(5),
        };
        let now = std::time::Instant::now();
        assert!(policy.next_wait(1, None, now).is_some());
        assert!(policy.next_wait(2, None, now).is_some());
        assert_eq!(policy.next_wait(3, None, now), None, "three tries in all");
        assert_eq!(
            policy.next_wait(1, Some(Duration::from_secs(6)), now),
            None,
            "a Retry-After past the budget ends the retries"
        );
        let long_ago = now.checked_sub(Duration::from_secs(6)).unwrap_or(now);
        if long_ago < now {
            assert_eq!(policy.next_wait(1, None, long_ago), None, "budget spent");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retryable_statuses() {
        for code in [429, 500, 502, 503, 504] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 501, 505] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
    }
}
