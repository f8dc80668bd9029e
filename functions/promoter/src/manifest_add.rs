//! `promoter manifest add`: adds tags of an image to a manifest file in place (the edit itself
//! is the library's [`promoter::manifest::edit`]); resolves tags in staging when no digest is
//! given; checks the whole manifest set again before keeping the change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use promoter::manifest::edit::{self, Addition, Edited};
use promoter::manifest::{self, Loaded, PromotionManifest};
use promoter::reference::{Digest, ImageName, Tag};

use crate::cli::RegistryArgs;
use crate::config::client;
use crate::exit::{INVALID, print_diagnostics};

/// What `promoter manifest add` was asked.
pub struct Request {
    /// The tree or file.
    pub path: PathBuf,
    /// The project, in a tree.
    pub project: Option<String>,
    /// The image.
    pub image: String,
    /// The tags.
    pub tags: Vec<String>,
    /// The digest, if given.
    pub digest: Option<String>,
    /// `--all-new`: the pattern staging's tags must match.
    pub new_tags: Option<String>,
    /// `--commit`: commit the change with git.
    pub commit: bool,
    /// `--pull-request`: open a pull request with the change.
    pub pull_request: Option<PullRequest>,
    /// How to reach staging.
    pub registries: RegistryArgs,
}

/// Where `--pull-request` opens its pull request.
pub struct PullRequest {
    /// `--github-repository`; default: the `origin` remote's.
    pub repository: Option<String>,
    /// `--base-branch`; default: the repository's default branch.
    pub base: Option<String>,
}

