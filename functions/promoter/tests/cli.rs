//! The `promoter` binary as a user runs it: exit codes, stderr diagnostics, and golden
//! snapshots of the three plan formats (under `tests/snapshots/`, reviewed by hand).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs `promoter ARGS` from the examples folder, so paths in output are short and stable.
fn promoter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(args)
        .current_dir(examples())
        .output()
        .expect("run the promoter binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

#[test]
fn validate_valid_manifests_exits_zero() {
    let out = promoter(&["validate", "promoter-manifest.yaml", "thin"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "OK: 3 manifests, 5 images, 6 digests.\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn validate_reports_every_error_with_location_and_exits_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yaml");
    let text = "registries:\n- name: gcr.io/staging\n  src: true\n- name: prod.io/X\nimages:\n- name: app\n  dmap:\n    \"sha256:abc\": [\"v1\"]\n    \"sha256:0000000000000000000000000000000000000000000000000000000000000000\": [1.0, \"-x\"]\n";
    std::fs::write(&file, text).expect("write manifest");
    let out = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["validate", "bad.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run promoter");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "bad.yaml:4:9: invalid registry name `prod.io/X`: path component `X` is not valid: use lowercase letters and digits, separated by `.`, `_`, `__` or dashes\n\
         bad.yaml:8:5: invalid digest `sha256:abc`: a sha256 digest has 64 hex digits after `sha256:`, this one has 3\n\
         bad.yaml:9:81: tag 1.0 is read by YAML as a number; quote it: \"1.0\"\n\
         bad.yaml:9:86: invalid tag `-x`: a tag starts with a letter, a digit or `_`, not `-`\n\
         4 errors\n"
    );
}

#[test]
fn unreadable_path_and_bad_arguments_are_usage_errors() {
    let out = promoter(&["validate", "no-such-manifest.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: cannot read no-such-manifest.yaml: "),
        "{}",
        stderr(&out)
    );
    let out = promoter(&["plan"]);
    assert_eq!(out.status.code(), Some(2));
    let out = promoter(&["plan", "thin", "--output", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = promoter(&["plan", "thin", "--allow-removal"]);
    assert_eq!(out.status.code(), Some(2), "--allow-removal needs --base");
}

#[test]
fn help_explains_the_commands() {
    let out = promoter(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for expected in ["validate", "plan", "thin-manifest", "Exit codes"] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[test]
fn plan_text_snapshot() {
    let out = promoter(&["plan", "thin", "--base", "thin-base"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn plan_json_snapshot() {
    let out = promoter(&["plan", "thin", "--base", "thin-base", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().count(),
        1,
        "compact JSON, one document per line"
    );
    let plan: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    insta::assert_json_snapshot!(plan);
}

#[test]
fn plan_markdown_snapshot() {
    let out = promoter(&[
        "plan",
        "thin",
        "--base",
        "thin-base",
        "--output",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn plan_refuses_removals_unless_allowed() {
    let out = promoter(&["plan", "thin-removal", "--base", "thin-base"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "",
        "nothing is planned when a removal is refused"
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "thin-base/images/hello/images.yaml:4:5: the change removes sha256:589cfe70f8f0"
        ),
        "{err}"
    );
    assert!(err.ends_with("2 errors\n"), "{err}");

    let out = promoter(&[
        "plan",
        "thin-removal",
        "--base",
        "thin-base",
        "--allow-removal",
        "--output",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn plan_of_invalid_manifests_prints_no_plan() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("m.yaml"),
        "registries: []\nimages: []\nextra: 1\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["plan", "m.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run promoter");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "m.yaml:1:1: `registries` is empty: list the staging registry (with `src: true`) and the production registries\n\
         m.yaml:3:1: unknown field `extra` in the manifest; expected `registries`, `images` or `policy`\n2 errors\n"
    );
}

#[test]
fn validate_prints_all_hundred_errors_sorted_by_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let head = "registries:\n- name: gcr.io/staging\n  src: true\n- name: gcr.io/prod\nimages:\n- name: app\n  dmap:\n";
    // Written in reverse file order, to show that the output is sorted, not in load order.
    for (file, count) in [("c.yaml", 30), ("b.yaml", 30), ("a.yaml", 40)] {
        let mut text = head.to_owned();
        for i in 0..count {
            text.push_str(&format!("    \"sha256:{i:064x}\": [\"-bad{i}\"]\n"));
        }
        std::fs::write(dir.path().join(file), text).expect("write manifest");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["validate", "c.yaml", "b.yaml", "a.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run promoter");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 101, "{err}");
    assert_eq!(lines[100], "100 errors");
    let keys: Vec<(String, u32)> = lines[..100]
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ':');
            let file = parts.next().expect("file").to_owned();
            let line = parts.next().expect("line").parse().expect("line number");
            (file, line)
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "sorted by file and line:\n{err}"
    );
    assert_eq!(keys[0], ("a.yaml".to_owned(), 8));
    assert_eq!(keys[99], ("c.yaml".to_owned(), 37));
}
