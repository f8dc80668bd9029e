//! The AWS SAM template (`infra/aws/template.yaml`), parsed and checked against the
//! deployment's rules: least privilege per function, the queues' failure handling, the state
//! bucket, the signing key, the triggers and the configuration the functions read.
//!
//! The template is YAML with CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Sub`, …); it is
//! parsed with `saphyr-parser` into a small tree in which each short tag becomes the long form
//! (`{"Ref": …}`, `{"Fn::GetAtt": [..]}`), so both spellings are checked alike. Expressions are
//! then rendered as text (`!GetAtt CopyQueue.Arn` is `${CopyQueue.Arn}`) to compare resources.
//!
//! What is asserted (every rule reports each violation by function, role and statement `Sid`):
//!
//! - five `AWS::Serverless::Function`s, one per binary of `cargo lambda build --release`
//!   (`provided.al2023`, `bootstrap`, x86_64, JSON logs), copy-digest with the longest timeout;
//!   Function URLs (auth `NONE`) on validate-manifest and audit only;
//! - one `AWS::IAM::Role` per function, referenced by `Role:`, never shared, no other role
//!   but the reconcile schedule's (trusted by `scheduler.amazonaws.com` only, allowed only
//!   `lambda:InvokeFunction` on validate-manifest); no SAM `Policies`, no managed policy but
//!   `AWSLambdaBasicExecutionRole`;
//! - the scheduled reconcile: an `AWS::Scheduler::Schedule` whose target is validate-manifest,
//!   through that role, with the input `{"reconcile": …}`;
//! - in every role: no `*` or wildcard action, no `NotAction`/`NotResource`, only the services
//!   the functions use, and Resource `*` only for `ecr:GetAuthorizationToken` (AWS cannot scope
//!   it);
//! - ECR writes only in copy-digest's and sign's roles, and only on the production repository
//!   ARNs; validate-manifest only reads ECR (its reconcile) and has no KMS action; notify no
//!   ECR;
//! - S3 only on the state bucket, writes only below a prefix; audit writes only under `audit/`;
//! - `kms:Sign` only for sign: no role policy grants it elsewhere and the key policy grants it
//!   to sign's role alone; the key's public half only to sign, copy-digest and the account;
//! - `sns:Publish` only in notify's role, on the alert topic;
//! - each role sends only to the queues it feeds (those its environment names, and audit's
//!   failure destination) and consumes only the queue of its own event source; the topology is
//!   validate-manifest → copy → copy-digest → sign → sign → notify ← audit;
//! - logs only to the function's own log group;
//! - every SQS event source reports batch item failures, with the expected batch size, on a
//!   queue whose visibility timeout is at least 6× the function's timeout; every queue that is
//!   not a dead-letter queue has a redrive policy; every queue is encrypted;
//! - the ECR EventBridge rule (`ECR Image Action`, `SUCCESS`, production repository names) to
//!   audit; the state bucket versioned, encrypted, private and TLS-only; the signing key
//!   ECC_NIST_P256 for SIGN_VERIFY; the alert topic encrypted;
//! - no parameter named like a secret; every secret variable is a Secrets Manager (or SSM
//!   SecureString) dynamic reference; every `PROMOTER_*` variable set is one the code reads, and
//!   each function gets those its README lists.
//!
//! Each rule is also shown to catch a violation: the template is altered as text and the
//! expected message looked for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, Tag};

// ---------------------------------------------------------------------------- the YAML tree

/// A YAML node with CloudFormation's short tags turned into their long form.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    /// A scalar's text (types are resolved by the checks that need them).
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `get` along a path of keys.
    fn at(&self, path: &[&str]) -> Option<&Yaml> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    fn str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    fn entries(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A list's items, or the node itself when it is not a list (IAM's `Action: x`).
    fn items(&self) -> Vec<&Yaml> {
        match self {
            Yaml::Seq(items) => items.iter().collect(),
            other => vec![other],
        }
    }

    /// The node as text: plain scalars as they are, intrinsic functions as `${…}`
    /// placeholders the way `!Sub` writes them, anything else in a debug form.
    fn render(&self) -> String {
        match self {
            Yaml::Str(s) => s.clone(),
            Yaml::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                match (key.as_str(), value) {
                    ("Ref", Yaml::Str(name)) => format!("${{{name}}}"),
                    ("Fn::GetAtt", Yaml::Seq(parts)) => format!(
                        "${{{}}}",
                        parts.iter().map(Yaml::render).collect::<Vec<_>>().join(".")
                    ),
                    ("Fn::GetAtt", Yaml::Str(path)) => format!("${{{path}}}"),
                    ("Fn::Sub", Yaml::Str(text)) => text.clone(),
                    ("Fn::Sub", Yaml::Seq(parts)) if !parts.is_empty() => parts[0].render(),
                    ("Fn::Join", Yaml::Seq(parts)) if parts.len() == 2 => parts[1]
                        .items()
                        .iter()
                        .map(|p| p.render())
                        .collect::<Vec<_>>()
                        .join(&parts[0].render()),
                    _ => format!("{self:?}"),
                }
            }
            _ => format!("{self:?}"),
        }
    }
}

/// The long form of a CloudFormation short tag applied to `node`.
fn long_form(tag: &Tag, node: Yaml) -> Yaml {
    if tag.handle != "!" {
        return node; // `!!str` and friends: the core schema, nothing to keep
    }
    let name = tag.suffix.as_str();
    let key = match name {
        "Ref" | "Condition" => name.to_owned(),
        _ => format!("Fn::{name}"),
    };
    let value = match (name, node) {
        ("GetAtt", Yaml::Str(path)) => match path.split_once('.') {
            Some((resource, attribute)) => Yaml::Seq(vec![
                Yaml::Str(resource.to_owned()),
                Yaml::Str(attribute.to_owned()),
            ]),
            None => Yaml::Str(path),
        },
        (_, node) => node,
    };
    Yaml::Map(vec![(key, value)])
}

enum Frame {
    Seq(Vec<Yaml>, Option<Tag>),
    Map(Vec<(String, Yaml)>, Option<String>, Option<Tag>),
}

/// Parses a one-document YAML text into a [`Yaml`] tree, keeping short tags.
fn parse_yaml(text: &str) -> Result<Yaml, String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    let mut add = |stack: &mut Vec<Frame>, node: Yaml| -> Result<(), String> {
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => match node {
                    Yaml::Str(key) => *pending = Some(key),
                    other => return Err(format!("a mapping key that is not text: {other:?}")),
                },
            },
        }
        Ok(())
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            format!(
                "YAML error at {}:{}: {}",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            )
        })?;
        match event {
            Event::Scalar(value, _, _, tag) => {
                let node = Yaml::Str(value.into_owned());
                let node = match tag {
                    Some(tag) => long_form(&tag, node),
                    None => node,
                };
                add(&mut stack, node)?;
            }
            Event::SequenceStart(_, tag) => {
                stack.push(Frame::Seq(Vec::new(), tag.map(|t| (*t).clone())))
            }
            Event::MappingStart(_, tag) => {
                stack.push(Frame::Map(Vec::new(), None, tag.map(|t| (*t).clone())));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match stack.pop() {
                    Some(Frame::Seq(items, tag)) => (Yaml::Seq(items), tag),
                    Some(Frame::Map(entries, _, tag)) => (Yaml::Map(entries), tag),
                    None => return Err("unbalanced YAML events".to_owned()),
                };
                let node = match node {
                    (node, Some(tag)) => long_form(&tag, node),
                    (node, None) => node,
                };
                add(&mut stack, node)?;
            }
            Event::Alias(_) => {
                return Err(format!(
                    "line {}: aliases are not used in templates",
                    span.start.line()
                ));
            }
            Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => {}
        }
    }
    root.ok_or_else(|| "an empty YAML text".to_owned())
}

