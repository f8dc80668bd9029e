//! The notification sinks against real HTTP receivers (tiny_http on loopback, recording every
//! request) and a real SNS emulator (moto, delivering to an SQS queue): what each sink sends,
//! that signatures verify independently, that retryable failures are retried (honouring
//! `Retry-After`) and permanent ones are not, and that no secret reaches an error.

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use promoter::error_chain::error_chain;
use promoter::notify::{
    CommitState, CommitStatus, Delivery, Notice, NoticeKind, Notifier, NotifyError, Sink,
};
use promoter_tests::harness::moto::MotoServer;
use promoter_tests::harness::receiver::{Receiver, Reply};
use serde_json::json;

fn notice(commit: Option<CommitStatus>) -> Notice {
    Notice {
        kind: NoticeKind::RunSummary,
        id: "run-4f2a".to_owned(),
        title: "Promoted 2 images".to_owned(),
        text: "controller@sha256:ab… to 3 mirrors".to_owned(),
        details: json!({"run": "run-4f2a", "promoted": 2, "failed": 0}),
        commit,
    }
}

fn commit(description: String) -> CommitStatus {
    CommitStatus {
        repository: "example-org/k8s.io".to_owned(),
        sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        state: CommitState::Success,
        description,
        target_url: Some("https://promoter.example/runs/run-4f2a".to_owned()),
    }
}

/// A notifier with one sink and fast retries.
fn notifier(sink: Sink, attempts: u32) -> Notifier {
    Notifier::new(vec![sink], None).with_retry(attempts, Duration::from_millis(10))
}

#[tokio::test]
async fn slack_gets_the_title_in_bold_and_the_text() {
    let receiver = Receiver::answering(200, "ok");
    let url = receiver.url("/services/T000/B000/XXXX");
    let delivery = notifier(Sink::Slack { url }, 1)
        .send("slack", &notice(None))
        .await
        .expect("delivered");
    assert_eq!(delivery, Delivery::Sent);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/services/T000/B000/XXXX");
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[0].json(),
        json!({"text": "*Promoted 2 images*\ncontroller@sha256:ab… to 3 mirrors"})
    );
}

#[tokio::test]
async fn webhooks_carry_the_notice_signed_over_the_exact_body() {
    let receiver = Receiver::answering(204, "");
    let secret = "whsec-7d1e0b";
    let signed = notifier(
        Sink::Webhook {
            url: receiver.url("/hooks/promoter?team=images"),
            secret: Some(secret.to_owned()),
        },
        1,
    );
    assert_eq!(
        signed.send("webhook", &notice(None)).await.expect("sent"),
        Delivery::Sent
    );
    let unsigned = notifier(
        Sink::Webhook {
            url: receiver.url("/plain"),
            secret: None,
        },
        1,
    );
    let mut alert = notice(None);
    alert.kind = NoticeKind::Alert;
    alert.id = "audit-9".to_owned();
    unsigned.send("webhook", &alert).await.expect("sent");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.path, "/hooks/promoter?team=images");
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("x-promoter-event"), Some("run_summary"));
    assert_eq!(first.header("x-promoter-delivery"), Some("run-4f2a"));
    assert_eq!(
        first.json(),
        json!({"kind": "run_summary", "id": "run-4f2a", "title": "Promoted 2 images",
            "text": "controller@sha256:ab… to 3 mirrors",
            "details": {"run": "run-4f2a", "promoted": 2, "failed": 0}})
    );
    // Verified independently: HMAC-SHA256 over the bytes received, GitHub's header format.
    let header = first
        .header("x-promoter-signature-256")
        .expect("a signature");
    let hex = header.strip_prefix("sha256=").expect("sha256= prefix");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, &first.body, &tag).expect("the signature verifies");
    assert!(hmac::verify(&key, b"{}", &tag).is_err());

    let second = &requests[1];
    assert_eq!(second.header("x-promoter-event"), Some("alert"));
    assert_eq!(second.header("x-promoter-delivery"), Some("audit-9"));
    assert_eq!(second.header("x-promoter-signature-256"), None);
}

