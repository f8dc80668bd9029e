//! The guides' commands, run as written: every ```` ```sh ```` block of `docs/*.md` and of
//! `examples/manifest-repo/README.md`, and the presubmit of `examples/manifest-repo`.
//!
//! Each guide runs in a session of its own: the local example of `docs/README.md` first (it
//! starts a staging and a production registry with `infra/local/stack.sh` on free ports, seeds
//! staging, clones the sample manifest repository into a scratch folder and promotes it), then
//! the guide's blocks, in order. Each block is one `bash` script (`set -euo pipefail`); the
//! variables it sets (exported: `set -a`) and its working directory carry over to the next
//! block, as in one terminal. The session sets only what a reader's shell would hold:
//! `PROMOTER_STAGING_PORT` / `PROMOTER_PRODUCTION_PORT` (free ports, the variables `stack.sh`
//! reads), `PROMOTER_STACK_DIR`, `GUIDE` (the scratch folder), `AUDIT_ADDR`, a git identity, and
//! the built `promoter` first on `PATH`. A block that exits non-zero fails the test, with its
//! file, line, script and output.
//!
//! ```` ```console ```` blocks need a cloud or GitHub (aws, gcloud, sam, gh, docker): they are
//! not run, and each must say so on its first line (`# not runnable locally: WHY`, or `# not
//! run by the tests: WHY` for a release build that would take minutes). Every other
//! fence names a language that is not a shell, so a command cannot hide from this test; and
//! every file under `docs/` must be one of the files run here.
//!
//! The presubmit (`examples/manifest-repo/hack/presubmit.sh`, what
//! `.github/workflows/presubmit.yaml` runs) is run on the sample repository against a base it
//! adds to, on invalid manifests and on a removal, with and without the removal label.
//!
//! Needs what `infra/local/test.sh` installs: `docker-registry`, `skopeo`, `htpasswd`, `curl`,
//! `python3`, `git` and `openssl`.

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The guides, each run after the local example of `docs/README.md`.
const GUIDES: [&str; 4] = [
    "maintainer-guide.md",
    "owner-guide.md",
    "oncall-runbook.md",
    "deployment.md",
];
/// How every `console` block starts: it needs a cloud, or (rarely) is too heavy for a test.
const NOT_RUN: [&str; 2] = ["# not runnable locally: ", "# not run by the tests: "];
/// Fence languages that are shells: only `sh` (run) and `console` (not run) are allowed.
const SHELLS: [&str; 7] = [
    "bash",
    "shell",
    "zsh",
    "shell-session",
    "sh-session",
    "",
    "fish",
];
/// How long one block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

// ---------------------------------------------------------------------------------------------
// Fenced blocks.

/// One fenced code block of a Markdown file.
#[derive(Clone, Debug)]
struct Block {
    /// The file, relative to the repository root.
    file: String,
    /// The line of the opening fence (1-based).
    line: usize,
    /// The info string's first word (`sh`, `console`, `yaml`, … or empty).
    lang: String,
    /// The lines between the fences.
    body: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A fenced block being read.
struct OpenFence<'t> {
    /// `` ` `` or `~`.
    fence: char,
    /// How many of them.
    len: usize,
    /// The opening fence's indentation.
    indent: usize,
    /// The opening fence's line (1-based).
    line: usize,
    /// The info string's first word.
    lang: String,
    /// The content so far.
    lines: Vec<&'t str>,
}