// ---------------------------------------------------------------------------- the template

/// The five functions, by the name of their binary (`target/lambda/NAME/`).
const VALIDATE: &str = "validate-manifest";
const COPY: &str = "copy-digest";
const SIGN: &str = "sign";
const NOTIFY: &str = "notify";
const AUDIT: &str = "audit";
const FUNCTIONS: [&str; 5] = [VALIDATE, COPY, SIGN, NOTIFY, AUDIT];

/// ECR actions that only read (everything else of `ecr:` writes or administers).
const ECR_READ: [&str; 7] = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:ListImages",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
];

/// S3 actions that only read.
const S3_READ: [&str; 5] = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketLocation",
];

/// The only actions allowed on Resource "*": AWS does not scope them to a resource.
const STAR_RESOURCE_EXCEPTIONS: [&str; 1] = ["ecr:GetAuthorizationToken"];

/// The services a function's role may use at all.
const SERVICES: [&str; 6] = ["logs", "s3", "sqs", "ecr", "sns", "kms"];

/// A function as the template declares it.
struct Function<'a> {
    /// Its logical id.
    id: String,
    /// The name of its binary.
    name: String,
    properties: &'a Yaml,
    /// The logical id of its role (`Role: !GetAtt ROLE.Arn`).
    role: Option<String>,
}

/// One IAM statement of a role, with where it comes from.
struct Statement<'a> {
    /// The function whose role holds it.
    function: String,
    /// `ROLE/POLICY/SID` (or the statement's index when it has no Sid).
    at: String,
    node: &'a Yaml,
}

impl Statement<'_> {
    fn allows(&self) -> bool {
        self.node.get("Effect").and_then(Yaml::str) == Some("Allow")
    }

    fn actions(&self) -> Vec<String> {
        self.node
            .get("Action")
            .map(|a| a.items().iter().map(|i| i.render()).collect())
            .unwrap_or_default()
    }

    fn resources(&self) -> Vec<String> {
        self.node
            .get("Resource")
            .map(|a| a.items().iter().map(|i| i.render()).collect())
            .unwrap_or_default()
    }

    fn has_action(&self, action: &str) -> bool {
        self.actions().iter().any(|a| glob_matches(a, action))
    }
}

/// IAM's action matching: `*` stands for any characters, case-insensitively.
fn glob_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// The template, and what the checks look up in it.
struct Template<'a> {
    root: &'a Yaml,
    functions: Vec<Function<'a>>,
}

impl<'a> Template<'a> {
    fn new(root: &'a Yaml) -> Self {
        let functions = resources_of(root, "AWS::Serverless::Function")
            .into_iter()
            .map(|(id, properties)| {
                let code = properties
                    .get("CodeUri")
                    .map(Yaml::render)
                    .unwrap_or_default();
                let name = code
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let role = properties
                    .get("Role")
                    .and_then(|r| match r.get("Fn::GetAtt") {
                        Some(Yaml::Seq(parts)) if parts.len() == 2 => {
                            (parts[1].str() == Some("Arn")).then(|| parts[0].render())
                        }
                        _ => None,
                    });
                Function {
                    id: id.to_owned(),
                    name,
                    properties,
                    role,
                }
            })
            .collect();
        Template { root, functions }
    }

    fn resource(&self, id: &str) -> Option<&'a Yaml> {
        self.root.at(&["Resources", id])
    }

    fn type_of(&self, id: &str) -> Option<&'a str> {
        self.resource(id)
            .and_then(|r| r.get("Type"))
            .and_then(Yaml::str)
    }

    fn function(&self, name: &str) -> Option<&Function<'a>> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Every statement of the role `role_id`: its inline policies, and the `AWS::IAM::Policy`,
    /// `RolePolicy` and `ManagedPolicy` resources attached to it.
    fn role_statements(&self, function: &str, role_id: &str) -> Vec<Statement<'a>> {
        let mut out = Vec::new();
        let mut add_document = |at: String, document: Option<&'a Yaml>| {
            let Some(statements) = document.and_then(|d| d.get("Statement")) else {
                return;
            };
            for (i, node) in statements.items().into_iter().enumerate() {
                let sid = node
                    .get("Sid")
                    .map(Yaml::render)
                    .unwrap_or_else(|| format!("statement {i}"));
                out.push(Statement {
                    function: function.to_owned(),
                    at: format!("{at}/{sid}"),
                    node,
                });
            }
        };
        if let Some(role) = self.resource(role_id) {
            let policies = role.at(&["Properties", "Policies"]);
            for policy in policies.map(Yaml::items).unwrap_or_default() {
                let name = policy
                    .get("PolicyName")
                    .map(Yaml::render)
                    .unwrap_or_default();
                add_document(format!("{role_id}/{name}"), policy.get("PolicyDocument"));
            }
        }
        let reference = format!("${{{role_id}}}");
        for (id, resource) in self
            .root
            .get("Resources")
            .map(Yaml::entries)
            .unwrap_or_default()
        {
            let kind = resource.get("Type").and_then(Yaml::str).unwrap_or_default();
            if !matches!(
                kind,
                "AWS::IAM::Policy" | "AWS::IAM::RolePolicy" | "AWS::IAM::ManagedPolicy"
            ) {
                continue;
            }
            let properties = resource.get("Properties");
            let attached = properties
                .and_then(|p| p.get("Roles"))
                .map(|r| r.items().iter().any(|i| i.render() == reference))
                .unwrap_or(false)
                || properties.and_then(|p| p.get("RoleName")).map(Yaml::render)
                    == Some(reference.clone());
            if attached {
                add_document(id.clone(), properties.and_then(|p| p.get("PolicyDocument")));
            }
        }
        out
    }

    /// Every statement of every function's role.
    fn all_statements(&self) -> Vec<Statement<'a>> {
        self.functions
            .iter()
            .filter_map(|f| f.role.as_ref().map(|r| self.role_statements(&f.name, r)))
            .flatten()
            .collect()
    }

    /// A function's environment: variable → rendered value.
    fn environment(&self, function: &Function<'_>) -> BTreeMap<String, String> {
        function
            .properties
            .at(&["Environment", "Variables"])
            .map(Yaml::entries)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.clone(), v.render()))
            .collect()
    }

    /// The SQS event sources of a function: (queue logical id, the mapping's properties, where).
    fn event_sources(&self, function: &Function<'a>) -> Vec<(String, &'a Yaml, String)> {
        let mut out = Vec::new();
        for (name, event) in function
            .properties
            .get("Events")
            .map(Yaml::entries)
            .unwrap_or_default()
        {
            if event.get("Type").and_then(Yaml::str) == Some("SQS")
                && let Some(properties) = event.get("Properties")
            {
                let queue = properties
                    .get("Queue")
                    .map(Yaml::render)
                    .unwrap_or_default();
                out.push((
                    logical_id(&queue),
                    properties,
                    format!("{}/Events/{name}", function.id),
                ));
            }
        }
        let reference = format!("${{{}}}", function.id);
        for (id, properties) in resources_of(self.root, "AWS::Lambda::EventSourceMapping") {
            if properties.get("FunctionName").map(Yaml::render) == Some(reference.clone()) {
                let queue = properties
                    .get("EventSourceArn")
                    .map(Yaml::render)
                    .unwrap_or_default();
                out.push((logical_id(&queue), properties, id.to_owned()));
            }
        }
        out
    }

    /// Queues that receive what failed elsewhere: redrive targets, EventBridge targets'
    /// dead-letter queues, asynchronous invocations' failure destinations.
    fn dead_letter_queues(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (_, properties) in resources_of(self.root, "AWS::SQS::Queue") {
            if let Some(target) = properties.at(&["RedrivePolicy", "deadLetterTargetArn"]) {
                out.insert(logical_id(&target.render()));
            }
        }
        for (_, properties) in resources_of(self.root, "AWS::Events::Rule") {
            for target in properties
                .get("Targets")
                .map(Yaml::items)
                .unwrap_or_default()
            {
                if let Some(arn) = target.at(&["DeadLetterConfig", "Arn"]) {
                    out.insert(logical_id(&arn.render()));
                }
            }
        }
        for function in &self.functions {
            out.extend(self.failure_destination(function));
        }
        out
    }

    /// The queue an asynchronous invocation that failed for good goes to.
    fn failure_destination(&self, function: &Function<'_>) -> Option<String> {
        function
            .properties
            .at(&[
                "EventInvokeConfig",
                "DestinationConfig",
                "OnFailure",
                "Destination",
            ])
            .map(|d| logical_id(&d.render()))
    }
}

