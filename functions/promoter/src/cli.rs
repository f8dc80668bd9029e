//! The command line: subcommands, arguments and their help.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Promote container images from a staging registry to production registries, exactly as
/// reviewed promotion manifests say.
///
/// A promotion manifest lists a source (staging) registry, the destination (production)
/// registries, and for each image the digests to publish with their tags. It is either one
/// YAML file (`registries:` + `images:`) or a thin-manifest tree
/// (DIR/manifests/<project>/promoter-manifest.yaml + DIR/images/<project>/images.yaml), the
/// layout of the Kubernetes image promoter.
///
/// Exit codes: 0 success, 1 invalid manifests or refused plan, 2 usage error (bad arguments,
/// a path that cannot be read).
#[derive(Debug, Parser)]
#[command(name = "promoter", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests and report every problem at once, as FILE:LINE:COL: message.
    ///
    /// All PATHs are checked together, so two manifests that send different digests to the
    /// same destination tag are caught. A PATH is a manifest file, a thin-manifest tree (a
    /// folder with manifests/ and images/), or a folder of manifest files.
    ///
    /// Example: promoter validate examples/thin
    Validate {
        /// Manifest files or folders.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Show what a promotion would copy: one unit per source digest, with every destination
    /// repository and the tags it gets there. Contacts no registry, unless a project has a
    /// policy (manifests/<project>/policy.yaml).
    ///
    /// With --base (the manifests before the change, e.g. a checkout of the target branch),
    /// only what the change adds is planned, and removing anything the base promoted is refused
    /// unless --allow-removal is given (the promoter never deletes from production).
    ///
    /// Each new digest of a project with a policy is checked in staging (signature, provenance,
    /// vulnerabilities: pass, warn or fail, and why); exit code 1 when one fails a `require`
    /// rule (the presubmit).
    ///
    /// Example: promoter plan examples/thin --base /tmp/main/examples/thin --output markdown
    Plan {
        /// The manifests: a file, a thin-manifest tree, or a folder of manifest files.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// The manifests before the change; plan only the difference.
        #[arg(long, value_name = "PATH")]
        base: Option<PathBuf>,
        /// Accept a change that drops images or tags the base promoted (production keeps them).
        #[arg(long, requires = "base")]
        allow_removal: bool,
        /// How to print the plan.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Registries (staging, read to check policies).
        #[command(flatten)]
        registries: RegistryArgs,
    },
    /// Copy every planned digest from the source registry to every destination, exactly, and
    /// add its tags. Already promoted digests are skipped; a tag already pointing at another
    /// digest is never moved (that unit fails, the others go on).
    ///
    /// Credentials come from Docker's config.json ($DOCKER_CONFIG, or ~/.docker), including
    /// credential helpers. Exit code 1 when any unit failed.
    ///
    /// Example: promoter promote examples/promoter-manifest.yaml --dry-run
    Promote(PromoteArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check that an image has a valid cosign signature by a key, a sigstore bundle (cosign 3)
    /// or a legacy `.sig` signature; exit 0 only if it does. With --attestations, check its
    /// promotion record and SLSA verification summary instead.
    ///
    /// Example: promoter verify 127.0.0.1:5002/us/hello/hello:1.0 --key cosign.pub
    Verify {
        /// The image: HOST/REPOSITORY:TAG or HOST/REPOSITORY@sha256:...
        #[arg(value_name = "IMAGE")]
        image: String,
        /// The public key (PEM).
        #[arg(long, value_name = "PATH")]
        key: PathBuf,
        /// Count only signatures made for this name (their docker-reference), e.g. the
        /// canonical name the promoter signed under. Default: any name. cosign 3's signature
        /// statement names no image: a bundle counts when the key's promotion record names
        /// the image so.
        #[arg(long, value_name = "NAME")]
        reference: Option<String>,
        /// List and check the image's attestations by the key (every bundle referrer); exit 0
        /// only when a promotion record and a verification summary verify.
        #[arg(long)]
        attestations: bool,
        /// Registries.
        #[command(flatten)]
        registries: RegistryArgs,
    },
    /// Print what a registry holds under a prefix: every repository, digest and tag, in the
    /// images.yaml format (or CSV), for onboarding an existing registry into manifests and for
    /// comparing production with them.
    ///
    /// Repositories come from Google's listings (GCR, Artifact Registry) or the registry's
    /// catalog. Left out unless --all: index children without a tag of their own, and cosign's
    /// signature tags (sha256-<hex>.sig and the like).
    ///
    /// Example: promoter snapshot 127.0.0.1:5002/us/hello > images.yaml
    Snapshot {
        /// HOST/PREFIX: the repositories at and below it.
        #[arg(value_name = "REGISTRY/PREFIX")]
        prefix: String,
        /// How to print it.
        #[arg(long, short, value_enum, default_value_t = SnapshotOutput::Yaml)]
        output: SnapshotOutput,
        /// Include untagged index children and signature tags.
        #[arg(long)]
        all: bool,
        /// Registries.
        #[command(flatten)]
        registries: RegistryArgs,
    },
    /// Read production per repository (one tag listing each, plus a HEAD per tag where the
    /// registry lists no digests), report how it differs from the manifests, and repair it:
    /// copy the digests and tags missing and, with --key, sign the digests unsigned, as a
    /// recorded reconcile run through the same steps as `promote`. Tags pointing at another
    /// digest and tags nobody asked for are reported for people to judge: the promoter never
    /// moves or deletes. Exit 0 when production is as asked (or repaired), 1 otherwise;
    /// `--dry-run` reports only (exit 1 on any drift).
    ///
    /// Example: promoter reconcile examples/thin --key cosign.key --output json
    Reconcile {
        /// Also name digests present without any signature: neither their `sha256-<hex>.sig`
        /// tag nor their referrers fallback tag is listed (read from the same listing; a
        /// registry serving signatures through its referrers API alone is not read so).
        /// Implied by --key.
        #[arg(long)]
        signatures: bool,
        /// The manifests, the repair's signing, registries and state, as for `promote`
        /// (`--dry-run`: report only; `--revision`: the revision named in the report).
        #[command(flatten)]
        args: PromoteArgs,
    },
    /// Inspect and re-drive recorded promotion runs (on-call).
    ///
    /// Example: promoter runs list --state s3://promoter-state/prod
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Run one Lambda function's handler here, on an event file, exactly as deployed (on-call).
    ///
    /// The event is the invocation payload the function would get: a Function URL request, an
    /// SQS batch, an EventBridge event, or one queue message / on-call request as plain JSON;
    /// one the function does not take is refused (errorType Permanent.RefusedEvent).
    /// Configuration comes from the same PROMOTER_* environment variables as the function's
    /// (PROMOTER_STATE, PROMOTER_*_QUEUE_URL, …). Messages sent to in-process queues (no
    /// queue URL set) are printed after the result.
    ///
    /// Example: promoter invoke copy-digest --event message.json
    Invoke {
        /// validate-manifest, copy-digest, sign, notify or audit.
        #[arg(value_name = "FUNCTION", value_parser = parse_function)]
        function: promoter::steps::Function,
        /// The invocation payload (JSON).
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
    },
    /// Audit production: judge registry pushes against the desired state.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Edit manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

/// `promoter manifest …`.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Add tags (and their digest) of an image to a project's images.yaml, or to a plain
    /// manifest, in place: the tag joins its digest's entry, or a digest entry joins the image,
    /// or the image is appended. Every other byte of the file is kept. Without --digest, each
    /// TAG is resolved in the project's staging registry. Adding what is there changes
    /// nothing; a tag that names another digest already is refused with its line.
    ///
    /// Example: promoter manifest add . --project hello --image hello --tag 1.1
    ///
    /// Example: promoter manifest add . --project hello --image hello --all-new --tag-pattern 'v\d+\.\d+\.\d+'
    Add {
        /// A thin-manifest tree (with --project) or a plain manifest file.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// The project (its folder under manifests/ and images/) in a thin-manifest tree.
        #[arg(long)]
        project: Option<String>,
        /// The image, as named in the manifest (below the registries).
        #[arg(long)]
        image: String,
        /// A tag to add (repeat for several).
        #[arg(long = "tag", required_unless_present = "all_new")]
        tags: Vec<String>,
        /// The digest the tags name; default: each tag as staging resolves it.
        #[arg(long, conflicts_with = "all_new")]
        digest: Option<String>,
        /// Add every tag of the image in staging that matches --tag-pattern and the manifest
        /// does not list yet (what a release engineer does after a release build); cosign's
        /// signature tags are never added.
        #[arg(long, requires = "tag_pattern")]
        all_new: bool,
        /// A regular expression a tag must match whole with --all-new, e.g. 'v1\.2\.\d+'.
        #[arg(long, value_name = "REGEX")]
        tag_pattern: Option<String>,
        /// Commit the change with git (in the file's repository), with a message listing what
        /// was added.
        #[arg(long)]
        commit: bool,
        /// Open a pull request with the change through GitHub's API (as `kpromo pr`): a new
        /// branch off the base, one commit, the pull request. The token is PROMOTER_GITHUB_TOKEN
        /// or GITHUB_TOKEN; the API PROMOTER_GITHUB_API (default https://api.github.com). The
        /// base branch must hold the file as it was before the edit.
        #[arg(long)]
        pull_request: bool,
        /// The GitHub repository (OWNER/NAME) of --pull-request; default: from `git remote
        /// get-url origin`.
        #[arg(long, value_name = "OWNER/NAME", requires = "pull_request")]
        github_repository: Option<String>,
        /// The base branch of --pull-request; default: the repository's default branch.
        #[arg(long, value_name = "BRANCH", requires = "pull_request")]
        base_branch: Option<String>,
        /// Registries.
        #[command(flatten)]
        registries: RegistryArgs,
    },
}

/// `promoter audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Serve the audit endpoint (what the audit function's URL does) for registries'
    /// notifications: CNCF distribution webhooks and Pub/Sub pushes, authenticated by
    /// PROMOTER_AUDIT_TOKEN (Authorization: Bearer TOKEN, or ?token=TOKEN). Alerts go to the
    /// sinks configured by the PROMOTER_* notification variables, from this process.
    ///
    /// Example: PROMOTER_AUDIT_TOKEN=s3cret promoter audit serve --listen 127.0.0.1:8090
    Serve {
        /// The address to listen on.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
    },
}

