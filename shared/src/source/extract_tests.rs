//! Tests of the extraction: hostile archives built byte by byte (the `tar` crate's own
//! builder refuses to write the paths these tests need).

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use super::*;

const TOP: &str = "o-r-0123abc";

/// One entry: its raw name, kind, content and (if not the content's length) declared size.
struct Raw<'a> {
    name: &'a str,
    kind: EntryType,
    data: &'a [u8],
    size: Option<u64>,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: EntryType::Regular,
        data,
        size: None,
    }
}

fn dir(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: EntryType::Directory,
        data: b"",
        size: None,
    }
}

fn of_kind(name: &str, kind: EntryType) -> Raw<'_> {
    Raw {
        name,
        kind,
        data: b"",
        size: None,
    }
}

/// A tar.gz of `entries`, names written as given (no checks).
fn archive(entries: &[Raw<'_>]) -> Vec<u8> {
    gzip(&tar(entries))
}

/// One gzip member holding `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// The tar of `entries` (with its two end-of-archive blocks), names written as given.
fn tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut tar = Vec::new();
    for raw in entries {
        let mut header = Header::new_ustar();
        header.as_old_mut().name[..raw.name.len()].copy_from_slice(raw.name.as_bytes());
        header.set_entry_type(raw.kind);
        header.set_size(raw.size.unwrap_or(raw.data.len() as u64));
        header.set_mode(0o644);
        if raw.kind == EntryType::Symlink {
            header.set_link_name("/etc/passwd").expect("link name");
        }
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(raw.data);
        tar.resize(tar.len().next_multiple_of(512), 0);
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// Extracts into `ROOT/dest`, so that escapes into `ROOT` can be checked.
fn extract(
    entries: &[Raw<'_>],
    limits: Limits,
) -> (tempfile::TempDir, Result<Extracted, SourceError>) {
    let root = tempfile::tempdir().expect("temp dir");
    let dest = root.path().join("dest");
    fs::create_dir(&dest).expect("dest");
    let result = extract_tar_gz(&archive(entries)[..], &dest, "o/r@0123abc", limits);
    (root, result)
}

fn refused(entries: &[Raw<'_>], entry: &str, reason: &str) {
    let (root, result) = extract(entries, Limits::default());
    if let Err(error) = &result {
        assert!(error.is_client_error(), "{error:?}");
    }
    match result {
        Err(SourceError::UnsafeEntry {
            entry: e,
            reason: r,
            ..
        }) => {
            assert_eq!(e, entry);
            assert!(r.contains(reason), "{r}");
        }
        other => panic!("{entry}: expected a refusal, got {other:?}"),
    }
    let outside: Vec<_> = fs::read_dir(root.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, ["dest"], "nothing written beside the destination");
}

#[test]
fn writes_files_and_folders_below_the_top_folder() {
    let (root, result) = extract(
        &[
            of_kind("pax_global_header", EntryType::XGlobalHeader),
            dir(&format!("{TOP}/")),
            dir(&format!("{TOP}/manifests/")),
            file(&format!("{TOP}/manifests/a.yaml"), b"registries: []\n"),
            file(&format!("{TOP}/images/b/images.yaml"), b"- name: b\n"),
            of_kind(&format!("{TOP}/link"), EntryType::Symlink),
            of_kind(&format!("{TOP}/hard"), EntryType::Link),
        ],
        Limits::default(),
    );
    let written = result.expect("extracted");
    assert_eq!(
        written,
        Extracted {
            files: 2,
            bytes: 25
        }
    );
    let dest = root.path().join("dest");
    assert_eq!(
        fs::read_to_string(dest.join("manifests/a.yaml")).expect("a"),
        "registries: []\n"
    );
    assert!(dest.join("images/b/images.yaml").is_file());
    assert!(!dest.join("link").exists() && !dest.join("hard").exists());
    assert!(!dest.join(TOP).exists(), "the top folder is dropped");
}

#[test]
fn refuses_escapes_and_odd_kinds() {
    let parent = format!("{TOP}/../evil");
    refused(&[file(&parent, b"x")], &parent, "`..`");
    refused(&[file("../evil", b"x")], "../evil", "`..`");
    refused(&[file("/tmp/evil", b"x")], "/tmp/evil", "absolute");
    let device = format!("{TOP}/dev");
    refused(
        &[of_kind(&device, EntryType::Char)],
        &device,
        "regular file",
    );
    let fifo = format!("{TOP}/fifo");
    refused(&[of_kind(&fifo, EntryType::Fifo)], &fifo, "regular file");
    refused(
        &[dir(&format!("{TOP}/")), file("other/x", b"x")],
        "other/x",
        "top-level",
    );
    refused(&[file("loose", b"x")], "loose", "top-level folder");
}

#[test]
fn caps_size_and_entries() {
    let big = format!("{TOP}/big");
    let limits = Limits {
        bytes: 10,
        entries: 3,
        stream: 1 << 20,
        ..Limits::default()
    };
    let (_root, result) = extract(&[file(&big, b"0123456789a")], limits);
    assert!(
        matches!(&result, Err(SourceError::TooLarge { entry: Some(e), limit: 10, .. }) if *e == big),
        "{result:?}"
    );
    // A header may claim more than it holds: refused before any read.
    let claimed = Raw {
        size: Some(MAX_BYTES + 1),
        ..file(&big, b"x")
    };
    let (_root, result) = extract(&[claimed], Limits::default());
    assert!(
        matches!(result, Err(SourceError::TooLarge { .. })),
        "{result:?}"
    );
    let (_root, result) = extract(
        &[
            dir(&format!("{TOP}/")),
            dir(&format!("{TOP}/a/")),
            dir(&format!("{TOP}/b/")),
            dir(&format!("{TOP}/c/")),
        ],
        limits,
    );
    assert!(
        matches!(result, Err(SourceError::TooManyEntries { limit: 3, .. })),
        "{result:?}"
    );
    let stream = Limits {
        stream: 1024,
        ..Limits::default()
    };
    let (_root, result) = extract(&[file(&big, &[7u8; 4096])], stream);
    let error = result.expect_err("stream too long");
    assert!(
        matches!(error, SourceError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(error.is_client_error());
}

#[test]
fn garbage_is_a_bad_archive() {
    let dest = tempfile::tempdir().expect("temp dir");
    let result = extract_tar_gz(
        &b"<html>not a tarball</html>"[..],
        dest.path(),
        "o/r@x",
        Limits::default(),
    );
    let error = result.expect_err("not gzip");
    assert!(matches!(error, SourceError::Archive { .. }), "{error:?}");
    assert!(error.to_string().contains("o/r@x"), "{error}");
    assert!(!error.is_retryable());
}

/// A PAX record: `LEN key=value\n`, LEN counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Extracts `entries` and returns the error it must end in.
fn refusal(entries: &[Raw<'_>]) -> SourceError {
    let (_root, result) = extract(entries, Limits::default());
    let error = result.expect_err("refused");
    assert!(
        error.is_client_error() && !error.is_retryable(),
        "{error:?}"
    );
    error
}

#[test]
fn long_names_and_pax_records_are_capped() {
    let file_name = format!("{TOP}/manifests/a.yaml");
    let target = || file(&file_name, b"registries: []\n");
    // A real long path (over 300 bytes) by each mechanism is read.
    let part = "d".repeat(100);
    let long_path = format!("{TOP}/{part}/{part}/{part}/images.yaml");
    let mut long_name = long_path.clone().into_bytes();
    long_name.push(0);
    let pax = pax_record("path", &long_path);
    for header in [
        Raw {
            data: &long_name,
            ..of_kind("././@LongLink", EntryType::GNULongName)
        },
        Raw {
            data: &pax,
            ..of_kind("PaxHeader/x", EntryType::XHeader)
        },
    ] {
        let (root, result) = extract(&[header, target()], Limits::default());
        let written = result.expect("a long path");
        assert_eq!(written.files, 1);
        let expected = long_path
            .strip_prefix(&format!("{TOP}/"))
            .unwrap_or_default();
        assert!(root.path().join("dest").join(expected).is_file());
    }
    // One mebibyte of name, by each mechanism: refused once 64 KiB were read, not buffered.
    let huge = format!("{TOP}/{}", "n".repeat(1 << 20));
    let mut huge_name = huge.clone().into_bytes();
    huge_name.push(0);
    let huge_pax = pax_record("path", &huge);
    for kind in [EntryType::GNULongName, EntryType::GNULongLink] {
        let header = Raw {
            data: &huge_name,
            ..of_kind("././@LongLink", kind)
        };
        let error = refusal(&[dir(&format!("{TOP}/")), header, target()]);
        assert!(
            matches!(&error, SourceError::OversizedHeader { limit, after: Some(after), .. }
                if *limit == MAX_HEADER_BYTES && after == &format!("{TOP}/")),
            "{error:?}"
        );
    }
    let header = Raw {
        data: &huge_pax,
        ..of_kind("PaxHeader/x", EntryType::XHeader)
    };
    let error = refusal(&[header, target()]);
    assert!(
        matches!(error, SourceError::OversizedHeader { after: None, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("65536 bytes of headers"),
        "{error}"
    );
}

#[test]
fn every_gzip_member_is_read() {
    let names = [
        format!("{TOP}/"),
        format!("{TOP}/manifests/a.yaml"),
        format!("{TOP}/images/b/images.yaml"),
    ];
    let entries = [
        dir(&names[0]),
        file(&names[1], b"registries: []\n"),
        file(&names[2], b"- name: b\n"),
    ];
    // `gzip a >x; gzip b >>x` of one tar cut in two: the second file is in the second member.
    let tar = tar(&entries);
    let (first, second) = tar.split_at(3 * 512);
    let mut members = gzip(first);
    members.extend(gzip(second));
    let root = tempfile::tempdir().expect("temp dir");
    let written = extract_tar_gz(&members[..], root.path(), "o/r@x", Limits::default())
        .expect("both members");
    assert_eq!(written.files, 2);
    assert!(root.path().join("images/b/images.yaml").is_file());
    // A last member of zeros (padding) is fine.
    let mut padded = archive(&entries);
    padded.extend(gzip(&[0u8; 10240]));
    let root = tempfile::tempdir().expect("temp dir");
    let written =
        extract_tar_gz(&padded[..], root.path(), "o/r@x", Limits::default()).expect("padding");
    assert_eq!(written.files, 2);
}

#[test]
fn data_after_the_archive_is_refused() {
    let (a, b) = (format!("{TOP}/a.yaml"), format!("{TOP}/b.yaml"));
    let first = archive(&[file(&a, b"a: 1\n")]);
    let second = archive(&[file(&b, b"b: 2\n")]);
    let mut two_archives = first.clone();
    two_archives.extend(&second);
    let mut garbage = first;
    garbage.extend(b"not gzip at all");
    for (what, bytes) in [("a second archive", two_archives), ("garbage", garbage)] {
        let root = tempfile::tempdir().expect("temp dir");
        let result = extract_tar_gz(&bytes[..], root.path(), "o/r@x", Limits::default());
        let error = result.expect_err(what);
        assert!(
            matches!(error, SourceError::Archive { .. }),
            "{what}: {error:?}"
        );
        assert!(error.is_client_error(), "{what}");
    }
    let root = tempfile::tempdir().expect("temp dir");
    let mut two = archive(&[file(&a, b"a: 1\n")]);
    two.extend(&second);
    let error = extract_tar_gz(&two[..], root.path(), "o/r@x", Limits::default())
        .expect_err("two archives");
    let text = crate::error_chain::error_chain(&error);
    assert!(
        text.contains("data after the end of the tar archive"),
        "{text}"
    );
}