/// The logical id in a rendered `${ID}` or `${ID.Attribute}`, else the text itself.
fn logical_id(rendered: &str) -> String {
    rendered
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .map(|r| r.split('.').next().unwrap_or(r).to_owned())
        .unwrap_or_else(|| rendered.to_owned())
}

/// The resources of one type: (logical id, properties).
fn resources_of<'a>(root: &'a Yaml, kind: &str) -> Vec<(&'a str, &'a Yaml)> {
    static EMPTY: Yaml = Yaml::Map(Vec::new());
    root.get("Resources")
        .map(Yaml::entries)
        .unwrap_or_default()
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Yaml::str) == Some(kind))
        .map(|(id, r)| (id.as_str(), r.get("Properties").unwrap_or(&EMPTY)))
        .collect()
}

fn number(node: Option<&Yaml>) -> Option<u64> {
    node.and_then(Yaml::str).and_then(|s| s.parse().ok())
}

// ---------------------------------------------------------------------------- the rules

/// Every rule's violations, one message each.
fn violations(text: &str) -> Vec<String> {
    let root = match parse_yaml(text) {
        Ok(root) => root,
        Err(error) => return vec![format!("the template does not parse: {error}")],
    };
    let template = Template::new(&root);
    let mut out = Vec::new();
    check_functions(&template, &mut out);
    check_roles(&template, &mut out);
    check_statements(&template, &mut out);
    check_queues_and_sources(&template, &mut out);
    check_signing_key(&template, &mut out);
    check_state_bucket(&template, &mut out);
    check_topic(&template, &mut out);
    check_ecr_rule(&template, &mut out);
    check_schedule(&template, &mut out);
    check_parameters_and_secrets(&template, &mut out);
    check_environment(&template, &mut out);
    out
}

fn check_functions(t: &Template<'_>, out: &mut Vec<String>) {
    if t.root.get("Transform").and_then(Yaml::str) != Some("AWS::Serverless-2016-10-31") {
        out.push("Transform is not AWS::Serverless-2016-10-31".to_owned());
    }
    let names: Vec<&str> = t.functions.iter().map(|f| f.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    let mut expected = FUNCTIONS.to_vec();
    expected.sort_unstable();
    if sorted != expected {
        out.push(format!(
            "the functions are {names:?} (by CodeUri), expected one each of {FUNCTIONS:?}"
        ));
    }
    for f in &t.functions {
        let p = f.properties;
        let code = p.get("CodeUri").map(Yaml::render).unwrap_or_default();
        if code != format!("../../target/lambda/{}/", f.name) {
            out.push(format!(
                "{}: CodeUri {code:?} is not cargo lambda build's ../../target/lambda/{}/",
                f.id, f.name
            ));
        }
        for (key, value) in [("Runtime", "provided.al2023"), ("Handler", "bootstrap")] {
            if p.get(key).map(Yaml::render).as_deref() != Some(value) {
                out.push(format!("{}: {key} is not {value}", f.id));
            }
        }
        if p.get("Architectures") != Some(&Yaml::Seq(vec![Yaml::Str("x86_64".into())])) {
            out.push(format!("{}: Architectures is not [x86_64]", f.id));
        }
        if p.at(&["LoggingConfig", "LogFormat"]).and_then(Yaml::str) != Some("JSON") {
            out.push(format!("{}: LoggingConfig.LogFormat is not JSON", f.id));
        }
        if number(p.get("MemorySize")).is_none() || number(p.get("Timeout")).is_none() {
            out.push(format!("{}: MemorySize and Timeout must be set", f.id));
        }
        let public = p.get("FunctionUrlConfig");
        let wants_url = f.name == VALIDATE || f.name == AUDIT;
        match (public, wants_url) {
            (Some(url), true) if url.get("AuthType").and_then(Yaml::str) == Some("NONE") => {}
            (_, true) => out.push(format!(
                "{}: needs a Function URL with AuthType NONE (its webhook authenticates itself)",
                f.id
            )),
            (Some(_), false) => out.push(format!("{}: must not have a Function URL", f.id)),
            (None, false) => {}
        }
        if p.get("Policies").is_some() {
            out.push(format!(
                "{}: SAM Policies are not allowed: permissions live in the function's own role",
                f.id
            ));
        }
    }
    let timeout = |name| {
        t.function(name)
            .and_then(|f| number(f.properties.get("Timeout")))
    };
    if let Some(copy) = timeout(COPY) {
        for name in FUNCTIONS.iter().filter(|n| **n != COPY) {
            if timeout(name).is_some_and(|other| other >= copy) {
                out.push(format!(
                    "{name}'s timeout is not shorter than copy-digest's ({copy} s)"
                ));
            }
        }
        if copy > 900 {
            out.push(format!(
                "copy-digest's timeout {copy} s is above Lambda's 900 s"
            ));
        }
    }
}

fn check_roles(t: &Template<'_>, out: &mut Vec<String>) {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &t.functions {
        match &f.role {
            Some(role) if t.type_of(role) == Some("AWS::IAM::Role") => {
                users.entry(role.clone()).or_default().push(f.name.clone());
            }
            Some(role) => out.push(format!(
                "{}: Role !GetAtt {role}.Arn is not an AWS::IAM::Role of the template",
                f.id
            )),
            None => out.push(format!(
                "{}: Role must be !GetAtt ROLE.Arn of its own AWS::IAM::Role",
                f.id
            )),
        }
    }
    for (role, functions) in &users {
        if functions.len() > 1 {
            out.push(format!(
                "role {role} is shared by {functions:?}: one role per function"
            ));
        }
    }
    for (id, properties) in resources_of(t.root, "AWS::IAM::Role") {
        if is_scheduler_role(properties) {
            continue;
        }
        if !users.contains_key(id) {
            out.push(format!("role {id} serves no function"));
        }
        for arn in properties
            .get("ManagedPolicyArns")
            .map(Yaml::items)
            .unwrap_or_default()
        {
            let arn = arn.render();
            if !arn.ends_with(":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole") {
                out.push(format!(
                    "role {id}: managed policy {arn} (only AWSLambdaBasicExecutionRole is allowed)"
                ));
            }
        }
        let trust = properties.at(&["AssumeRolePolicyDocument", "Statement"]);
        for statement in trust.map(Yaml::items).unwrap_or_default() {
            let services = statement.at(&["Principal", "Service"]).map(Yaml::items);
            let only_lambda = services
                .is_some_and(|s| s.iter().all(|s| s.render() == "lambda.amazonaws.com"))
                && statement.at(&["Principal", "AWS"]).is_none();
            if !only_lambda {
                out.push(format!(
                    "role {id}: trusted by something else than lambda.amazonaws.com"
                ));
            }
        }
    }
}