fn parse_function(name: &str) -> Result<promoter::steps::Function, String> {
    name.parse()
}

/// Options of `promoter promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The manifests: a file, a thin-manifest tree, or a folder of manifest files.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Contact registries read-only and print exactly what would be copied, mounted, skipped
    /// and tagged. Writes no state.
    #[arg(long)]
    pub dry_run: bool,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t = PromoteOutput::Text)]
    pub output: PromoteOutput,
    /// The revision being promoted (e.g. the merged commit); it names the run, so promoting the
    /// same revision again resumes that run. Default: a hash of the plan.
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Copy without recording state: no resume after a crash, no run history.
    #[arg(long)]
    pub no_state: bool,
    /// Plan and observe every unit, not only what the state's promoted ledger does not hold
    /// yet (repairs what was changed in production behind the promoter's back).
    #[arg(long)]
    pub full: bool,
    /// Sign every promoted digest with this key, cosign's way (one signature per digest, pushed
    /// to every destination beside the signatures already there): a PKCS#8 P-256 PEM file (see
    /// `promoter keys generate`) or an AWS KMS key, awskms:///KEY-ID-ALIAS-OR-ARN.
    #[arg(long, env = "PROMOTER_SIGN_KEY", value_name = "PATH|awskms:///KEY")]
    pub key: Option<String>,
    /// Sign under a canonical public name: destinations starting with PREFIX are named
    /// CANONICAL instead (e.g. us-docker.pkg.dev/prod/images=registry.example.io), so one
    /// signature verifies in every mirror. Repeatable; default: the first destination's name.
    #[arg(
        long = "sign-identity",
        env = "PROMOTER_SIGN_IDENTITIES",
        value_delimiter = ',',
        value_name = "PREFIX=CANONICAL",
        value_parser = promoter::steps::config::parse_identity
    )]
    pub sign_identities: Vec<(String, String)>,
    /// With --key, also sign every child of an index (each platform's image), as `cosign sign
    /// --recursive` does.
    #[arg(long, env = "PROMOTER_SIGN_INDEX_CHILDREN", requires = "key")]
    pub sign_index_children: bool,
    /// With --key, the signature formats written: `bundle` (cosign 3: a sigstore bundle
    /// attached as an OCI referrer), `legacy` (the `sha256-<hex>.sig` image older cosign
    /// reads) or `both`.
    #[arg(
        long,
        env = "PROMOTER_SIGNATURE_FORMAT",
        default_value = "both",
        value_name = "bundle|legacy|both"
    )]
    pub signature_format: promoter::sign::SignatureFormat,
    /// With --key, attach no promotion record and no SLSA verification summary (attached by
    /// default beside each bundle signature).
    #[arg(long, env = "PROMOTER_NO_ATTESTATIONS")]
    pub no_attestations: bool,
    /// Promotion policy: refuse any staging digest without a valid signature by this public key
    /// (a maintainer's); such a unit fails and nothing of it is written.
    #[arg(long, env = "PROMOTER_REQUIRE_SIGNATURE", value_name = "PUB")]
    pub require_signature: Option<PathBuf>,
    /// Units (source digests) copied at the same time.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub parallel_units: usize,
    /// Registries.
    #[command(flatten)]
    pub registries: RegistryArgs,
    /// State.
    #[command(flatten)]
    pub state: StateArgs,
}

