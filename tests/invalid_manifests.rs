//! Malformed manifests: every one must be rejected, with exactly the diagnostics a person needs.
//!
//! Each case in `data/invalid/` is either a plain manifest `NAME.yaml` or a thin-manifest tree
//! `NAME/` (with `manifests/<project>/promoter-manifest.yaml` and/or
//! `images/<project>/images.yaml`), beside `NAME.expected`: the diagnostics the loader must print,
//! one per line, with file names relative to `data/invalid/`. Every expected line was read by a
//! person and is the right message at the right `LINE:COL`; none is a blind snapshot.
//!
//! A second test generates many errors over several files, to check that all of them are
//! reported, each once, in file/line/column order.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use promoter::manifest::{Severity, load};
use promoter_tests::{data_dir, render_diagnostics};

/// The corpus must not shrink below this, so that the test cannot pass on an empty folder.
const MIN_CASES: usize = 45;

/// One case of the corpus: its name and the path to hand to the loader.
struct Case {
    name: String,
    input: PathBuf,
    expected: PathBuf,
}

/// Every case in `dir`, sorted by name; panics on an input without `.expected` or the reverse.
fn cases(dir: &Path) -> Vec<Case> {
    let mut inputs = BTreeSet::new();
    let mut expectations = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("the invalid corpus folder is readable") {
        let path = entry.expect("a corpus entry is readable").path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("corpus names are UTF-8")
            .to_owned();
        if path.is_dir() {
            inputs.insert(file_name);
        } else if let Some(name) = file_name.strip_suffix(".yaml") {
            inputs.insert(name.to_owned());
        } else if let Some(name) = file_name.strip_suffix(".expected") {
            expectations.insert(name.to_owned());
        } else {
            panic!("unexpected file in the invalid corpus: {}", path.display());
        }
    }
    let unpaired: Vec<_> = inputs.symmetric_difference(&expectations).collect();
    assert!(
        unpaired.is_empty(),
        "every case needs both an input and a NAME.expected; unpaired: {unpaired:?}"
    );
    inputs
        .into_iter()
        .map(|name| {
            let plain = dir.join(format!("{name}.yaml"));
            let input = if plain.is_file() {
                plain
            } else {
                dir.join(&name)
            };
            let expected = dir.join(format!("{name}.expected"));
            Case {
                name,
                input,
                expected,
            }
        })
        .collect()
}

#[test]
fn every_invalid_manifest_is_rejected_with_the_expected_diagnostics() {
    let root = data_dir().join("invalid");
    let cases = cases(&root);
    assert!(
        cases.len() >= MIN_CASES,
        "the invalid corpus has {} cases, expected at least {MIN_CASES}",
        cases.len()
    );
    let mut report = String::new();
    let mut failures = 0;
    for case in &cases {
        let loaded = load(std::slice::from_ref(&case.input))
            .unwrap_or_else(|e| panic!("case {}: the loader refused the path: {e}", case.name));
        let actual = render_diagnostics(&loaded.diagnostics, &root);
        let expected = std::fs::read_to_string(&case.expected)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", case.expected.display()));
        let expected = expected.trim();
        let mut problems = Vec::new();
        if actual != expected {
            problems.push("the diagnostics differ".to_owned());
        }
        if !loaded
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
        {
            problems.push("no error-severity diagnostic".to_owned());
        }
        if loaded.is_valid() {
            problems.push("the manifests are considered valid".to_owned());
        }
        if !problems.is_empty() {
            failures += 1;
            let _ = writeln!(
                report,
                "=== {}: {}\n--- expected\n{expected}\n--- actual\n{actual}\n",
                case.name,
                problems.join("; ")
            );
        }
    }
    assert!(
        failures == 0,
        "{failures} of {} invalid cases failed:\n\n{report}",
        cases.len()
    );
}