fn check_statements(t: &Template<'_>, out: &mut Vec<String>) {
    let bucket = "${StateBucket.Arn}";
    for s in t.all_statements() {
        let (f, at) = (&s.function, &s.at);
        if s.node.get("NotAction").is_some() || s.node.get("NotResource").is_some() {
            out.push(format!("{f}: {at} uses NotAction/NotResource"));
        }
        if !s.allows() {
            continue;
        }
        let actions = s.actions();
        let resources = s.resources();
        for action in &actions {
            if action.contains('*') {
                out.push(format!("{f}: {at} has the wildcard action {action:?}"));
            }
            let service = action.split(':').next().unwrap_or_default();
            if !SERVICES.contains(&service) {
                out.push(format!(
                    "{f}: {at} uses {action}, a service the functions do not need"
                ));
            }
        }
        if resources.is_empty() {
            out.push(format!("{f}: {at} has no Resource"));
        }
        if resources.iter().any(|r| r == "*")
            && let Some(bad) = actions
                .iter()
                .find(|a| !STAR_RESOURCE_EXCEPTIONS.contains(&a.as_str()))
        {
            out.push(format!(
                "{f}: {at} allows {bad} on Resource \"*\" (only {STAR_RESOURCE_EXCEPTIONS:?} may)"
            ));
        }
        // ECR.
        let ecr: Vec<&String> = actions.iter().filter(|a| a.starts_with("ecr:")).collect();
        let ecr_writes: Vec<&&String> = ecr
            .iter()
            .filter(|a| !ECR_READ.contains(&a.as_str()))
            .collect();
        if *f == VALIDATE && !ecr_writes.is_empty() {
            out.push(format!(
                "{f}: {at} allows {ecr_writes:?}: validate-manifest only reads registries (its reconcile)"
            ));
        }
        if *f == NOTIFY && !ecr.is_empty() {
            out.push(format!("{f}: {at} allows {ecr:?}: notify uses no registry"));
        }
        if !ecr_writes.is_empty() {
            if *f != COPY && *f != SIGN {
                out.push(format!(
                    "{f}: {at} allows the ECR writes {ecr_writes:?}: only copy-digest and sign write to registries"
                ));
            } else if resources != ["${ProductionRepositoryArns}"] {
                out.push(format!(
                    "{f}: {at} allows ECR writes on {resources:?}: only the production repositories (!Ref ProductionRepositoryArns)"
                ));
            }
        }
        // S3.
        let s3: Vec<&String> = actions.iter().filter(|a| a.starts_with("s3:")).collect();
        if !s3.is_empty() {
            if let Some(other) = resources.iter().find(|r| !r.starts_with(bucket)) {
                out.push(format!(
                    "{f}: {at} allows {s3:?} on {other}, not the state bucket"
                ));
            }
            let writes: Vec<&&String> = s3
                .iter()
                .filter(|a| !S3_READ.contains(&a.as_str()))
                .collect();
            if !writes.is_empty() {
                for r in &resources {
                    let prefix = r.strip_prefix(bucket).unwrap_or(r);
                    if prefix.len() < 3 || !prefix.starts_with('/') || prefix == "/*" {
                        out.push(format!(
                            "{f}: {at} allows {writes:?} on {r}: writes go below a prefix of the state bucket"
                        ));
                    }
                    if *f == AUDIT && prefix != "/audit/*" {
                        out.push(format!(
                            "{f}: {at} allows {writes:?} on {r}: audit writes only its records under audit/*"
                        ));
                    }
                }
            }
        }
        // KMS, SNS.
        if *f == VALIDATE && actions.iter().any(|a| a.starts_with("kms:")) {
            out.push(format!(
                "{f}: {at} allows KMS actions: validate-manifest signs nothing"
            ));
        }
        if *f != SIGN && s.has_action("kms:Sign") {
            out.push(format!("{f}: {at} allows kms:Sign: only sign signs"));
        }
        if *f != SIGN && *f != COPY && s.has_action("kms:GetPublicKey") {
            out.push(format!(
                "{f}: {at} allows kms:GetPublicKey: only sign and copy-digest read the key"
            ));
        }
        if s.has_action("sns:Publish") {
            if *f != NOTIFY {
                out.push(format!(
                    "{f}: {at} allows sns:Publish: only notify publishes alerts"
                ));
            } else if resources != ["${AlertTopic}"] {
                out.push(format!(
                    "{f}: {at} publishes to {resources:?}, not the alert topic"
                ));
            }
        }
    }
    check_logs_and_queues(t, out);
}

/// Logs only to the function's own log group; queues as the topology says.
fn check_logs_and_queues(t: &Template<'_>, out: &mut Vec<String>) {
    let topology: BTreeMap<&str, (&[&str], &[&str])> = BTreeMap::from([
        (VALIDATE, (&["CopyQueue", "NotifyQueue"][..], &[][..])),
        (
            COPY,
            (&["SignQueue", "NotifyQueue"][..], &["CopyQueue"][..]),
        ),
        (SIGN, (&["NotifyQueue"][..], &["SignQueue"][..])),
        (NOTIFY, (&[][..], &["NotifyQueue"][..])),
        (
            AUDIT,
            (&["NotifyQueue", "AuditDeadLetterQueue"][..], &[][..]),
        ),
    ]);
    for f in &t.functions {
        let Some(role) = &f.role else { continue };
        let statements = t.role_statements(&f.name, role);
        let log_group = f
            .properties
            .at(&["LoggingConfig", "LogGroup"])
            .map(|g| format!("${{{}.Arn}}", logical_id(&g.render())));
        let mut sends = BTreeSet::new();
        let mut consumes = BTreeSet::new();
        for s in statements.iter().filter(|s| s.allows()) {
            let resources = s.resources();
            if s.actions().iter().any(|a| a.starts_with("logs:"))
                && (log_group.is_none() || resources.iter().any(|r| Some(r) != log_group.as_ref()))
            {
                out.push(format!(
                    "{}: {} writes logs to {resources:?}, not only its own log group ({log_group:?})",
                    f.name, s.at
                ));
            }
            let queues: BTreeSet<String> = resources.iter().map(|r| logical_id(r)).collect();
            if s.has_action("sqs:SendMessage") {
                sends.extend(queues.iter().cloned());
            }
            if [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ]
            .iter()
            .any(|a| s.has_action(a))
            {
                consumes.extend(queues.iter().cloned());
            }
        }
        // What the function's configuration says it feeds and consumes.
        let feeds: BTreeSet<String> = t
            .environment(f)
            .iter()
            .filter(|(k, _)| k.ends_with("_QUEUE_URL"))
            .map(|(_, v)| logical_id(v))
            .chain(t.failure_destination(f))
            .collect();
        let own: BTreeSet<String> = t.event_sources(f).into_iter().map(|(q, _, _)| q).collect();
        for queue in sends.difference(&feeds) {
            out.push(format!(
                "{}: its role may send to {queue}, a queue it does not feed (none of its *_QUEUE_URL)",
                f.name
            ));
        }
        for queue in consumes.difference(&own) {
            out.push(format!(
                "{}: its role may consume {queue}, not its own event source",
                f.name
            ));
        }
        if let Some((expected_sends, expected_consumes)) = topology.get(f.name.as_str()) {
            let expected_sends: BTreeSet<String> =
                expected_sends.iter().map(|s| (*s).to_owned()).collect();
            let expected_consumes: BTreeSet<String> =
                expected_consumes.iter().map(|s| (*s).to_owned()).collect();
            if sends != expected_sends {
                out.push(format!(
                    "{}: its role sends to {sends:?}, the chain wants {expected_sends:?}",
                    f.name
                ));
            }
            if consumes != expected_consumes || own != expected_consumes {
                out.push(format!(
                    "{}: consumes {consumes:?} (role) from {own:?} (event sources), the chain wants {expected_consumes:?}",
                    f.name
                ));
            }
        }
    }
}

