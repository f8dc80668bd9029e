//! Reading a local file that must be a regular file of bounded size, for every reader of files
//! it did not write itself the same way (manifests, the state folder): opened without blocking
//! and without following a final symbolic link (`O_NONBLOCK | O_NOFOLLOW`), the opened file
//! checked (`fstat`) before a byte is read, its size checked from that metadata and then enforced
//! by the read itself, since a file can grow between the two.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read as _};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not a regular file (a folder, FIFO, socket or device): refused without reading.
    #[error("{0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the limit, by its metadata or by what the bounded read found.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Opening or reading failed (a final symbolic link fails to open: `ELOOP`).
    #[error("cannot read the file")]
    Io(#[source] io::Error),
}

/// Reads `path` whole if it is a regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open(path).map_err(FileError::Io)?;
    let meta = file.metadata().map_err(FileError::Io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind(&meta.file_type())));
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge { limit });
    }
    read_bounded(file, limit, meta.len())
}

/// Reads `reader` to its end, failing once it gives more than `limit` bytes. `hint` (the
/// metadata's length) only sizes the buffer: the file may have grown, so the read goes one
/// byte past the limit to see it.
pub fn read_bounded(reader: impl io::Read, limit: u64, hint: u64) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::with_capacity(usize::try_from(hint.min(limit)).unwrap_or(0));
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Opens for reading without blocking on a FIFO and without following a final symbolic link.
#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

/// Opens for reading (the file type is still checked before reading).
#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).open(path)
}

/// What kind of thing a file type is, in words: "a folder", "a FIFO (named pipe)", ….
pub fn kind(file_type: &FileType) -> &'static str {
    if file_type.is_dir() {
        return "a folder";
    }
    if file_type.is_symlink() {
        return "a symbolic link";
    }
    if file_type.is_file() {
        return "a regular file";
    }
    special_kind(file_type)
}

#[cfg(unix)]
fn special_kind(file_type: &FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_char_device() {
        "a character device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &FileType) -> &'static str {
    "a special file"
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn the_read_itself_is_bounded() {
        // A file that grew after its metadata was read (here: one that never ends).
        let result = read_bounded(io::repeat(b'a'), 10, 0);
        assert!(
            matches!(result, Err(FileError::TooLarge { limit: 10 })),
            "{result:?}"
        );
        let exact = read_bounded(io::repeat(b'a').take(4096), 4096, 0).expect("at the limit");
        assert_eq!(exact.len(), 4096);
    }
}
