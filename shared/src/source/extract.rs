//! Safe extraction of a GitHub-style tar.gz (one top-level folder) into a local folder.
//!
//! Blocking: run it on a blocking thread. What is written and what is refused:
//!
//! - the single top-level folder GitHub adds (`owner-name-sha/`) is dropped; an entry outside
//!   it (a second top folder, a file beside it) is refused;
//! - folders and regular files are written (file modes are not kept: manifests are data);
//! - symbolic and hard links are skipped with a debug log, whatever they point to: a manifest
//!   repository has no need of them, and never creating one means no later entry can be written
//!   through one;
//! - devices, FIFOs, sparse files and other kinds are refused, naming the entry;
//! - paths that are absolute or hold `..` are refused, naming the entry;
//! - more than [`MAX_BYTES`] of file content, more than [`MAX_FILES`] entries, or a tar
//!   stream (headers and padding included) longer than twice [`MAX_BYTES`] is refused.

use std::cell::Cell;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::read::GzDecoder;
use tar::EntryType;

use super::{MAX_BYTES, MAX_FILES, SourceError};

/// What an extraction wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Extracted {
    /// Regular files written.
    pub files: usize,
    /// Bytes of content written.
    pub bytes: u64,
}

/// The caps of one extraction.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries of any kind.
    pub entries: usize,
    /// Bytes of the decompressed tar stream.
    pub stream: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bytes: MAX_BYTES,
            entries: MAX_FILES,
            stream: 2 * MAX_BYTES,
        }
    }
}

/// Extracts the tar.gz read from `reader` into `dest` (an existing folder), dropping the top
/// folder; `origin` names the archive in errors.
pub(super) fn extract_tar_gz(
    reader: impl Read,
    dest: &Path,
    origin: &str,
    limits: Limits,
) -> Result<Extracted, SourceError> {
    let exceeded = Rc::new(Cell::new(false));
    let stream = Capped {
        inner: GzDecoder::new(reader),
        remaining: limits.stream,
        exceeded: Rc::clone(&exceeded),
    };
    let mut archive = tar::Archive::new(stream);
    let mut last: Option<String> = None;
    let read_error = |last: &Option<String>, source: io::Error| {
        if exceeded.get() {
            SourceError::TooLarge {
                origin: origin.to_owned(),
                entry: last.clone(),
                limit: limits.stream,
            }
        } else {
            SourceError::Archive {
                origin: origin.to_owned(),
                entry: last.clone(),
                source,
            }
        }
    };
    let entries = archive.entries().map_err(|e| read_error(&last, e))?;
    let mut top: Option<OsString> = None;
    let mut count = 0usize;
    let mut written = Extracted::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(&last, e))?;
        count += 1;
        if count > limits.entries {
            return Err(SourceError::TooManyEntries {
                origin: origin.to_owned(),
                limit: limits.entries,
            });
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
        ) {
            // Metadata (GitHub's global header carries the commit id): nothing to write.
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last = Some(name.clone());
        let refuse = |reason: &'static str| SourceError::UnsafeEntry {
            origin: origin.to_owned(),
            entry: name.clone(),
            reason,
        };
        let path = entry.path().map_err(|e| read_error(&last, e))?;
        let relative = below_top(&path, &mut top).map_err(refuse)?;
        match kind {
            EntryType::Directory => {
                if let Some(relative) = relative {
                    let target = dest.join(relative);
                    fs::create_dir_all(&target).map_err(io_error(&target))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let Some(relative) = relative else {
                    return Err(refuse("a file in place of the top-level folder"));
                };
                let size = entry.size();
                if written.bytes.saturating_add(size) > limits.bytes {
                    return Err(SourceError::TooLarge {
                        origin: origin.to_owned(),
                        entry: Some(name),
                        limit: limits.bytes,
                    });
                }
                let target = dest.join(relative);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_error(parent))?;
                }
                let mut file = fs::File::create(&target).map_err(io_error(&target))?;
                let copied = copy(&mut entry, &mut file).map_err(|failure| match failure {
                    Failure::Read(e) => read_error(&last, e),
                    Failure::Write(e) => io_error(&target)(e),
                })?;
                written.files += 1;
                written.bytes += copied;
            }
            EntryType::Symlink | EntryType::Link => {
                tracing::debug!(origin, entry = %name, "skipping a link in the archive");
            }
            _ => return Err(refuse("not a regular file or folder")),
        }
    }
    Ok(written)
}

/// The path of an entry below the archive's single top folder (`None` for that folder itself),
/// or why it is refused.
fn below_top(path: &Path, top: &mut Option<OsString>) -> Result<Option<PathBuf>, &'static str> {
    let mut components = path
        .components()
        .skip_while(|c| matches!(c, Component::CurDir));
    let first = match components.next() {
        Some(Component::Normal(first)) => first,
        Some(Component::RootDir | Component::Prefix(_)) => return Err("an absolute path"),
        Some(Component::ParentDir) => return Err("a `..` component"),
        Some(Component::CurDir) | None => return Err("an empty path"),
    };
    match top {
        None => *top = Some(first.to_owned()),
        Some(top) if top.as_os_str() == first => {}
        Some(_) => return Err("outside the archive's single top-level folder"),
    }
    let mut relative = PathBuf::new();
    for component in components {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::ParentDir => return Err("a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path"),
            Component::CurDir => {}
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

/// A failed copy: reading the archive, or writing the file.
enum Failure {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` to `to`, telling read failures from write failures.
fn copy(from: &mut impl Read, to: &mut impl Write) -> Result<u64, Failure> {
    let mut buffer = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Read(e)),
        };
        to.write_all(&buffer[..n]).map_err(Failure::Write)?;
        total += n as u64;
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A reader that fails once more than `remaining` bytes were read, and says so in `exceeded`.
struct Capped<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(rest) => {
                self.remaining = rest;
                Ok(n)
            }
            None => {
                self.exceeded.set(true);
                Err(io::Error::other("the archive is larger than allowed"))
            }
        }
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