fn check_queues_and_sources(t: &Template<'_>, out: &mut Vec<String>) {
    let dead_letter = t.dead_letter_queues();
    let mut consumed_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let batch_sizes = BTreeMap::from([(COPY, 1..=5), (SIGN, 1..=10), (NOTIFY, 1..=10)]);
    for f in &t.functions {
        let timeout = number(f.properties.get("Timeout")).unwrap_or(3);
        for (queue, mapping, at) in t.event_sources(f) {
            consumed_by
                .entry(queue.clone())
                .or_default()
                .push(f.name.clone());
            let reports = mapping
                .get("FunctionResponseTypes")
                .map(Yaml::items)
                .unwrap_or_default()
                .iter()
                .any(|r| r.str() == Some("ReportBatchItemFailures"));
            if !reports {
                out.push(format!(
                    "{at}: the event source mapping lacks FunctionResponseTypes [ReportBatchItemFailures]"
                ));
            }
            match (
                number(mapping.get("BatchSize")),
                batch_sizes.get(f.name.as_str()),
            ) {
                (Some(size), Some(range)) if range.contains(&size) => {}
                (size, range) => {
                    out.push(format!("{at}: BatchSize {size:?} (wanted in {range:?})"))
                }
            }
            if dead_letter.contains(&queue) {
                out.push(format!("{at}: consumes {queue}, a dead-letter queue"));
            }
            let visibility = t
                .resource(&queue)
                .and_then(|q| number(q.at(&["Properties", "VisibilityTimeout"])))
                .unwrap_or(30);
            if visibility < 6 * timeout {
                out.push(format!(
                    "{queue}: VisibilityTimeout {visibility} s is under 6x {}'s timeout ({timeout} s)",
                    f.name
                ));
            }
        }
    }
    for (queue, functions) in &consumed_by {
        if functions.len() > 1 {
            out.push(format!("{queue} is consumed by {functions:?}"));
        }
    }
    for (id, properties) in resources_of(t.root, "AWS::SQS::Queue") {
        let encrypted = properties.get("SqsManagedSseEnabled").and_then(Yaml::str) == Some("true")
            || properties.get("KmsMasterKeyId").is_some();
        if !encrypted {
            out.push(format!(
                "{id}: not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)"
            ));
        }
        if dead_letter.contains(id) {
            continue;
        }
        match number(properties.at(&["RedrivePolicy", "maxReceiveCount"])) {
            Some(count) if (1..=10).contains(&count) => {}
            Some(count) => out.push(format!("{id}: maxReceiveCount {count} (wanted 1 to 10)")),
            None => out.push(format!(
                "{id}: no RedrivePolicy with a dead-letter queue and maxReceiveCount"
            )),
        }
        if !consumed_by.contains_key(id) {
            out.push(format!(
                "{id}: neither a dead-letter queue nor consumed by a function"
            ));
        }
    }
}

fn check_signing_key(t: &Template<'_>, out: &mut Vec<String>) {
    let keys = resources_of(t.root, "AWS::KMS::Key");
    let Some((key_id, key)) = keys
        .iter()
        .find(|(_, k)| k.get("KeyUsage").and_then(Yaml::str) == Some("SIGN_VERIFY"))
    else {
        out.push("no AWS::KMS::Key with KeyUsage SIGN_VERIFY".to_owned());
        return;
    };
    if key.get("KeySpec").and_then(Yaml::str) != Some("ECC_NIST_P256") {
        out.push(format!(
            "{key_id}: KeySpec is not ECC_NIST_P256 (cosign's ECDSA P-256)"
        ));
    }
    let role_of = |name: &str| {
        t.function(name)
            .and_then(|f| f.role.clone())
            .map(|r| format!("${{{r}.Arn}}"))
            .unwrap_or_default()
    };
    let sign_role = role_of(SIGN);
    let copy_role = role_of(COPY);
    let statements = key
        .at(&["KeyPolicy", "Statement"])
        .map(Yaml::items)
        .unwrap_or_default();
    if statements.is_empty() {
        out.push(format!("{key_id}: no KeyPolicy"));
    }
    let mut signers = BTreeSet::new();
    for statement in statements {
        let sid = statement.get("Sid").map(Yaml::render).unwrap_or_default();
        if statement.get("Effect").and_then(Yaml::str) != Some("Allow") {
            continue;
        }
        let actions: Vec<String> = statement
            .get("Action")
            .map(|a| a.items().iter().map(|i| i.render()).collect())
            .unwrap_or_default();
        let grants = |action: &str| actions.iter().any(|a| glob_matches(a, action));
        let principal = statement.get("Principal");
        let principals: Vec<String> = match principal {
            Some(Yaml::Str(s)) => vec![s.clone()],
            Some(p) => p
                .get("AWS")
                .map(|a| a.items().iter().map(|i| i.render()).collect())
                .unwrap_or_else(|| vec![format!("{p:?}")]),
            None => vec!["(none)".to_owned()],
        };
        if actions.iter().any(|a| a == "*" || a == "kms:*") {
            out.push(format!(
                "{key_id}: key policy {sid} grants {actions:?}: name the actions"
            ));
        }
        if grants("kms:Sign") {
            signers.extend(principals.iter().cloned());
            if principals != [sign_role.clone()] {
                out.push(format!(
                    "{key_id}: key policy {sid} lets {principals:?} kms:Sign: only sign's role ({sign_role})"
                ));
            }
        }
        if grants("kms:GetPublicKey") {
            for p in &principals {
                let account = p.ends_with(":root") && p.contains("${AWS::AccountId}");
                if *p != sign_role && *p != copy_role && !account {
                    out.push(format!(
                        "{key_id}: key policy {sid} lets {p} read the public key"
                    ));
                }
            }
        }
    }
    if signers.is_empty() {
        out.push(format!(
            "{key_id}: the key policy lets nobody sign (sign's role needs kms:Sign)"
        ));
    }
    let wanted = format!("awskms:///${{{key_id}.Arn}}");
    for f in &t.functions {
        let value = t.environment(f).get("PROMOTER_SIGN_KEY").cloned();
        let wants = f.name == SIGN || f.name == COPY;
        if wants && value.as_deref() != Some(wanted.as_str()) {
            out.push(format!(
                "{}: PROMOTER_SIGN_KEY {value:?}, wanted {wanted}",
                f.name
            ));
        }
        if !wants && value.is_some() {
            out.push(format!(
                "{}: has PROMOTER_SIGN_KEY, only copy-digest and sign use it",
                f.name
            ));
        }
    }
}

