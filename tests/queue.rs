//! The SQS queue against a real SQS emulator (moto): messages sent are received, acknowledged
//! ones are gone, and unacknowledged ones come back after the visibility timeout.

use std::time::Duration;

use promoter::queue::{Queue, SqsQueue};
use promoter_tests::harness::moto::MotoServer;

/// A queue `name` in `moto` with a visibility timeout of `visibility` seconds.
async fn sqs_queue(moto: &MotoServer, name: &str, visibility: u32) -> Queue {
    let config = crate::sqs_support::sqs_config(&moto.endpoint()).await;
    let created = aws_sdk_sqs::Client::new(&config)
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            visibility.to_string(),
        )
        .send()
        .await
        .expect("create a queue in moto");
    let url = created.queue_url().expect("a queue URL").to_owned();
    Queue::Sqs(Box::new(SqsQueue::new(&config, url)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_delivers_at_least_once() {
    let moto = MotoServer::start();
    let queue = sqs_queue(&moto, "copy-digest", 1).await;

    for body in [r#"{"unit":"a"}"#, r#"{"unit":"b"}"#, r#"{"unit":"c"}"#] {
        queue.send(body).await.expect("send");
    }
    let mut received = Vec::new();
    for _ in 0..5 {
        received.extend(queue.receive(10).await.expect("receive"));
        if received.len() == 3 {
            break;
        }
    }
    let mut bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        [r#"{"unit":"a"}"#, r#"{"unit":"b"}"#, r#"{"unit":"c"}"#]
    );
    // Two are handled; the third is not acknowledged and comes back after the timeout.
    let unhandled = received
        .iter()
        .find(|m| m.body.contains(r#""c""#))
        .expect("c")
        .body
        .clone();
    for message in received.iter().filter(|m| m.body != unhandled) {
        queue.acknowledge(message).await.expect("acknowledge");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut again = Vec::new();
    for _ in 0..5 {
        again.extend(queue.receive(10).await.expect("receive"));
        if !again.is_empty() {
            break;
        }
    }
    assert_eq!(
        again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        [unhandled.as_str()]
    );
}

/// Many messages go out in batches of ten (SendMessageBatch), all of them, each once: what
/// validate-manifest does for a large run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_sends_many_in_batches() {
    let moto = MotoServer::start();
    let queue = sqs_queue(&moto, "batches", 30).await;
    let bodies: Vec<String> = (0..253).map(|i| format!(r#"{{"unit":"u{i}"}}"#)).collect();
    let started = std::time::Instant::now();
    queue.send_all(&bodies).await.expect("sent");
    let sent_in = started.elapsed();
    let mut received = Vec::new();
    for _ in 0..60 {
        let batch = queue.receive(10).await.expect("receive");
        if batch.is_empty() && received.len() >= bodies.len() {
            break;
        }
        for message in &batch {
            queue.acknowledge(message).await.expect("acknowledge");
        }
        received.extend(batch.into_iter().map(|m| m.body));
    }
    received.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(received, expected, "every message once");
    println!("253 messages sent in {sent_in:?} (26 SendMessageBatch calls)");
}
