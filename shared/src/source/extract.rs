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
//!   stream (headers and padding included) longer than twice [`MAX_BYTES`] is refused;
//! - more than [`MAX_HEADER_BYTES`] read between two entries (GNU long names and links, PAX
//!   records, skipped content of non-files) is refused: the `tar` crate buffers long names and
//!   PAX records whole, so without this cap one header could claim the whole stream cap;
//! - every gzip member is read, as `gzip -d` does (a tarball split over several members is
//!   read whole, not cut after the first), and anything but zeros after the tar archive's end
//!   (a second archive, garbage) is refused rather than silently ignored.

use std::cell::Cell;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use super::{MAX_BYTES, MAX_FILES, MAX_HEADER_BYTES, SourceError};

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
    /// Bytes read between two entries (headers, long names, PAX records).
    pub header: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bytes: MAX_BYTES,
            entries: MAX_FILES,
            stream: 2 * MAX_BYTES,
            header: MAX_HEADER_BYTES,
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
    let meter = Rc::new(Meter {
        stream_left: Cell::new(limits.stream),
        header_left: Cell::new(None),
        exceeded: Cell::new(None),
    });
    let stream = Capped {
        inner: MultiGzDecoder::new(reader),
        meter: Rc::clone(&meter),
    };
    let mut archive = tar::Archive::new(stream);
    let mut extraction = Extraction {
        dest,
        origin,
        limits,
        meter: &meter,
        last: None,
        top: None,
        count: 0,
        written: Extracted::default(),
    };
    let mut entries = archive.entries().map_err(|e| extraction.read_error(e))?;
    loop {
        // What the `tar` crate reads to find the next entry is metadata, and capped as such.
        meter.header_left.set(Some(limits.header));
        let Some(entry) = entries.next() else { break };
        let entry = entry.map_err(|e| extraction.read_error(e))?;
        meter.header_left.set(None);
        extraction.entry(entry)?;
    }
    meter.header_left.set(None);
    extraction.only_zeros_after(archive.into_inner())?;
    Ok(extraction.written)
}

/// The state of one extraction.
struct Extraction<'a> {
    dest: &'a Path,
    origin: &'a str,
    limits: Limits,
    meter: &'a Meter,
    /// The last entry read, for errors.
    last: Option<String>,
    /// The archive's single top-level folder, once seen.
    top: Option<OsString>,
    /// Entries seen.
    count: usize,
    written: Extracted,
}

impl Extraction<'_> {
    /// Writes (or skips, or refuses) one entry.
    fn entry(&mut self, mut entry: tar::Entry<'_, impl Read>) -> Result<(), SourceError> {
        let origin = self.origin;
        self.count += 1;
        if self.count > self.limits.entries {
            return Err(SourceError::TooManyEntries {
                origin: origin.to_owned(),
                limit: self.limits.entries,
            });
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
        ) {
            // Metadata (GitHub's global header carries the commit id): nothing to write.
            return Ok(());
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        self.last = Some(name.clone());
        let refuse = |reason: &'static str| SourceError::UnsafeEntry {
            origin: origin.to_owned(),
            entry: name.clone(),
            reason,
        };
        let path = entry.path().map_err(|e| self.read_error(e))?;
        let relative = below_top(&path, &mut self.top).map_err(refuse)?;
        match kind {
            EntryType::Directory => {
                if let Some(relative) = relative {
                    let target = self.dest.join(relative);
                    fs::create_dir_all(&target).map_err(io_error(&target))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let Some(relative) = relative else {
                    return Err(refuse("a file in place of the top-level folder"));
                };
                self.file(&mut entry, &relative, &name)?;
            }
            EntryType::Symlink | EntryType::Link => {
                tracing::debug!(origin, entry = %name, "skipping a link in the archive");
            }
            _ => return Err(refuse("not a regular file or folder")),
        }
        Ok(())
    }

    /// Writes a regular file's content to `relative` below the destination.
    fn file(
        &mut self,
        entry: &mut tar::Entry<'_, impl Read>,
        relative: &Path,
        name: &str,
    ) -> Result<(), SourceError> {
        let size = entry.size();
        if self.written.bytes.saturating_add(size) > self.limits.bytes {
            return Err(SourceError::TooLarge {
                origin: self.origin.to_owned(),
                entry: Some(name.to_owned()),
                limit: self.limits.bytes,
            });
        }
        let target = self.dest.join(relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut file = fs::File::create(&target).map_err(io_error(&target))?;
        let copied = copy(entry, &mut file).map_err(|failure| match failure {
            Failure::Read(e) => self.read_error(e),
            Failure::Write(e) => io_error(&target)(e),
        })?;
        self.written.files += 1;
        self.written.bytes += copied;
        Ok(())
    }

    /// Reads what follows the tar archive's end: zeros (padding) are fine, anything else (a
    /// second archive, a later gzip member with data, garbage) is refused.
    fn only_zeros_after(&self, mut rest: impl Read) -> Result<(), SourceError> {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let n = match rest.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            };
            if buffer[..n].iter().any(|&b| b != 0) {
                let trailing = io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data after the end of the tar archive (a second archive, or garbage)",
                );
                return Err(self.read_error(trailing));
            }
        }
    }

    /// The error for a failed read of the archive: a cap passed, or a broken archive.
    fn read_error(&self, source: io::Error) -> SourceError {
        let origin = self.origin.to_owned();
        let entry = self.last.clone();
        match self.meter.exceeded.get() {
            Some(Cap::Stream) => SourceError::TooLarge {
                origin,
                entry,
                limit: self.limits.stream,
            },
            Some(Cap::Header) => SourceError::OversizedHeader {
                origin,
                after: entry,
                limit: self.limits.header,
            },
            None => SourceError::Archive {
                origin,
                entry,
                source,
            },
        }
    }
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

/// Which cap a read passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    /// The whole decompressed stream.
    Stream,
    /// What is read between two entries.
    Header,
}

/// What the stream may still give, shared by the reader and the extraction.
struct Meter {
    /// Bytes of the stream still allowed.
    stream_left: Cell<u64>,
    /// Bytes still allowed before the next entry, while the `tar` crate looks for it (`None`
    /// while an entry's own content is read).
    header_left: Cell<Option<u64>>,
    /// The cap passed, once one was.
    exceeded: Cell<Option<Cap>>,
}

impl Meter {
    /// Counts `n` bytes read against the caps; the cap passed, if any.
    fn count(&self, n: u64) -> Option<Cap> {
        let Some(stream_left) = self.stream_left.get().checked_sub(n) else {
            return Some(Cap::Stream);
        };
        self.stream_left.set(stream_left);
        if let Some(header_left) = self.header_left.get() {
            let Some(left) = header_left.checked_sub(n) else {
                return Some(Cap::Header);
            };
            self.header_left.set(Some(left));
        }
        None
    }
}

/// A reader that fails once a cap of its [`Meter`] is passed, and records which.
struct Capped<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.meter.count(n as u64) {
            None => Ok(n),
            Some(cap) => {
                self.meter.exceeded.set(Some(cap));
                Err(io::Error::other("the archive is larger than allowed"))
            }
        }
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