/// The fenced blocks of `path` (backtick or tilde fences, at most 3 spaces of indentation, which
/// the content loses too; a block closes at a fence of the same character at least as long).
fn blocks(path: &Path) -> Vec<Block> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = path
        .strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string();
    let mut found = Vec::new();
    let mut open: Option<OpenFence<'_>> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let fence = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        if let Some(current) = &mut open {
            let closing = fence(current.fence);
            if indent <= 3 && closing >= current.len && trimmed[closing..].trim().is_empty() {
                found.push(Block {
                    file: file.clone(),
                    line: current.line,
                    lang: std::mem::take(&mut current.lang),
                    body: current.lines.join("\n"),
                });
                open = None;
            } else {
                // As CommonMark: the content loses up to the fence's indentation (a list item's).
                let strip = indent.min(current.indent);
                current.lines.push(&line[strip..]);
            }
        } else if indent <= 3 {
            for c in ['`', '~'] {
                let n = fence(c);
                if n >= 3 {
                    open = Some(OpenFence {
                        fence: c,
                        len: n,
                        indent,
                        line: index + 1,
                        lang: trimmed[n..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                        lines: Vec::new(),
                    });
                    break;
                }
            }
        }
    }
    assert!(open.is_none(), "{file}: a fence is never closed");
    found
}

/// `docs/NAME`.
fn doc(name: &str) -> PathBuf {
    repo_root().join("docs").join(name)
}

/// Every file whose blocks this test runs.
fn run_files() -> Vec<PathBuf> {
    let mut files = vec![doc("README.md")];
    files.extend(GUIDES.iter().map(|g| doc(g)));
    files.push(repo_root().join("examples/manifest-repo/README.md"));
    files
}