/// Where promotion state lives.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// Where promotion state lives: a folder, file:///path, s3://bucket/prefix (configured the
    /// AWS way, AWS_ENDPOINT_URL_S3 included) or gs://bucket/prefix (STORAGE_EMULATOR_HOST
    /// honoured).
    #[arg(
        long = "state",
        env = "PROMOTER_STATE",
        default_value = ".promoter",
        value_name = "URL"
    )]
    pub url: String,
    /// Seconds a unit's lease lasts without renewal; a worker that dies holding one is replaced
    /// after this (at once on its own machine).
    #[arg(
        long,
        env = "PROMOTER_LEASE_SECONDS",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub lease_seconds: u64,
}

/// How to reach registries.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// A registry host (HOST[:PORT]) to reach over plain HTTP. Loopback hosts always are.
    #[arg(
        long = "insecure-registry",
        env = "PROMOTER_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub insecure_registries: Vec<String>,
    /// A registry host to authenticate with Amazon ECR tokens besides `*.dkr.ecr.*.amazonaws.com`
    /// (e.g. a VPC endpoint). AWS credentials and region come from the usual AWS chain.
    #[arg(
        long = "ecr-registry",
        env = "PROMOTER_ECR_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub ecr_registries: Vec<String>,
    /// A registry host to authenticate with a Google access token besides `gcr.io`, `*.gcr.io`
    /// and `*.pkg.dev` (GOOGLE_APPLICATION_CREDENTIALS, gcloud, or the metadata server).
    #[arg(
        long = "google-registry",
        env = "PROMOTER_GOOGLE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub google_registries: Vec<String>,
    /// Requests in flight per registry host.
    #[arg(
        long,
        env = "PROMOTER_MAX_CONCURRENT_REQUESTS",
        default_value_t = 32,
        value_name = "N"
    )]
    pub max_concurrent_requests: usize,
    /// Requests per second per registry host. By default only Google's registries (gcr.io,
    /// *.pkg.dev) are rate limited, at 50/s (Artifact Registry's quota); 429 answers are
    /// always honoured through Retry-After.
    #[arg(
        long,
        env = "PROMOTER_MAX_REQUESTS_PER_SECOND",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_requests_per_second: Option<u32>,
    /// Seconds a request (to a registry, token endpoint or GitHub) may take in all, headers and
    /// body, before it fails and is retried; blob transfers have 30 minutes. A connection must
    /// open within 10 s and no answer may stay silent for 30 s.
    #[arg(
        long,
        env = "PROMOTER_REQUEST_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub request_timeout: u64,
}