#[tokio::test]
async fn github_statuses_go_to_the_commit() {
    let receiver = Receiver::answering(201, "{}");
    let github = notifier(
        Sink::GithubStatus {
            api_base: receiver.url("/api/v3/"),
            token: "ghp_tokenvalue123".to_owned(),
        },
        1,
    );
    let long = format!("Promoted 2 images to 3 mirrors; {}", "x".repeat(200));
    let delivery = github
        .send("github-status", &notice(Some(commit(long))))
        .await
        .expect("sent");
    assert_eq!(delivery, Delivery::Sent);
    // Nothing to say without a commit: skipped, no request.
    assert_eq!(
        github
            .send("github-status", &notice(None))
            .await
            .expect("skipped"),
        Delivery::Skipped
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/api/v3/repos/example-org/k8s.io/statuses/0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer ghp_tokenvalue123")
    );
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert!(
        request
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("promoter/")),
        "{:?}",
        request.header("user-agent")
    );
    let body = request.json();
    assert_eq!(body["state"], "success");
    assert_eq!(body["context"], "promoter");
    assert_eq!(body["target_url"], "https://promoter.example/runs/run-4f2a");
    let description = body["description"].as_str().expect("a description");
    assert_eq!(description.chars().count(), 140);
    assert!(description.starts_with("Promoted 2 images to 3 mirrors; xxx"));
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let receiver = Receiver::start(|n, _| match n {
        0 | 1 => Reply::new(500, "try later"),
        _ => Reply::new(200, "ok"),
    });
    let delivery = notifier(
        Sink::Webhook {
            url: receiver.url("/hook"),
            secret: Some("s3cret-key".to_owned()),
        },
        4,
    )
    .send("webhook", &notice(None))
    .await
    .expect("delivered on the third try");
    assert_eq!(delivery, Delivery::Sent);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    // The same delivery each time: same id, same bytes, same signature.
    for request in &requests[1..] {
        assert_eq!(request.body, requests[0].body);
        assert_eq!(request.header("x-promoter-delivery"), Some("run-4f2a"));
        assert_eq!(
            request.header("x-promoter-signature-256"),
            requests[0].header("x-promoter-signature-256")
        );
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start(|n, _| match n {
        0 => Reply::new(429, "slow down").header("Retry-After", "1"),
        _ => Reply::new(200, "ok"),
    });
    let started = Instant::now();
    notifier(
        Sink::Slack {
            url: receiver.url("/services/T/B/X"),
        },
        3,
    )
    .send("slack", &notice(None))
    .await
    .expect("delivered after waiting");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(receiver.requests().len(), 2);
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt() {
    let receiver = Receiver::answering(503, "unavailable");
    let error = notifier(
        Sink::Webhook {
            url: receiver.url("/hook"),
            secret: None,
        },
        3,
    )
    .send("webhook", &notice(None))
    .await
    .expect_err("never delivered");
    assert!(error.is_retryable(), "{error}");
    assert!(matches!(error, NotifyError::Status { .. }), "{error:?}");
    assert_eq!(receiver.requests().len(), 3);
}

#[tokio::test]
async fn client_errors_are_permanent_and_show_no_secret() {
    // Slack: the URL's path is the secret.
    let slack = Receiver::answering(400, "invalid_payload");
    let slack_url = slack.url("/services/T0SECRET/B0SECRET/XXXXSECRETXXXX");
    let error = notifier(Sink::Slack { url: slack_url }, 4)
        .send("slack", &notice(None))
        .await
        .expect_err("refused");
    assert!(!error.is_retryable());
    assert_eq!(slack.requests().len(), 1, "a 400 is not retried");
    let text = error_chain(&error);
    assert!(text.contains(&slack.url("")), "{text}");
    assert!(
        text.contains("400") && text.contains("invalid_payload"),
        "{text}"
    );
    assert!(
        !text.contains("SECRET") && !text.contains("/services"),
        "{text}"
    );

    // GitHub: a receiver that echoes the token back must not get it into the error.
    let github = Receiver::start(|_, request| {
        let authorization = request.header("authorization").unwrap_or("").to_owned();
        Reply::new(401, format!("Bad credentials: {authorization}"))
    });
    let token = "ghp_SuperSecretToken42";
    let notifier_github = notifier(
        Sink::GithubStatus {
            api_base: github.url(""),
            token: token.to_owned(),
        },
        4,
    );
    let error = notifier_github
        .send("github-status", &notice(Some(commit("done".to_owned()))))
        .await
        .expect_err("unauthorized");
    assert!(!error.is_retryable());
    assert_eq!(github.requests().len(), 1);
    let text = error_chain(&error);
    assert!(
        text.contains("401") && text.contains("Bad credentials"),
        "{text}"
    );
    assert!(!text.contains(token), "{text}");
    assert!(!format!("{error:?} {notifier_github:?}").contains(token));

    // Webhook: neither the secret nor the URL's query.
    let hook = Receiver::answering(403, "forbidden: whsec-abcdef");
    let error = notifier(
        Sink::Webhook {
            url: hook.url("/hook?token=querysecret"),
            secret: Some("whsec-abcdef".to_owned()),
        },
        4,
    )
    .send("webhook", &notice(None))
    .await
    .expect_err("forbidden");
    let text = error_chain(&error);
    assert_eq!(hook.requests().len(), 1);
    assert!(
        !text.contains("whsec-abcdef") && !text.contains("querysecret"),
        "{text}"
    );
}

#[tokio::test]
async fn unreachable_receivers_are_retryable_transport_errors() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let error = notifier(
        Sink::Slack {
            url: format!("http://127.0.0.1:{port}/services/T/B/SECRETPATH"),
        },
        2,
    )
    .send("slack", &notice(None))
    .await
    .expect_err("nobody listens");
    assert!(matches!(error, NotifyError::Transport { .. }), "{error:?}");
    assert!(error.is_retryable());
    let text = error_chain(&error);
    assert!(!text.contains("SECRETPATH"), "{text}");
}

