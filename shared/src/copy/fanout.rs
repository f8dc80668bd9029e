//! Streaming one blob from staging to many upload sessions at once, reading the source once.
//!
//! Each chunk read from the source is hashed and handed to every upload (a `Bytes` clone, no
//! copy). The last chunk is held back until the whole content is verified against the digest
//! and size: on a mismatch every upload stream ends in an error instead, the PUTs are aborted,
//! and no registry commits the blob. Memory stays at a few chunks per destination, whatever the
//! blob's size.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::document::Descriptor;
use super::error::CopyError;
use super::progress::Progress;
use crate::reference::{Digest, Repository};
use crate::registry::Client;

/// Chunks buffered per destination before the source read waits for the slowest upload.
const CHANNEL_CHUNKS: usize = 8;

type Chunk = Result<Bytes, std::io::Error>;

/// Streams blob `blob` from `source` to every `(repository, upload session)` target.
///
/// Returns the number of bytes read from the source. Each upload's own failure is returned
/// in the per-target results; a source that does not match the digest fails them all.
pub async fn stream_blob(
    client: &Client,
    progress: &Arc<Progress>,
    source: &Repository,
    blob: &Descriptor,
    targets: &[(Repository, String)],
) -> Result<Vec<Result<(), CopyError>>, CopyError> {
    let download = client.blob_get(source, &blob.digest).await?;
    let mut senders = Vec::with_capacity(targets.len());
    let mut uploads = Vec::with_capacity(targets.len());
    for (repository, session) in targets {
        let (sender, receiver) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        senders.push(sender);
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        });
        let body = reqwest::Body::wrap_stream(body);
        uploads.push(async move {
            client
                .upload_finish(repository, session, &blob.digest, blob.size, body)
                .await
                .map_err(CopyError::from)
        });
    }
    let pump = pump(download.body, blob, senders, progress);
    let (pumped, results) = tokio::join!(pump, join_all(uploads));
    pumped?;
    Ok(results)
}

/// Reads the source, verifies it, and feeds every upload.
async fn pump(
    mut body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<Bytes, reqwest::Error>> + Send>,
    >,
    blob: &Descriptor,
    mut senders: Vec<mpsc::Sender<Chunk>>,
    progress: &Arc<Progress>,
) -> Result<(), CopyError> {
    let mut hasher = Sha256::new();
    let mut read: u64 = 0;
    let mut held: Option<Bytes> = None;
    let failure = loop {
        match body.next().await {
            None => break None,
            Some(Err(e)) => {
                break Some(CopyError::SourceRead {
                    digest: blob.digest.clone(),
                    reason: e.to_string(),
                });
            }
            Some(Ok(chunk)) => {
                read += chunk.len() as u64;
                if read > blob.size {
                    break Some(size_mismatch(blob, read));
                }
                hasher.update(&chunk);
                progress
                    .bytes_read
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if let Some(previous) = held.replace(chunk) {
                    send_all(&mut senders, previous).await;
                }
            }
        }
    };
    let failure = failure.or_else(|| {
        if read != blob.size {
            return Some(size_mismatch(blob, read));
        }
        let actual = Digest::from_sha256(&hasher.finalize().into());
        (actual != blob.digest).then(|| CopyError::BlobDigestMismatch {
            expected: blob.digest.clone(),
            actual,
        })
    });
    match failure {
        None => {
            if let Some(last) = held {
                send_all(&mut senders, last).await;
            }
            Ok(())
        }
        Some(error) => {
            for sender in &senders {
                let abort = std::io::Error::other("source content does not match its digest");
                // An upload that already ended does not need telling.
                let _ = sender.send(Err(abort)).await;
            }
            Err(error)
        }
    }
}

/// Sends a chunk to every upload still listening; an upload that failed stops listening and
/// reports its own error.
async fn send_all(senders: &mut Vec<mpsc::Sender<Chunk>>, chunk: Bytes) {
    let mut closed = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        if sender.send(Ok(chunk.clone())).await.is_err() {
            closed.push(i);
        }
    }
    for i in closed.into_iter().rev() {
        senders.swap_remove(i);
    }
}

fn size_mismatch(blob: &Descriptor, read: u64) -> CopyError {
    CopyError::BlobSizeMismatch {
        digest: blob.digest.clone(),
        expected: blob.size,
        actual: read,
    }
}
