//! Helpers shared by the workspace integration tests.

use std::path::{Path, PathBuf};

/// The `tests/data` folder of this crate.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The reference corpus of real manifests beside the project (`../shared/corpus/k8s.io`).
///
/// Every machine the tests run on has it (CI clones the project beside `shared/`); a test that
/// needs it fails naming the folder rather than passing without it.
pub fn k8s_corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/k8s.io");
    assert!(
        dir.is_dir(),
        "the corpus of real manifests is missing: {} (it lives beside the project)",
        dir.display()
    );
    dir
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
