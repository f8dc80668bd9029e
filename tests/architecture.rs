//! The library's dependency direction, checked (as go-containerregistry's depcheck does): every
//! `crate::MODULE` path in a module of `shared/src` names a module of a lower layer.
//!
//! The layers follow the design (steps → copy, sign, state, notify → registry, plan, manifest →
//! reference), with the modules the design's table leaves out placed where their imports put
//! them. A module may use any module of a lower layer, and none of its own layer or above: a
//! new edge that breaks this is either a design change (move the module, and say why here) or
//! a dependency to turn around.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its layer; lower layers know nothing of higher ones.
const LAYERS: &[(&str, u8)] = &[
    // Names, the HTTP transport and small shared helpers: no other module.
    ("reference", 0),
    ("http", 0),
    ("files", 0),
    ("error_chain", 0),
    // Reading manifests, speaking to registries, decoding inbound events, queues.
    ("manifest", 1),
    ("registry", 1),
    ("events", 1),
    ("queue", 1),
    // Pure planning; state in object storage (its GCS backend reuses the registry module's
    // Google credentials and query encoding); notification sinks (the registry's retry rules).
    ("plan", 2),
    ("state", 2),
    ("notify", 2),
    // Signing promoted units (reads registries, takes plan units); fetching manifests to a
    // folder (object-store prefixes through `state`'s stores).
    ("sign", 3),
    ("source", 3),
    // What a registry holds under a prefix, as manifests (`promoter snapshot`).
    ("snapshot", 3),
    // How production differs from the manifests (`promoter reconcile`; signature tags as
    // `snapshot` recognises them).
    ("drift", 4),
    // Judging pushes against the desired state; checking staging digests against their
    // project's policy (reads signatures and attestations through `sign`).
    ("audit", 4),
    ("policy", 4),
    // The transfer engine (verifies required staging signatures, applies the policy, and
    // merges cosign signature images through `sign`'s format).
    ("copy", 5),
    // The step handlers: everything above.
    ("steps", 6),
];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read shared/src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module of `file` (the first path component below `src`), `None` for `lib.rs`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

/// Every module named by a `crate::MODULE` path in the code (comments left out) of `text`.
fn used_modules(text: &str) -> Vec<(usize, String)> {
    let mut used = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.push((number + 1, name));
            }
            rest = after;
        }
    }
    used
}

#[test]
fn modules_depend_only_on_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src");
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges = 0;
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(&layer) = layers.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` has no layer in tests/architecture.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (line, used) in used_modules(&text) {
            if used == module {
                continue;
            }
            edges += 1;
            match layers.get(used.as_str()) {
                Some(&to) if to < layer => {}
                Some(&to) => violations.push(format!(
                    "{}:{line}: `{module}` (layer {layer}) uses `{used}` (layer {to})",
                    file.display()
                )),
                None => violations.push(format!(
                    "{}:{line}: `{used}` is not a module with a layer",
                    file.display()
                )),
            }
        }
    }
    assert!(
        edges > 100,
        "found only {edges} cross-module paths: is the scan broken?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scan_finds_paths_and_skips_comments() {
    let text = "use crate::registry::Client;\n// crate::steps is a comment\nlet x = crate::sign::verify(); // crate::copy\n";
    assert_eq!(
        used_modules(text),
        [(1, "registry".to_owned()), (3, "sign".to_owned())]
    );
}