fn check_state_bucket(t: &Template<'_>, out: &mut Vec<String>) {
    let Some(bucket) = t.resource("StateBucket").and_then(|b| b.get("Properties")) else {
        out.push("no StateBucket".to_owned());
        return;
    };
    if t.type_of("StateBucket") != Some("AWS::S3::Bucket") {
        out.push("StateBucket is not an AWS::S3::Bucket".to_owned());
    }
    if bucket
        .at(&["VersioningConfiguration", "Status"])
        .and_then(Yaml::str)
        != Some("Enabled")
    {
        out.push("StateBucket: versioning is not enabled".to_owned());
    }
    let algorithms: Vec<String> = bucket
        .at(&["BucketEncryption", "ServerSideEncryptionConfiguration"])
        .map(Yaml::items)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.at(&["ServerSideEncryptionByDefault", "SSEAlgorithm"]))
        .map(Yaml::render)
        .collect();
    if algorithms.is_empty()
        || !algorithms
            .iter()
            .all(|a| ["AES256", "aws:kms", "aws:kms:dsse"].contains(&a.as_str()))
    {
        out.push(format!(
            "StateBucket: server-side encryption {algorithms:?}"
        ));
    }
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        if bucket
            .at(&["PublicAccessBlockConfiguration", flag])
            .and_then(Yaml::str)
            != Some("true")
        {
            out.push(format!(
                "StateBucket: PublicAccessBlockConfiguration.{flag} is not true"
            ));
        }
    }
    let tls_only = resources_of(t.root, "AWS::S3::BucketPolicy")
        .iter()
        .any(|(_, p)| {
            p.get("Bucket").map(Yaml::render).as_deref() == Some("${StateBucket}")
                && p.at(&["PolicyDocument", "Statement"])
                    .map(Yaml::items)
                    .unwrap_or_default()
                    .iter()
                    .any(|s| {
                        s.get("Effect").and_then(Yaml::str) == Some("Deny")
                            && s.at(&["Condition", "Bool", "aws:SecureTransport"])
                                .and_then(Yaml::str)
                                == Some("false")
                    })
        });
    if !tls_only {
        out.push("StateBucket: no bucket policy denying requests without TLS (aws:SecureTransport false)".to_owned());
    }
    for f in &t.functions {
        let state = t.environment(f).get("PROMOTER_STATE").cloned();
        if state.as_deref() != Some("s3://${StateBucket}") {
            out.push(format!(
                "{}: PROMOTER_STATE {state:?}, wanted s3://${{StateBucket}}",
                f.name
            ));
        }
    }
}

fn check_topic(t: &Template<'_>, out: &mut Vec<String>) {
    let topics = resources_of(t.root, "AWS::SNS::Topic");
    if topics.len() != 1 {
        out.push(format!(
            "{} SNS topics, wanted the alert topic only",
            topics.len()
        ));
    }
    for (id, topic) in &topics {
        if topic.get("KmsMasterKeyId").is_none() {
            out.push(format!("{id}: not encrypted (KmsMasterKeyId)"));
        }
        for f in &t.functions {
            let arn = t.environment(f).get("PROMOTER_SNS_TOPIC_ARN").cloned();
            match (f.name == NOTIFY, arn) {
                (true, Some(arn)) if arn == format!("${{{id}}}") => {}
                (true, arn) => out.push(format!(
                    "notify: PROMOTER_SNS_TOPIC_ARN {arn:?}, wanted !Ref {id}"
                )),
                (false, Some(_)) => out.push(format!(
                    "{}: has PROMOTER_SNS_TOPIC_ARN, only notify publishes",
                    f.name
                )),
                (false, None) => {}
            }
        }
    }
}