#[test]
fn every_shell_block_is_run_or_says_why_not() {
    let docs: BTreeSet<String> = fs::read_dir(repo_root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    let known: BTreeSet<String> = std::iter::once("README.md")
        .chain(GUIDES)
        .map(str::to_owned)
        .collect();
    assert_eq!(
        docs, known,
        "every file of docs/ is run by this test: add a new guide to GUIDES"
    );

    let mut problems = Vec::new();
    let mut runnable = 0;
    for file in run_files() {
        for block in blocks(&file) {
            match block.lang.as_str() {
                "sh" => runnable += 1,
                "console" if !NOT_RUN.iter().any(|p| block.body.starts_with(p)) => {
                    problems.push(format!(
                        "{}: a console block starts with `{}WHY`",
                        block.at(),
                        NOT_RUN[0]
                    ));
                }
                "console" => {}
                lang if SHELLS.contains(&lang) => problems.push(format!(
                    "{}: fence `{lang}`: mark commands `sh` (run by this test) or `console` (not \
                     runnable locally), and output `text`",
                    block.at()
                )),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(runnable > 20, "only {runnable} sh blocks found");
}

/// GitHub's anchor of a heading: lowercase, punctuation dropped, spaces as hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(path: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(anchor_of(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn the_guides_links_lead_somewhere() {
    let mut problems = Vec::new();
    for file in run_files() {
        let text = fs::read_to_string(&file).expect("a guide");
        let mut fenced = false;
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fenced = !fenced;
                continue;
            }
            if fenced {
                continue;
            }
            for (start, _) in line.match_indices("](") {
                let rest = &line[start + 2..];
                let Some(end) = rest.find(')') else { continue };
                let target = &rest[..end];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
                let linked = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().expect("a folder").join(path)
                };
                let at = format!("{}:{}", file.display(), index + 1);
                if !linked.exists() {
                    problems.push(format!("{at}: {target}: no such file"));
                } else if !anchor.is_empty() && !anchors(&linked).contains(anchor) {
                    problems.push(format!("{at}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Running blocks as in one terminal.

/// A terminal-like session: the local stack on free ports, a scratch folder, and the shell
/// state (exported variables, working directory) carried from block to block.
struct Session {
    dir: tempfile::TempDir,
    /// Variables every block starts with (before the carried state is sourced).
    env: Vec<(String, String)>,
    /// Process groups of blocks that left a job in the background.
    background: Vec<u32>,
    blocks_run: usize,
}

impl Session {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("docs-commands-")
            .tempdir()
            .expect("a temporary folder");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("bin/");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_promoter"), bin.join("promoter"))
            .expect("link the promoter binary");
        let path = std::env::var("PATH").unwrap_or_default();
        let path = format!("{}:{path}:/usr/sbin:/sbin", bin.display());
        let [staging, production, audit] = free_ports();
        let text = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
        let env = vec![
            ("PATH".to_owned(), path),
            ("PROMOTER_STACK_DIR".into(), text(&dir.path().join("stack"))),
            ("PROMOTER_STAGING_PORT".into(), staging.to_string()),
            ("PROMOTER_PRODUCTION_PORT".into(), production.to_string()),
            ("GUIDE".into(), text(&dir.path().join("guide"))),
            ("AUDIT_ADDR".into(), format!("127.0.0.1:{audit}")),
            ("GIT_AUTHOR_NAME".into(), "Docs Test".into()),
            (
                "GIT_AUTHOR_EMAIL".into(),
                "docs-test@example.invalid".into(),
            ),
            ("GIT_COMMITTER_NAME".into(), "Docs Test".into()),
            (
                "GIT_COMMITTER_EMAIL".into(),
                "docs-test@example.invalid".into(),
            ),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("NO_COLOR".into(), "1".into()),
        ];
        fs::write(dir.path().join("cwd"), text(&repo_root())).expect("write the start folder");
        Session {
            dir,
            env,
            background: Vec::new(),
            blocks_run: 0,
        }
    }

    /// Where `GUIDE` points.
    fn guide(&self) -> PathBuf {
        self.dir.path().join("guide")
    }

    /// Runs every `sh` block of `file`, in order; panics at the first that fails.
    fn run_file(&mut self, file: &Path) -> usize {
        let sh: Vec<Block> = blocks(file)
            .into_iter()
            .filter(|b| b.lang == "sh")
            .collect();
        for block in &sh {
            self.run(block);
        }
        sh.len()
    }

    /// Runs one block as a bash script: the carried state in, the new state out.
    fn run(&mut self, block: &Block) -> Output {
        self.blocks_run += 1;
        let n = self.blocks_run;
        let state = self.dir.path().join("state.sh");
        let cwd = self.dir.path().join("cwd");
        let script_path = self.dir.path().join(format!("block-{n}.sh"));
        let (stdout_path, stderr_path) = (
            self.dir.path().join(format!("block-{n}.out")),
            self.dir.path().join(format!("block-{n}.err")),
        );
        let script = format!(
            "set -a\n\
             if [ -f '{state}' ]; then . '{state}'; fi\n\
             cd \"$(cat '{cwd}')\"\n\
             set -euo pipefail\n\
             # ---- {at}\n\
             {body}\n\
             # ----\n\
             export -p | grep -v '^declare -[a-zA-Z]*r' >'{state}.new'\n\
             mv '{state}.new' '{state}'\n\
             pwd >'{cwd}'\n",
            state = state.display(),
            cwd = cwd.display(),
            at = block.at(),
            body = block.body,
        );
        fs::write(&script_path, &script).expect("write the block's script");
        let mut command = Command::new("bash");
        command
            .arg(&script_path)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("stderr file"))
            .process_group(0);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            // A reader's own promoter configuration, or a test runner's, must not leak in.
            if key.starts_with("PROMOTER_") || key == "DOCKER_CONFIG" || key == "GUIDE" {
                command.env_remove(&*key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn bash");
        let pid = child.id();
        if block.body.lines().any(|l| l.trim_end().ends_with('&')) {
            self.background.push(pid);
        }
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for bash") {
                break status;
            }
            if started.elapsed() > BLOCK_TIMEOUT {
                kill_group(pid);
                let _ = child.wait();
                panic!(
                    "{}: the block did not finish in {BLOCK_TIMEOUT:?}:\n{}\n--- stdout\n{}\n--- stderr\n{}",
                    block.at(),
                    block.body,
                    fs::read_to_string(&stdout_path).unwrap_or_default(),
                    fs::read_to_string(&stderr_path).unwrap_or_default(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = Output {
            status,
            stdout: fs::read(&stdout_path).unwrap_or_default(),
            stderr: fs::read(&stderr_path).unwrap_or_default(),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "==> {} ({:.1}s, {status})\n{}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            block.at(),
            started.elapsed().as_secs_f64(),
            block.body
        );
        assert!(
            status.success(),
            "{}: the block failed ({status}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            block.at(),
            block.body
        );
        output
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for &group in &self.background {
            kill_group(group);
        }
        // The registries of the local example, stopped by their pid files.
        let _ = Command::new("bash")
            .arg(repo_root().join("infra/local/stack.sh"))
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// SIGTERM to the process group `group` (a block's bash and what it left running).
fn kill_group(group: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

/// Three distinct free ports on 127.0.0.1 (held together while picked).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let port = |l: &TcpListener| l.local_addr().expect("its address").port();
    [
        port(&listeners[0]),
        port(&listeners[1]),
        port(&listeners[2]),
    ]
}

/// Runs the local example and then `file`; returns the session for checks.
fn run_guide(file: &Path) -> Session {
    let mut session = Session::new();
    let setup = session.run_file(&doc("README.md"));
    assert!(setup > 0, "docs/README.md has the local example's blocks");
    let run = session.run_file(file);
    assert!(run > 0, "{} has no sh block", file.display());
    session
}

/// The audit records (`audit/DATE/ID.json`) in the session's local state, as JSON.
fn audit_records(session: &Session) -> Vec<serde_json::Value> {
    let root = session.guide().join("state/audit");
    let mut records = Vec::new();
    for day in fs::read_dir(&root).into_iter().flatten().flatten() {
        for entry in fs::read_dir(day.path()).into_iter().flatten().flatten() {
            let text = fs::read_to_string(entry.path()).expect("an audit record");
            records.push(serde_json::from_str(&text).expect("JSON"));
        }
    }
    records
}

#[test]
fn maintainer_guide() {
    let session = run_guide(&doc("maintainer-guide.md"));
    drop(session);
}

#[test]
fn owner_guide() {
    let session = run_guide(&doc("owner-guide.md"));
    let records = audit_records(&session);
    let reasons: Vec<String> = records
        .iter()
        .map(|r| match r["verdict"]["kind"].as_str() {
            Some("unapproved") => r["verdict"]["reason"]["kind"]
                .as_str()
                .unwrap_or("?")
                .to_owned(),
            other => other.unwrap_or("?").to_owned(),
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r == "unknown_digest") && reasons.iter().any(|r| r == "approved"),
        "the emergency push is reported, then approved once recorded: {reasons:?}"
    );
}

#[test]
fn oncall_runbook() {
    let session = run_guide(&doc("oncall-runbook.md"));
    drop(session);
}

#[test]
fn deployment_guide() {
    let session = run_guide(&doc("deployment.md"));
    drop(session);
}

#[test]
fn manifest_repo_readme() {
    let session = run_guide(&repo_root().join("examples/manifest-repo/README.md"));
    drop(session);
}

// ---------------------------------------------------------------------------------------------
// The presubmit of the sample manifest repository.

fn sample_repo() -> PathBuf {
    repo_root().join("examples/manifest-repo")
}

/// `hack/presubmit.sh PR BASE` with the built promoter; (exit code, stdout, stderr).
fn presubmit(pr: &Path, base: &Path, allow_removal: bool) -> (Option<i32>, String, String) {
    let mut command = Command::new("bash");
    command
        .arg(sample_repo().join("hack/presubmit.sh"))
        .arg(pr)
        .arg(base)
        .env("PROMOTER", env!("CARGO_BIN_EXE_promoter"))
        .env_remove("PRESUBMIT_ALLOW_REMOVAL");
    if allow_removal {
        command.env("PRESUBMIT_ALLOW_REMOVAL", "true");
    }
    let output = command.output().expect("run hack/presubmit.sh");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A copy of the sample repository, changed by `edit` (file relative to the root, text).
fn changed_copy(dir: &Path, name: &str, edits: &[(&str, &str, &str)]) -> PathBuf {
    let copy = dir.join(name);
    let status = Command::new("cp")
        .arg("-r")
        .arg(sample_repo())
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    for (file, from, to) in edits {
        let path = copy.join(file);
        let text = fs::read_to_string(&path).expect("read a sample file");
        assert!(text.contains(from), "{file} has no {from:?}");
        fs::write(&path, text.replace(from, to)).expect("edit a sample file");
    }
    copy
}

/// The tools project's one image entry in the sample (removing it is a removal; removing only
/// its digest would leave an empty `dmap`, which is invalid).
const DEBUG_V1: &str = "- name: debug\n  dmap:\n    \"sha256:7ebf941186ca5a7b140e4b0e7e1e0aaf15af95c9c9a4b2c7f8a5080115441c07\": [\"v1\"]\n";

#[test]
fn presubmit_comments_the_plan_of_what_a_change_adds() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The target branch before the tools project's first image: the sample adds it.
    let base = changed_copy(dir.path(), "base", &[]);
    fs::write(base.join("images/tools/images.yaml"), "[]\n").expect("empty the tools images");
    let (code, comment, stderr) = presubmit(&sample_repo(), &base, false);
    assert_eq!(code, Some(0), "{comment}\n{stderr}");
    assert!(comment.starts_with("<!-- promoter-presubmit -->\n### Promotion plan"));
    assert!(
        comment.contains("| `debug` | `sha256:7ebf941186ca` | v1 | new | 2 |"),
        "{comment}"
    );
    assert!(
        !comment.contains("hello"),
        "only what the change adds: {comment}"
    );

    // Against itself: nothing to promote, still a pass.
    let (code, comment, _) = presubmit(&sample_repo(), &sample_repo(), false);
    assert_eq!(code, Some(0));
    assert!(comment.contains("Nothing to promote."), "{comment}");
}

#[test]
fn presubmit_fails_on_invalid_manifests_and_on_removals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let invalid = changed_copy(
        dir.path(),
        "invalid",
        &[("images/tools/images.yaml", "[\"v1\"]", "[v1, 1.0]")],
    );
    let (code, comment, _) = presubmit(&invalid, &sample_repo(), false);
    assert_eq!(code, Some(1), "{comment}");
    assert!(
        comment.contains("`promoter validate .` exited with status 1")
            && comment.contains("\nimages/tools/images.yaml:4:")
            && comment.contains("quote it"),
        "{comment}"
    );

    let removal = changed_copy(
        dir.path(),
        "removal",
        &[("images/tools/images.yaml", DEBUG_V1, "")],
    );
    let (code, comment, _) = presubmit(&removal, &sample_repo(), false);
    assert_eq!(code, Some(1), "{comment}");
    assert!(
        comment.contains("(target branch) images/tools/images.yaml:")
            && comment.contains("promoter/allow-removal"),
        "{comment}"
    );
    // An owner's label lets it through; the comment lists what is no longer promoted.
    let (code, comment, _) = presubmit(&removal, &sample_repo(), true);
    assert_eq!(code, Some(0), "{comment}");
    assert!(comment.contains("No longer in the manifests"), "{comment}");

    // A base that cannot be read is a usage error, reported as such.
    let (code, _, _) = presubmit(&sample_repo(), &dir.path().join("missing"), false);
    assert_eq!(code, Some(2));
}

#[test]
fn the_workflow_runs_the_presubmit_and_posts_its_comment() {
    let path = sample_repo().join(".github/workflows/presubmit.yaml");
    let workflow = fs::read_to_string(&path).expect("the workflow");
    for expected in [
        "pull_request:",
        "branches: [main]",
        "ref: ${{ github.event.pull_request.base.sha }}",
        "bash base/hack/presubmit.sh pr base",
        "cargo +stable install --locked --git",
        "uses: actions/github-script@v7",
        "<!-- promoter-presubmit -->",
        "promoter/allow-removal",
    ] {
        assert!(
            workflow.contains(expected),
            "{}: no {expected:?}",
            path.display()
        );
    }
    // The marker the comment step looks for is the one the script prints first.
    let script = fs::read_to_string(sample_repo().join("hack/presubmit.sh")).expect("script");
    assert!(script.contains("echo '<!-- promoter-presubmit -->'"));
}