#[tokio::test]
async fn unknown_sinks_are_errors() {
    let error = notifier(
        Sink::Slack {
            url: "https://hooks.slack.invalid/x".to_owned(),
        },
        1,
    )
    .send("pagerduty", &notice(None))
    .await
    .expect_err("not configured");
    assert!(matches!(error, NotifyError::UnknownSink { .. }));
    assert!(error.to_string().contains("[slack]"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publishes_to_subscribed_queues() {
    let moto = MotoServer::start();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let topic_arn = sns
        .create_topic()
        .name("promoter-notices")
        .send()
        .await
        .expect("create a topic")
        .topic_arn
        .expect("a topic ARN");
    let queue_url = sqs
        .create_queue()
        .queue_name("notices")
        .send()
        .await
        .expect("create a queue")
        .queue_url
        .expect("a queue URL");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("a queue ARN");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .expect("subscribe the queue");

    let mut alert = notice(None);
    alert.kind = NoticeKind::Alert;
    alert.id = "audit-2024-05-01-7".to_owned();
    alert.title = format!("Unexpected push to production\n{}", "y".repeat(150));
    let notifier = Notifier::new(
        vec![Sink::Sns {
            topic_arn: topic_arn.clone(),
        }],
        Some(sns),
    );
    assert_eq!(notifier.sink_names(), ["sns"]);
    assert_eq!(
        notifier.send("sns", &alert).await.expect("published"),
        Delivery::Sent
    );

    let mut bodies = Vec::new();
    for _ in 0..5 {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        bodies.extend(
            received
                .messages
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.body),
        );
        if !bodies.is_empty() {
            break;
        }
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let envelope: serde_json::Value = serde_json::from_str(&bodies[0]).expect("SNS envelope");
    assert_eq!(envelope["TopicArn"], topic_arn.as_str());
    let subject = envelope["Subject"].as_str().expect("a subject");
    assert_eq!(subject.chars().count(), 100);
    assert!(
        subject.starts_with("Unexpected push to production yyy"),
        "{subject}"
    );
    assert!(!subject.contains('\n'));
    assert_eq!(envelope["MessageAttributes"]["kind"]["Value"], "alert");
    let message: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().expect("a message"))
            .expect("the notice as JSON");
    assert_eq!(message["id"], "audit-2024-05-01-7");
    assert_eq!(message["kind"], "alert");
    assert_eq!(message["title"], alert.title.as_str());
    assert_eq!(message["details"]["promoted"], 2);
}