/// `promoter keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new ECDSA P-256 key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.
    Generate {
        /// Where to write, without extension (e.g. `cosign`).
        #[arg(value_name = "PREFIX")]
        prefix: PathBuf,
    },
}

/// `promoter runs …`: on-call commands over the recorded runs.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the runs, newest first: id, status, unit counts, revision.
    List {
        /// State.
        #[command(flatten)]
        state: StateArgs,
        /// How to print.
        #[arg(long, short, value_enum, default_value_t = PromoteOutput::Text)]
        output: PromoteOutput,
    },
    /// Show one run: every unit with its status, attempts, duration and error.
    Show {
        /// The run id (from `promoter runs list`).
        run: String,
        /// State.
        #[command(flatten)]
        state: StateArgs,
        /// How to print.
        #[arg(long, short, value_enum, default_value_t = PromoteOutput::Text)]
        output: PromoteOutput,
    },
    /// Re-drive a run's failed (or unfinished) units now, or one unit with --unit.
    Retry {
        /// The run id.
        run: String,
        /// Only this unit (even if it is done: production is observed first, so this only
        /// repairs what is missing).
        #[arg(long, value_name = "ID")]
        unit: Option<String>,
        /// Sign what is re-driven with this key (as `promote --key`): a key file or
        /// awskms:///KEY. Without it, re-driven units are copied but not signed.
        #[arg(long, env = "PROMOTER_SIGN_KEY", value_name = "PATH|awskms:///KEY")]
        key: Option<String>,
        /// The canonical name signed for destinations under PREFIX (as `promote`).
        #[arg(
        long = "sign-identity",
        env = "PROMOTER_SIGN_IDENTITIES",
        value_delimiter = ',',
        value_name = "PREFIX=CANONICAL",
        value_parser = promoter::steps::config::parse_identity
    )]
        sign_identities: Vec<(String, String)>,
        /// State.
        #[command(flatten)]
        state: StateArgs,
        /// Registries.
        #[command(flatten)]
        registries: RegistryArgs,
        /// How to print.
        #[arg(long, short, value_enum, default_value_t = PromoteOutput::Text)]
        output: PromoteOutput,
    },
    /// Enqueue a deployed run's unfinished units again onto copy-digest's queue (after its
    /// messages went to the dead-letter queue, or were lost): the functions finish the run.
    Redrive {
        /// The run id (from `promoter runs list`).
        run: String,
        /// copy-digest's SQS queue.
        #[arg(long, env = "PROMOTER_COPY_QUEUE_URL", value_name = "URL")]
        copy_queue_url: String,
        /// State.
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Output formats of `promoter promote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PromoteOutput {
    /// A progress bar on a terminal, then a summary naming each failure.
    Text,
    /// One JSON document (schema `promoter.promote/v1`) with every unit and action.
    Json,
}

/// Output formats of `promoter snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotOutput {
    /// The images.yaml format (a thin manifest's images file, or a plain manifest's `images`).
    Yaml,
    /// `image,digest,tag` rows.
    Csv,
}

/// Output formats of `promoter plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people at a terminal.
    Text,
    /// For machines (schema `promoter.plan/v1`, see the README).
    Json,
    /// A summary for a pull-request comment.
    Markdown,
}
