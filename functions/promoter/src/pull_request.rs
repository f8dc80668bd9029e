//! `promoter manifest add --pull-request`: the edit, proposed as a pull request through
//! GitHub's API (the library's [`promoter::source::pull_request`]), as `kpromo pr` does.
//!
//! The file's path in the repository comes from git (`rev-parse --show-toplevel`), the
//! repository from `--github-repository` or the `origin` remote, the token from
//! `PROMOTER_GITHUB_TOKEN` or `GITHUB_TOKEN` (as `gh` reads it), the API from
//! `PROMOTER_GITHUB_API`. The branch is named after the image, the first tag and a hash of the
//! edited file (`promote/IMAGE-TAG-HASH`), so that running the same addition twice names the
//! same branch and GitHub refuses the second instead of opening a duplicate.

use std::path::Path;

use anyhow::{Context as _, bail};
use promoter::reference::{Digest, ImageName, Tag};
use promoter::source::GithubRepo;
use promoter::source::pull_request::{self, Change};

use crate::manifest_add::{PullRequest, commit_message, git};

/// The default GitHub API.
const GITHUB_API: &str = "https://api.github.com";

/// Opens the pull request of an addition to `file` (`before` → `after`).
pub fn open(
    pull: &PullRequest,
    file: &Path,
    image: &ImageName,
    tags: &[Tag],
    added: &[String],
    before: &str,
    after: &str,
) -> anyhow::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let top = git(dir, &["rev-parse", "--show-toplevel"])
        .context("--pull-request needs the manifests in a git repository")?;
    let path = path_in_repository(Path::new(&top), file)?;
    let repository = match &pull.repository {
        Some(repository) => repository.clone(),
        None => {
            let url = git(dir, &["remote", "get-url", "origin"])
                .context("no --github-repository, and no `origin` remote to take it from")?;
            origin_repository(&url).with_context(|| {
                format!("the `origin` remote `{url}` names no OWNER/NAME: pass --github-repository")
            })?
        }
    };
    let token = ["PROMOTER_GITHUB_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .context(
            "--pull-request needs a GitHub token: set GITHUB_TOKEN (or PROMOTER_GITHUB_TOKEN)",
        )?;
    let api_base = std::env::var("PROMOTER_GITHUB_API").unwrap_or_else(|_| GITHUB_API.to_owned());
    let hash = Digest::of(after.as_bytes());
    let first = tags.first().map_or("digests", Tag::as_str);
    let branch = format!("promote/{image}-{first}-{}", &hash.hex()[..8]);
    let tag_list: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    let title = format!("Promote {image} {}", tag_list.join(", "));
    let mut body = format!("Adds to `{path}`:\n\n");
    for line in added {
        body.push_str(&format!("- {line}\n"));
    }
    body.push_str("\nOpened by `promoter manifest add --pull-request`.\n");
    let message = commit_message(image, added);
    let change = Change {
        path: &path,
        before,
        after,
        branch: &branch,
        base: pull.base.as_deref(),
        message: &message,
        title: &title,
        body: &body,
    };
    let repo = GithubRepo {
        api_base: &api_base,
        repository: &repository,
        token: Some(&token),
    };
    let http = promoter::http::client(&promoter::http::Timeouts::default())
        .context("building the HTTP client")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let opened = runtime
        .block_on(pull_request::open(&http, &repo, &change))
        .with_context(|| format!("opening a pull request on {repository}"))?;
    println!(
        "Opened pull request #{}: {} ({branch} into {}).",
        opened.number, opened.url, opened.base
    );
    Ok(())
}

/// `file`'s path below the repository's top folder, `/`-separated.
fn path_in_repository(top: &Path, file: &Path) -> anyhow::Result<String> {
    let top = top
        .canonicalize()
        .with_context(|| format!("reading {}", top.display()))?;
    let file = file
        .canonicalize()
        .with_context(|| format!("reading {}", file.display()))?;
    let relative = file.strip_prefix(&top).with_context(|| {
        format!(
            "{} is outside the git repository {}",
            file.display(),
            top.display()
        )
    })?;
    let parts: Option<Vec<&str>> = relative.iter().map(|p| p.to_str()).collect();
    match parts {
        Some(parts) if !parts.is_empty() => Ok(parts.join("/")),
        _ => bail!("{} has no UTF-8 path in its repository", file.display()),
    }
}

/// `OWNER/NAME` of a remote URL: `https://github.com/OWNER/NAME(.git)`,
/// `git@github.com:OWNER/NAME(.git)` or `ssh://git@HOST/OWNER/NAME(.git)`.
fn origin_repository(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let mut parts = path.rsplit('/');
    let name = parts.next().filter(|p| !p.is_empty())?;
    let owner = parts.next().filter(|p| !p.is_empty())?;
    Some(format!("{owner}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::origin_repository;

    #[test]
    fn remotes_name_their_repository() {
        for url in [
            "https://github.com/kubernetes/k8s.io.git",
            "https://github.com/kubernetes/k8s.io",
            "git@github.com:kubernetes/k8s.io.git",
            "ssh://git@github.com/kubernetes/k8s.io.git",
        ] {
            assert_eq!(
                origin_repository(url).as_deref(),
                Some("kubernetes/k8s.io"),
                "{url}"
            );
        }
        assert_eq!(origin_repository("/srv/git/manifests"), None);
    }
}
