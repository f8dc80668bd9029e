//! Reading one manifest file, refusing what is not one: anything but a regular file, and
//! anything larger than [`MAX_FILE_BYTES`] ([`crate::files`] does the reading: a FIFO swapped in
//! after the folder walk looked at the path is refused, not waited on).

use std::io;
use std::path::Path;

pub use crate::files::kind;
use crate::files::{self, FileError};

/// The most bytes one manifest file may hold.
///
/// The largest real manifest known (`registry.k8s.io`'s `k8s-staging-kubernetes/images.yaml`,
/// every Kubernetes release since the registry began) is 0.95 MB; 4 MiB is over four times
/// that. The cap bounds the memory one file takes while it is checked: about 150 MB for the
/// worst 4 MiB file measured (one digest with half a million tags), well within the validate
/// function's 512 MB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a regular file (a folder, FIFO, socket or device): refused without reading.
    #[error("{0}, not a regular file: refused, not read")]
    NotRegular(&'static str),
    /// Larger than [`MAX_FILE_BYTES`], by its metadata or by what a bounded read found.
    #[error(
        "the file holds more than {MAX_FILE_BYTES} bytes (4 MiB), more than any manifest: refused"
    )]
    TooLarge,
    /// The content is not UTF-8 text.
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    /// Opening or reading failed.
    #[error("cannot read the file")]
    Io(#[source] io::Error),
}

impl ReadError {
    /// The sentence a diagnostic shows: the error and its cause, once each.
    pub fn message(&self) -> String {
        match self {
            ReadError::Io(e) => format!("{self}: {e}"),
            _ => self.to_string(),
        }
    }
}

/// Reads `path` as UTF-8 text, if it is a regular file of at most [`MAX_FILE_BYTES`]
/// ([`crate::files::read_regular`]).
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    let bytes = files::read_regular(path, MAX_FILE_BYTES).map_err(|error| match error {
        FileError::NotRegular(kind) => ReadError::NotRegular(kind),
        FileError::TooLarge { .. } => ReadError::TooLarge,
        FileError::Io(e) => ReadError::Io(e),
    })?;
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write as _;

    use super::*;

    #[test]
    fn reads_a_regular_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "images: []\n").expect("write");
        assert_eq!(read_text(&path).expect("read"), "images: []\n");
    }

    #[test]
    fn refuses_a_file_over_the_limit_by_metadata() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.yaml");
        let file = File::create(&path).expect("create");
        // Sparse: nothing written, but the metadata says so.
        file.set_len(MAX_FILE_BYTES + 1).expect("grow");
        assert!(matches!(read_text(&path), Err(ReadError::TooLarge)));
        file.set_len(MAX_FILE_BYTES).expect("shrink");
        let text = read_text(&path).expect("at the limit");
        assert_eq!(text.len() as u64, MAX_FILE_BYTES);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_fifo_without_blocking_and_a_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("images.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Without O_NONBLOCK, opening a FIFO nobody writes to would block this test forever.
        let error = read_text(&fifo).expect_err("a FIFO");
        assert_eq!(
            error.message(),
            "a FIFO (named pipe), not a regular file: refused, not read"
        );
        let error = read_text(dir.path()).expect_err("a folder");
        assert!(
            matches!(error, ReadError::NotRegular("a folder")),
            "{error:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn does_not_follow_a_final_symbolic_link() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        let mut file = File::create(&secret).expect("create");
        file.write_all(b"password: hunter2\n").expect("write");
        let link = dir.path().join("images.yaml");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let error = read_text(&link).expect_err("a link");
        assert!(matches!(error, ReadError::Io(_)), "{error:?}");
        assert!(!error.message().contains("hunter2"));
    }
}
