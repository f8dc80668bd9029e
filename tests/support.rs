//! Helpers shared by the workspace integration tests.

use std::path::{Path, PathBuf};

/// The `tests/data` folder of this crate.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The sample of real Kubernetes manifests (two projects of kubernetes/k8s.io), copied from the
/// reference corpus beside the project (`../shared/corpus/k8s.io`) into `tests/data`, so that
/// the test reading it runs wherever the project is cloned.
pub fn k8s_corpus() -> PathBuf {
    data_dir().join("corpus/k8s.io")
}

/// The 65 real projects of the registry.k8s.io manifest tree (thin layout), copied byte for byte
/// from the reference corpus beside the project (`../shared/corpus/registry.k8s.io`; its README
/// gives the counts the conformance test asserts).
pub fn registry_k8s_io_corpus() -> PathBuf {
    data_dir().join("corpus/registry.k8s.io")
}

/// Renders diagnostics one per line, with `root` stripped from file names.
pub fn render_diagnostics(diagnostics: &[promoter::manifest::Diagnostic], root: &Path) -> String {
    let prefix = format!("{}/", root.display());
    diagnostics
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

pub mod harness;

/// `text` as a digest (the harness and skopeo speak strings; the library takes types).
pub fn digest(text: &str) -> promoter::reference::Digest {
    text.parse().expect("a sha256 digest")
}

/// `text` (`HOST/PATH`) as a repository.
pub fn repository(text: &str) -> promoter::reference::Repository {
    text.parse().expect("a HOST/PATH repository")
}