/// Runs `promoter manifest add`: exit 0 when added (or already there), 1 when refused (a tag
/// naming another digest, a layout it does not edit, invalid manifests).
pub fn run(request: &Request) -> anyhow::Result<ExitCode> {
    let image: ImageName = request
        .image
        .parse()
        .with_context(|| format!("--image `{}`", request.image))?;
    let mut tags = request
        .tags
        .iter()
        .map(|t| t.parse::<Tag>().with_context(|| format!("--tag `{t}`")))
        .collect::<anyhow::Result<Vec<Tag>>>()?;
    let loaded = load_valid(&request.path)?;
    let Some(loaded) = loaded else {
        return Ok(INVALID);
    };
    let target = target(&loaded, &request.path, request.project.as_deref())?;
    let file = target.images_file.to_path_buf();
    if let Some(pattern) = &request.new_tags {
        tags.extend(new_tags(request, target, &image, pattern)?);
        if tags.is_empty() {
            println!(
                "Nothing to add: no tag of {image} in staging matches `{pattern}` that {} does not list.",
                file.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let by_digest = digests(request, target, &image, &tags)?;
    let original =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut added = Vec::new();
    for (digest, tags) in by_digest {
        let text = std::fs::read_to_string(&file)?;
        let images = images_of(&request.path, &file)?;
        let addition = Addition {
            image: image.clone(),
            digest,
            tags,
        };
        let edited = match edit::add(&text, &images, &addition) {
            Ok(edited) => edited,
            Err(refused) => {
                eprintln!("{}:{}: {refused}", file.display(), refused.line());
                return Ok(INVALID);
            }
        };
        match edited {
            Edited::Unchanged => {}
            Edited::Changed { text, added: what } => {
                write_atomically(&file, &text)?;
                added.extend(what);
            }
        }
    }
    if added.is_empty() {
        println!("Nothing to add: {} already lists it.", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let after = manifest::load(std::slice::from_ref(&request.path))?;
    if !after.is_valid() {
        write_atomically(&file, &original)?;
        print_diagnostics(&after.diagnostics);
        bail!(
            "the edit made the manifests invalid; {} restored",
            file.display()
        );
    }
    for line in &added {
        println!("Added to {}: {line}", file.display());
    }
    if request.commit {
        commit(&file, &image, &added)?;
    }
    if let Some(pull) = &request.pull_request {
        let edited = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        crate::pull_request::open(pull, &file, &image, &tags, &added, &original, &edited)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Commits `file` alone with git, the message listing `added`.
fn commit(file: &Path, image: &ImageName, added: &[String]) -> anyhow::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().context("the edited file has a name")?;
    let message = commit_message(image, added);
    git(dir, &["add".as_ref(), "--".as_ref(), name])?;
    git(
        dir,
        &[
            "commit".as_ref(),
            "--quiet".as_ref(),
            "-m".as_ref(),
            message.as_ref(),
            "--".as_ref(),
            name,
        ],
    )?;
    println!("Committed {}.", file.display());
    Ok(())
}

/// Runs git in `dir`; its trimmed standard output, or its standard error as the error.
pub fn git<A: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[A]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!(
            "git {}: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The commit message of an addition: what was added, one line each.
pub fn commit_message(image: &ImageName, added: &[String]) -> String {
    let mut message = format!("Promote {image}\n\nAdded by `promoter manifest add`:\n\n");
    for line in added {
        message.push_str(&format!("- {line}\n"));
    }
    message
}

/// The manifests at `path`, or `None` (diagnostics printed) when they are invalid already.
fn load_valid(path: &Path) -> anyhow::Result<Option<Loaded>> {
    let loaded = manifest::load(&[path.to_path_buf()])?;
    if !loaded.is_valid() {
        print_diagnostics(&loaded.diagnostics);
        eprintln!("error: fix the manifests before adding to them");
        return Ok(None);
    }
    Ok(Some(loaded))
}

/// The manifest to edit: the project's in a tree, the only one of a plain file.
fn target<'a>(
    loaded: &'a Loaded,
    path: &Path,
    project: Option<&str>,
) -> anyhow::Result<&'a PromotionManifest> {
    match project {
        Some(project) => loaded
            .manifests
            .iter()
            .find(|m| m.project == project)
            .with_context(|| format!("no project `{project}` in {}", path.display())),
        None => match loaded.manifests.as_slice() {
            [only] => Ok(only),
            _ => bail!(
                "{} holds {} manifests: name one with --project",
                path.display(),
                loaded.manifests.len()
            ),
        },
    }
}

/// The tags grouped by the digest each names: `--digest`, or staging's answer per tag.
fn digests(
    request: &Request,
    target: &PromotionManifest,
    image: &ImageName,
    tags: &[Tag],
) -> anyhow::Result<BTreeMap<Digest, Vec<Tag>>> {
    if let Some(digest) = &request.digest {
        let digest: Digest = digest
            .parse()
            .with_context(|| format!("--digest `{digest}`"))?;
        return Ok(BTreeMap::from([(digest, tags.to_vec())]));
    }
    let source = source(target, image)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = client(&request.registries).await?;
        let mut out: BTreeMap<Digest, Vec<Tag>> = BTreeMap::new();
        for tag in tags {
            let Some(digest) = client.resolve(&source, tag).await? else {
                bail!("{source}:{tag} does not exist in staging");
            };
            out.entry(digest).or_default().push(tag.clone());
        }
        Ok(out)
    })
}

/// Staging's tags of `image` matching `pattern` (whole) that the manifest does not list for it,
/// cosign's signature tags left out.
fn new_tags(
    request: &Request,
    target: &PromotionManifest,
    image: &ImageName,
    pattern: &str,
) -> anyhow::Result<Vec<Tag>> {
    let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
        .with_context(|| format!("--tag-pattern `{pattern}`"))?;
    let listed: std::collections::HashSet<&Tag> = target
        .images
        .iter()
        .filter(|i| &i.name == image)
        .flat_map(|i| &i.digests)
        .flat_map(|d| d.tags.iter())
        .collect();
    let source = source(target, image)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let staged = runtime.block_on(async {
        let client = client(&request.registries).await?;
        anyhow::Ok(client.tags(&source).await?)
    })?;
    Ok(staged
        .into_iter()
        .filter(|t| pattern.is_match(t.as_str()))
        .filter(|t| !promoter::snapshot::is_signature_tag(t))
        .filter(|t| !listed.contains(t))
        .collect())
}

/// The staging repository of `image`.
fn source(
    target: &PromotionManifest,
    image: &ImageName,
) -> anyhow::Result<promoter::reference::Repository> {
    Ok(target
        .source()
        .context("the manifest has no source registry")?
        .name
        .repository(image))
}

/// The images the loader reads from `file` (part of the manifests at `path`).
fn images_of(path: &Path, file: &Path) -> anyhow::Result<Vec<manifest::Image>> {
    let loaded = manifest::load(&[path.to_path_buf()])?;
    Ok(loaded
        .manifests
        .into_iter()
        .find(|m| &*m.images_file == file)
        .map(|m| m.images)
        .unwrap_or_default())
}

/// Replaces `file` with `text` (a temporary file beside it, renamed over it).
fn write_atomically(file: &Path, text: &str) -> anyhow::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("a temporary file in {}", dir.display()))?;
    std::fs::write(temporary.path(), text)?;
    temporary
        .persist(file)
        .with_context(|| format!("replacing {}", file.display()))?;
    Ok(())
}