/// A plain manifest whose images carry `errors` bad digests and tags, one error per line.
fn manifest_with_errors(errors: usize, seed: usize) -> String {
    let mut text = String::from(
        "registries:\n\
         - name: gcr.io/k8s-staging-generated\n  src: true\n\
         - name: registry.k8s.io/generated\n\
         images:\n",
    );
    let _ = writeln!(text, "- name: generated-{seed}\n  dmap:");
    for i in 0..errors {
        let n = seed * 1000 + i;
        if i % 2 == 0 {
            // A digest one hex digit short.
            let _ = writeln!(text, "    \"sha256:{n:063x}\": [\"v{n}\"]");
        } else {
            // A valid digest with a tag that starts with a dot.
            let _ = writeln!(text, "    \"sha256:{n:064x}\": [\".v{n}\"]");
        }
    }
    text
}

#[test]
fn one_hundred_errors_over_three_files_are_all_reported_in_order() {
    let dir = tempfile::TempDir::new().expect("a temporary folder can be created");
    let counts = [40, 35, 25];
    let paths: Vec<PathBuf> = counts
        .iter()
        .enumerate()
        .map(|(seed, &errors)| {
            let path = dir.path().join(format!("manifest-{seed}.yaml"));
            std::fs::write(&path, manifest_with_errors(errors, seed))
                .expect("the generated manifest can be written");
            path
        })
        .collect();
    // Hand the files over in reverse so that the order of the result owes nothing to the input.
    let reversed: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    let loaded = load(&reversed).expect("the generated manifests are readable");

    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(
        errors.len(),
        100,
        "expected exactly 100 errors, got:\n{}",
        render_diagnostics(&loaded.diagnostics, dir.path())
    );
    assert_eq!(
        loaded.diagnostics.len(),
        100,
        "no diagnostic but the 100 errors"
    );
    assert!(!loaded.is_valid());

    let keys: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.file.to_path_buf(), d.pos.line, d.pos.col))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "diagnostics are sorted by (file, line, col)");
    let distinct: BTreeSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), 100, "each error is at its own position");

    for (path, &count) in paths.iter().zip(&counts) {
        let in_file: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| *d.file == **path)
            .collect();
        assert_eq!(in_file.len(), count, "errors in {}", path.display());
        // The entries start on line 8, one per line, in the order they were written.
        for (i, d) in in_file.iter().enumerate() {
            let line = u32::try_from(8 + i).expect("a small line number");
            assert_eq!(d.pos.line, line, "{d}");
            let expected = if i % 2 == 0 {
                "a sha256 digest has 64 hex digits after `sha256:`, this one has 63"
            } else {
                "a tag starts with a letter, a digit or `_`, not `.`"
            };
            assert!(d.message.ends_with(expected), "{d}");
        }
    }
}

/// A `registries:` file of a thin tree.
const THIN_REGISTRIES: &str = "registries:\n- name: gcr.io/k8s-staging-x\n  src: true\n\
                               - name: registry.k8s.io/x\n";

/// An `images.yaml` with one valid image, named `name`.
fn thin_images(name: &str) -> String {
    format!(
        "- name: {name}\n  dmap:\n    \"sha256:{}\": [\"v1\"]\n",
        "ab".repeat(32)
    )
}

/// Loads `paths` on another thread: a reader that blocks (on a FIFO, in a loop) fails the
/// test after a minute instead of hanging it.
fn load_within_a_minute(paths: Vec<PathBuf>) -> Result<promoter::manifest::Loaded, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let loaded = load(&paths).map_err(|e| promoter::error_chain::error_chain(&e));
        let _ = sender.send(loaded);
    });
    receiver
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("loading finished within a minute (a FIFO or a loop must not block it)")
}