fn check_ecr_rule(t: &Template<'_>, out: &mut Vec<String>) {
    let Some(audit) = t.function(AUDIT) else {
        return;
    };
    let audit_arn = format!("${{{}.Arn}}", audit.id);
    let rules: Vec<(&str, &Yaml)> = resources_of(t.root, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| {
            r.at(&["EventPattern", "source"])
                .map(Yaml::items)
                .unwrap_or_default()
                .iter()
                .any(|s| s.str() == Some("aws.ecr"))
        })
        .collect();
    if rules.len() != 1 {
        out.push(format!(
            "{} EventBridge rules on aws.ecr, wanted one",
            rules.len()
        ));
    }
    for (id, rule) in rules {
        let pattern = rule.get("EventPattern");
        let field = |path: &[&str]| {
            pattern
                .and_then(|p| p.at(path))
                .map(|v| v.items().iter().map(|i| i.render()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        if field(&["detail-type"]) != ["ECR Image Action"] {
            out.push(format!("{id}: detail-type is not [ECR Image Action]"));
        }
        if field(&["detail", "result"]) != ["SUCCESS"] {
            out.push(format!("{id}: detail.result is not [SUCCESS]"));
        }
        if field(&["detail", "repository-name"]) != ["${ProductionRepositoryNames}"] {
            out.push(format!(
                "{id}: detail.repository-name is not !Ref ProductionRepositoryNames"
            ));
        }
        let targets: Vec<String> = rule
            .get("Targets")
            .map(Yaml::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.get("Arn"))
            .map(Yaml::render)
            .collect();
        if targets != [audit_arn.clone()] {
            out.push(format!(
                "{id}: targets {targets:?}, wanted audit ({audit_arn})"
            ));
        }
        let rule_arn = format!("${{{id}.Arn}}");
        let permitted = resources_of(t.root, "AWS::Lambda::Permission")
            .iter()
            .any(|(_, p)| {
                p.get("Principal").map(Yaml::render).as_deref() == Some("events.amazonaws.com")
                    && p.get("SourceArn").map(Yaml::render) == Some(rule_arn.clone())
                    && p.get("FunctionName").map(Yaml::render) == Some(format!("${{{}}}", audit.id))
            });
        if !permitted {
            out.push(format!(
                "{id}: no AWS::Lambda::Permission lets this rule invoke audit"
            ));
        }
    }
}

/// A role only EventBridge Scheduler may take (checked by [`check_schedule`]).
fn is_scheduler_role(role: &Yaml) -> bool {
    let trust = role.at(&["AssumeRolePolicyDocument", "Statement"]);
    let statements = trust.map(Yaml::items).unwrap_or_default();
    !statements.is_empty()
        && statements.iter().all(|s| {
            s.at(&["Principal", "Service"])
                .map(Yaml::items)
                .is_some_and(|services| {
                    services
                        .iter()
                        .all(|x| x.render() == "scheduler.amazonaws.com")
                })
                && s.at(&["Principal", "AWS"]).is_none()
        })
}

fn check_schedule(t: &Template<'_>, out: &mut Vec<String>) {
    let Some(validate) = t.function(VALIDATE) else {
        return;
    };
    let validate_arn = format!("${{{}.Arn}}", validate.id);
    let schedules = resources_of(t.root, "AWS::Scheduler::Schedule");
    if schedules.len() != 1 {
        out.push(format!(
            "{} schedules, wanted one (the reconcile)",
            schedules.len()
        ));
    }
    for (id, schedule) in schedules {
        let target = |field: &str| schedule.at(&["Target", field]).map(Yaml::render);
        if target("Arn").as_deref() != Some(validate_arn.as_str()) {
            out.push(format!("{id}: its target is not validate-manifest"));
        }
        let input = target("Input").unwrap_or_default();
        let reconciles = serde_json::from_str::<serde_json::Value>(&input)
            .is_ok_and(|v| v.get("reconcile").is_some_and(serde_json::Value::is_object));
        if !reconciles {
            out.push(format!(
                "{id}: input {input:?} is not {{\"reconcile\": {{…}}}}"
            ));
        }
        let role = target("RoleArn").and_then(|arn| {
            arn.strip_prefix("${")?
                .strip_suffix(".Arn}")
                .map(str::to_owned)
        });
        let role = role
            .as_deref()
            .and_then(|r| t.resource(r))
            .and_then(|r| r.get("Properties"));
        let Some(role) = role.filter(|r| is_scheduler_role(r)) else {
            out.push(format!(
                "{id}: RoleArn is not a role only the scheduler may take"
            ));
            continue;
        };
        let statements = role
            .get("Policies")
            .map(Yaml::items)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|p| {
                p.at(&["PolicyDocument", "Statement"])
                    .map(Yaml::items)
                    .unwrap_or_default()
            });
        for statement in statements {
            let listed = |key: &str| -> Vec<String> {
                statement
                    .get(key)
                    .map(|n| n.items().iter().map(|i| i.render()).collect())
                    .unwrap_or_default()
            };
            if listed("Action") != ["lambda:InvokeFunction"]
                || listed("Resource") != [validate_arn.clone()]
            {
                out.push(format!(
                    "{id}: its role allows {:?} on {:?}, wanted only lambda:InvokeFunction on validate-manifest",
                    listed("Action"),
                    listed("Resource")
                ));
            }
        }
    }
}

fn check_parameters_and_secrets(t: &Template<'_>, out: &mut Vec<String>) {
    for (name, _) in t
        .root
        .get("Parameters")
        .map(Yaml::entries)
        .unwrap_or_default()
    {
        let lower = name.to_ascii_lowercase();
        if ["secret", "token", "password"]
            .iter()
            .any(|w| lower.contains(w))
        {
            out.push(format!(
                "parameter {name} is named like a secret: secrets come from Secrets Manager or SSM, never parameters"
            ));
        }
    }
    for f in &t.functions {
        for (variable, value) in t.environment(f) {
            let secret = variable.contains("SECRET")
                || variable.contains("TOKEN")
                || variable == "PROMOTER_SLACK_WEBHOOK_URL";
            let resolved = value.starts_with("{{resolve:secretsmanager:")
                || value.starts_with("{{resolve:ssm-secure:");
            if secret && !resolved {
                out.push(format!(
                    "{}: {variable} is {value:?}, not a Secrets Manager / SSM SecureString dynamic reference",
                    f.name
                ));
            }
        }
    }
}

/// The `PROMOTER_*` names the library's source mentions in string literals.
fn variables_the_code_reads() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                for piece in text.split("\"PROMOTER_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') {
                        out.insert(format!("PROMOTER_{name}"));
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&repository().join("shared/src"), &mut out);
    out
}

fn check_environment(t: &Template<'_>, out: &mut Vec<String>) {
    let known = variables_the_code_reads();
    let wanted: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            VALIDATE,
            &[
                "PROMOTER_COPY_QUEUE_URL",
                "PROMOTER_GITHUB_WEBHOOK_SECRET",
                "PROMOTER_BRANCH",
                "PROMOTER_GITHUB_API",
                "PROMOTER_GITHUB_TOKEN",
                "PROMOTER_MANIFESTS_DIR",
            ][..],
        ),
        (
            COPY,
            &[
                "PROMOTER_SIGN_QUEUE_URL",
                "PROMOTER_NOTIFY_QUEUE_URL",
                "PROMOTER_SIGN_KEY",
                "PROMOTER_LEASE_SECONDS",
                "PROMOTER_ECR_REGISTRIES",
            ][..],
        ),
        (
            SIGN,
            &[
                "PROMOTER_NOTIFY_QUEUE_URL",
                "PROMOTER_SIGN_KEY",
                "PROMOTER_SIGN_IDENTITIES",
                "PROMOTER_SIGN_INDEX_CHILDREN",
                "PROMOTER_ECR_REGISTRIES",
            ][..],
        ),
        (
            NOTIFY,
            &[
                "PROMOTER_SNS_TOPIC_ARN",
                "PROMOTER_SLACK_WEBHOOK_URL",
                "PROMOTER_WEBHOOK_URL",
                "PROMOTER_WEBHOOK_SECRET",
                "PROMOTER_GITHUB_TOKEN",
            ][..],
        ),
        (
            AUDIT,
            &[
                "PROMOTER_AUDIT_TOKEN",
                "PROMOTER_NOTIFY_QUEUE_URL",
                "PROMOTER_ECR_REGISTRIES",
            ][..],
        ),
    ]);
    for f in &t.functions {
        let env = t.environment(f);
        for variable in env.keys() {
            if variable.starts_with("PROMOTER_") && !known.contains(variable) {
                out.push(format!(
                    "{}: {variable} is read nowhere in shared/src",
                    f.name
                ));
            }
        }
        for variable in wanted.get(f.name.as_str()).copied().unwrap_or_default() {
            if !env.contains_key(*variable) {
                out.push(format!("{}: {variable} is not set", f.name));
            }
        }
        for (variable, value) in &env {
            if variable.ends_with("_QUEUE_URL")
                && t.type_of(&logical_id(value)) != Some("AWS::SQS::Queue")
            {
                out.push(format!(
                    "{}: {variable} is {value}, not !Ref of a queue",
                    f.name
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------- the tests

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template_text() -> String {
    let path = repository().join("infra/aws/template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_template_keeps_every_rule() {
    let found = violations(&template_text());
    assert!(
        found.is_empty(),
        "infra/aws/template.yaml breaks {} rule(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn short_tags_become_their_long_form() {
    let tree = parse_yaml(
        "a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub \"s3://${B}\"\nd: !If [C, !Ref N, !Ref AWS::NoValue]\ne: !Join [\"\", [x, !Ref Y]]\n",
    )
    .expect("parses");
    let render = |key| tree.get(key).map(Yaml::render).unwrap_or_default();
    assert_eq!(render("a"), "${X}");
    assert_eq!(render("b"), "${Q.Arn}");
    assert_eq!(render("c"), "s3://${B}");
    assert!(matches!(tree.get("d"), Some(Yaml::Map(e)) if e[0].0 == "Fn::If"));
    assert_eq!(render("e"), "x${Y}");
    assert!(glob_matches("kms:Get*", "kms:GetPublicKey"));
    assert!(glob_matches("*", "kms:Sign"));
    assert!(!glob_matches("kms:Sign", "kms:SignX"));
}

/// The template with `from` (found exactly once) replaced by `to`.
fn altered(from: &str, to: &str) -> String {
    let text = template_text();
    assert_eq!(
        text.matches(from).count(),
        1,
        "the test's anchor {from:?} must occur once in the template"
    );
    text.replacen(from, to, 1)
}

/// The violations of the altered template include one containing every piece of `expected`.
fn assert_caught(from: &str, to: &str, expected: &[&str]) {
    let found = violations(&altered(from, to));
    assert!(
        found.iter().any(|v| expected.iter().all(|e| v.contains(e))),
        "altering {from:?} into {to:?} should be reported with {expected:?}; found:\n{}",
        found.join("\n")
    );
}

/// Inserts `statement` (YAML at statement indentation) first in the policy named `policy`.
fn with_statement(policy: &str, statement: &str) -> (String, String) {
    let anchor = format!(
        "- PolicyName: {policy}\n          PolicyDocument:\n            Version: \"2012-10-17\"\n            Statement:\n"
    );
    (anchor.clone(), format!("{anchor}{statement}"))
}

#[test]
fn a_registry_write_outside_copy_and_sign_is_caught() {
    let (from, to) = with_statement(
        "validate-manifest",
        "              - Sid: Sneaky\n                Effect: Allow\n                Action: ecr:PutImage\n                Resource: !Ref ProductionRepositoryArns\n",
    );
    assert_caught(&from, &to, &["validate-manifest", "Sneaky", "ecr:PutImage"]);
    let (from, to) = with_statement(
        "audit",
        "              - Sid: Sneaky\n                Effect: Allow\n                Action: [ecr:InitiateLayerUpload]\n                Resource: !Ref ProductionRepositoryArns\n",
    );
    assert_caught(
        &from,
        &to,
        &["audit", "Sneaky", "only copy-digest and sign"],
    );
    // copy-digest writing to staging.
    assert_caught(
        "                  - ecr:PutImage\n                Resource: !Ref ProductionRepositoryArns\n              # ECR does not",
        "                  - ecr:PutImage\n                Resource: !Ref StagingRepositoryArns\n              # ECR does not",
        &[
            "copy-digest",
            "WriteProduction",
            "only the production repositories",
        ],
    );
    // copy-digest creating repositories outside production.
    assert_caught(
        "                  - ecr:CreateRepository\n                Resource: !Ref ProductionRepositoryArns",
        "                  - ecr:CreateRepository\n                Resource: \"*\"",
        &["copy-digest", "CreateProductionRepositories"],
    );
}

#[test]
fn wildcards_are_caught() {
    let (from, to) = with_statement(
        "notify",
        "              - Sid: Everything\n                Effect: Allow\n                Action: \"*\"\n                Resource: \"*\"\n",
    );
    assert_caught(
        &from,
        &to,
        &["notify", "Everything", "wildcard action \"*\""],
    );
    let (from, to) = with_statement(
        "sign",
        "              - Sid: AllOfS3\n                Effect: Allow\n                Action: s3:*\n                Resource: !Sub \"${StateBucket.Arn}/runs/*\"\n",
    );
    assert_caught(&from, &to, &["sign", "AllOfS3", "s3:*"]);
    let (from, to) = with_statement(
        "copy-digest",
        "              - Sid: AnyQueue\n                Effect: Allow\n                Action: sqs:SendMessage\n                Resource: \"*\"\n",
    );
    assert_caught(
        &from,
        &to,
        &[
            "copy-digest",
            "AnyQueue",
            "sqs:SendMessage on Resource \"*\"",
        ],
    );
}

#[test]
fn audit_writing_state_outside_its_records_is_caught() {
    assert_caught(
        "Action: s3:PutObject\n                Resource: !Sub \"${StateBucket.Arn}/audit/*\"",
        "Action: s3:PutObject\n                Resource: !Sub \"${StateBucket.Arn}/desired/*\"",
        &["audit", "WriteAuditRecordsOnly", "audit/*"],
    );
}

#[test]
fn signing_and_publishing_by_others_are_caught() {
    let (from, to) = with_statement(
        "copy-digest",
        "              - Sid: AlsoSigns\n                Effect: Allow\n                Action: kms:Sign\n                Resource: !GetAtt SigningKey.Arn\n",
    );
    assert_caught(&from, &to, &["copy-digest", "AlsoSigns", "kms:Sign"]);
    assert_caught(
        "          - Sid: SigningBySignOnly\n            Effect: Allow\n            Principal:\n              AWS: !GetAtt SignRole.Arn",
        "          - Sid: SigningBySignOnly\n            Effect: Allow\n            Principal:\n              AWS: !GetAtt AuditRole.Arn",
        &["SigningKey", "SigningBySignOnly", "AuditRole", "kms:Sign"],
    );
    assert_caught(
        "- kms:Get*\n",
        "- kms:Get*\n              - kms:Sign\n",
        &["AdministrationByTheAccount", "kms:Sign"],
    );
    let (from, to) = with_statement(
        "audit",
        "              - Sid: Publishes\n                Effect: Allow\n                Action: sns:Publish\n                Resource: !Ref AlertTopic\n",
    );
    assert_caught(&from, &to, &["audit", "Publishes", "only notify"]);
}

#[test]
fn a_schedule_doing_more_than_reconcile_is_caught() {
    assert_caught(
        "                Action: lambda:InvokeFunction\n                Resource: !GetAtt ValidateManifestFunction.Arn",
        "                Action: lambda:InvokeFunction\n                Resource: !GetAtt CopyDigestFunction.Arn",
        &["wanted only lambda:InvokeFunction on validate-manifest"],
    );
    assert_caught(
        "Input: '{\"reconcile\": {\"dry_run\": false}}'",
        "Input: '{\"revision\": \"x\"}'",
        &["is not {\"reconcile\""],
    );
    assert_caught(
        "              Service: scheduler.amazonaws.com",
        "              Service: [scheduler.amazonaws.com, lambda.amazonaws.com]",
        &["RoleArn is not a role only the scheduler may take"],
    );
}

#[test]
fn a_shared_role_is_caught() {
    assert_caught(
        "Role: !GetAtt NotifyRole.Arn",
        "Role: !GetAtt AuditRole.Arn",
        &["AuditRole", "shared"],
    );
}

#[test]
fn queue_rules_are_caught() {
    assert_caught(
        "BatchSize: 10\n            FunctionResponseTypes: [ReportBatchItemFailures]\n\n  NotifyFunction:",
        "BatchSize: 10\n\n  NotifyFunction:",
        &["SignFunction/Events/SignQueue", "ReportBatchItemFailures"],
    );
    assert_caught(
        "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt NotifyDeadLetterQueue.Arn\n        maxReceiveCount: 5\n",
        "",
        &["NotifyQueue", "RedrivePolicy"],
    );
    assert_caught(
        "VisibilityTimeout: 5400",
        "VisibilityTimeout: 900",
        &["CopyQueue", "6x copy-digest"],
    );
    // A role consuming a queue that is not its event source, sending to one it does not feed.
    let (from, to) = with_statement(
        "notify",
        "              - Sid: Steals\n                Effect: Allow\n                Action: [sqs:ReceiveMessage, sqs:DeleteMessage]\n                Resource: !GetAtt CopyQueue.Arn\n              - Sid: Feeds\n                Effect: Allow\n                Action: sqs:SendMessage\n                Resource: !GetAtt SignQueue.Arn\n",
    );
    let found = violations(&altered(&from, &to));
    for expected in [
        "notify: its role may consume CopyQueue",
        "notify: its role may send to SignQueue",
    ] {
        assert!(
            found.iter().any(|v| v.contains(expected)),
            "{expected}: {found:#?}"
        );
    }
}

#[test]
fn secrets_in_parameters_are_caught() {
    assert_caught(
        "\nParameters:\n",
        "\nParameters:\n  GitHubToken:\n    Type: String\n    NoEcho: true\n",
        &["parameter GitHubToken", "named like a secret"],
    );
    assert_caught(
        "PROMOTER_AUDIT_TOKEN: !Sub \"{{resolve:secretsmanager:${CredentialsName}:SecretString:audit-token}}\"",
        "PROMOTER_AUDIT_TOKEN: !Ref LogLevel",
        &["audit", "PROMOTER_AUDIT_TOKEN", "dynamic reference"],
    );
}

#[test]
fn logs_and_configuration_rules_are_caught() {
    assert_caught(
        "Resource: !GetAtt SignLogGroup.Arn",
        "Resource: !GetAtt AuditLogGroup.Arn",
        &["sign", "Logs", "own log group"],
    );
    assert_caught(
        "PROMOTER_BRANCH: !Ref Branch",
        "PROMOTER_BRANCHES: !Ref Branch",
        &["validate-manifest", "PROMOTER_BRANCHES is read nowhere"],
    );
    assert_caught(
        "repository-name: !Ref ProductionRepositoryNames",
        "repository-name: !Ref StagingRepositoryArns",
        &["EcrImageActionRule", "repository-name"],
    );
    assert_caught(
        "      FunctionUrlConfig:\n        AuthType: NONE\n      EventInvokeConfig:",
        "      EventInvokeConfig:",
        &["AuditFunction", "Function URL"],
    );
}