/// What a pull request could add to a thin tree to make the checker hang, or quote a file
/// from outside the tree: a link to a credentials file, a FIFO, a loop, a link back up the
/// tree, a file over the size cap. Each is refused, named, and never read; a link to a file
/// inside the tree is followed.
#[cfg(unix)]
#[test]
fn hostile_files_are_refused_without_being_read() {
    use std::os::unix::fs::symlink;

    const SECRET: &str = "SECRET-KEY-NEVER-SHOWN";
    let outside = tempfile::TempDir::new().expect("a temporary folder");
    let credentials = outside.path().join("credentials");
    std::fs::write(&credentials, format!("aws_secret_access_key = {SECRET}\n"))
        .expect("write the credentials");
    let tree = tempfile::TempDir::new().expect("a temporary folder");
    let root = tree.path();
    let write = |relative: &str, content: &str| {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    };
    for project in ["a", "b", "c", "d", "e"] {
        write(
            &format!("manifests/{project}/promoter-manifest.yaml"),
            THIN_REGISTRIES,
        );
    }
    // a: images.yaml is a link to the credentials, outside the tree.
    std::fs::create_dir_all(root.join("images/a")).expect("mkdir");
    symlink(&credentials, root.join("images/a/images.yaml")).expect("link");
    // b: images.yaml is a FIFO nobody writes to.
    std::fs::create_dir_all(root.join("images/b")).expect("mkdir");
    let fifo = std::process::Command::new("mkfifo")
        .arg(root.join("images/b/images.yaml"))
        .status()
        .expect("mkfifo runs");
    assert!(fifo.success());
    // c: images.yaml links to itself, and a folder link points back up the tree.
    std::fs::create_dir_all(root.join("images/c")).expect("mkdir");
    symlink("images.yaml", root.join("images/c/images.yaml")).expect("link");
    symlink("..", root.join("images/c/up")).expect("link");
    // d: images.yaml is one byte over the cap (sparse: nothing is written).
    std::fs::create_dir_all(root.join("images/d")).expect("mkdir");
    std::fs::File::create(root.join("images/d/images.yaml"))
        .and_then(|f| f.set_len(promoter::manifest::MAX_FILE_BYTES + 1))
        .expect("a large file");
    // e: images.yaml links to a file inside the tree: followed.
    write("shared/e-images.yaml", &thin_images("e"));
    std::fs::create_dir_all(root.join("images/e")).expect("mkdir");
    symlink(
        "../../shared/e-images.yaml",
        root.join("images/e/images.yaml"),
    )
    .expect("link");

    let loaded = load_within_a_minute(vec![root.to_path_buf()]).expect("the tree loads");
    let canonical = std::fs::canonicalize(root).expect("canonical root");
    let rendered = render_diagnostics(&loaded.diagnostics, root)
        .replace(&canonical.display().to_string(), "ROOT");
    assert!(!rendered.contains(SECRET), "{rendered}");
    assert_eq!(
        rendered,
        [
            "images/a/images.yaml:1:1: a symbolic link to a path outside ROOT: refused, not read",
            "images/b/images.yaml:1:1: a FIFO (named pipe), not a regular file: refused, not read",
            "images/c/images.yaml:1:1: a symbolic link that loops (Too many levels of symbolic \
             links (os error 40)): refused, not followed",
            "images/c/up:1:1: a symbolic link to a folder: not followed (manifests are read from \
             real folders; put the folder here instead of a link)",
            "images/d/images.yaml:1:1: the file holds more than 4194304 bytes (4 MiB), more than \
             any manifest: refused",
        ]
        .join("\n")
    );
    let e = loaded.manifests.iter().find(|m| m.project == "e");
    assert_eq!(
        e.map(|m| m.images.len()),
        Some(1),
        "the link inside the tree is followed"
    );
}

/// A FIFO named `*.yaml`, in a folder or named directly, is refused without being opened
/// (opening it would wait for a writer forever).
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::TempDir::new().expect("a temporary folder");
    let fifo = dir.path().join("manifest.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    for path in [dir.path().to_path_buf(), fifo] {
        let loaded = load_within_a_minute(vec![path]).expect("a diagnostic, not an error");
        assert_eq!(
            render_diagnostics(&loaded.diagnostics, dir.path()),
            "manifest.yaml:1:1: a FIFO (named pipe), not a regular file: refused, not read"
        );
    }
}

/// The cause of an unreadable path is printed once (it was printed twice: once by the error,
/// once as its source).
#[test]
fn an_unreadable_path_names_its_cause_once() {
    let dir = tempfile::TempDir::new().expect("a temporary folder");
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, "registries: []\n").expect("write");
    // A path through a file: "Not a directory".
    let through = file.join("x.yaml");
    let error = load(std::slice::from_ref(&through)).expect_err("unreadable");
    let chain = promoter::error_chain::error_chain(&error);
    assert_eq!(
        chain,
        format!(
            "cannot read {}: Not a directory (os error 20)",
            through.display()
        )
    );
}
