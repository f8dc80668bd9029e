//! Images built from nothing, deterministically (gzip'd tar layers with mtime 0, config JSON,
//! manifests), and a seeder pushing them with raw HTTP: monolithic blob uploads
//! (`POST .../blobs/uploads/`, then `PUT LOCATION?digest=...` with the whole body), manifests
//! `PUT` with their exact bytes and `Content-Type`.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::http::{RawClient, percent_encode};
use super::registry::TestRegistry;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip'd layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip'd layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `sha256:HEX` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// How a single-platform manifest is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// OCI image manifest, with `mediaType`.
    Oci,
    /// OCI image manifest without the (optional) `mediaType` field.
    OciWithoutMediaType,
    /// Docker v2 schema 2.
    Docker,
}

impl ManifestFormat {
    /// The media type (`Content-Type` on push).
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Oci | Self::OciWithoutMediaType => OCI_MANIFEST,
            Self::Docker => DOCKER_MANIFEST,
        }
    }
}

/// How a multi-platform index is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexFormat {
    /// OCI image index (children: OCI manifests).
    Oci,
    /// Docker manifest list (children: Docker v2 schema 2).
    DockerList,
}

impl IndexFormat {
    /// The media type (`Content-Type` on push).
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Oci => OCI_INDEX,
            Self::DockerList => DOCKER_LIST,
        }
    }

    /// The format of its children.
    pub fn child_format(self) -> ManifestFormat {
        match self {
            Self::Oci => ManifestFormat::Oci,
            Self::DockerList => ManifestFormat::Docker,
        }
    }
}

/// An OS and architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `linux`...
    pub os: String,
    /// `v8`...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/ARCH`.
    pub fn linux(architecture: &str) -> Self {
        Self {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: None,
        }
    }
}

/// A gzip'd tar layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Digest of the compressed bytes (the blob).
    pub digest: String,
    /// Digest of the uncompressed tar (the config's `diff_ids`).
    pub diff_id: String,
    /// The blob.
    pub bytes: Vec<u8>,
}

/// A layer from a seed: a tar (mtime 0, uid 0) holding `seed.txt` (the seed) and, when `size` >
/// 0, `data.bin` with `size` pseudo-random bytes from the seed (incompressible: the blob is about
/// `size` bytes). Same seed and size, same digest.
pub fn layer(seed: &str, size: usize) -> Layer {
    let tag = &sha256_digest(seed.as_bytes())[7..19];
    let mut tar = tar::Builder::new(Vec::new());
    let mut append = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).expect("a tar path");
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, data)
            .expect("append to a tar in memory");
    };
    append(&format!("seed/{tag}.txt"), seed.as_bytes());
    if size > 0 {
        append(&format!("seed/{tag}.bin"), &pseudo_random(seed, size));
    }
    let tar = tar.into_inner().expect("finish the tar");
    // Random data does not compress: store it (level 0) when large, which is also fast.
    let level = if size > 64 * 1024 {
        flate2::Compression::none()
    } else {
        flate2::Compression::default()
    };
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
    gz.write_all(&tar).expect("gzip in memory");
    let bytes = gz.finish().expect("finish gzip");
    Layer {
        digest: sha256_digest(&bytes),
        diff_id: sha256_digest(&tar),
        bytes,
    }
}

/// `len` bytes from a SplitMix64 stream seeded by the seed's SHA-256.
fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let hash = Sha256::digest(seed.as_bytes());
    let mut state = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Serialize)]
struct DescriptorJson<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
}

#[derive(Serialize)]
struct ManifestJson<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    config: DescriptorJson<'a>,
    layers: Vec<DescriptorJson<'a>>,
}

#[derive(Serialize)]
struct IndexJson<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<DescriptorJson<'a>>,
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: RunConfigJson,
    rootfs: RootfsJson<'a>,
    history: Vec<HistoryJson>,
}

#[derive(Serialize)]
struct RunConfigJson {
    #[serde(rename = "Env")]
    env: Vec<String>,
    #[serde(rename = "Cmd")]
    cmd: Vec<String>,
    #[serde(rename = "Labels")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootfsJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct HistoryJson {
    created: &'static str,
    created_by: String,
}

/// A single-platform image, built: config, layers and manifest bytes.
#[derive(Clone, Debug)]
pub struct Image {
    /// Manifest format.
    pub format: ManifestFormat,
    /// Platform (in the config, and in an index's descriptor).
    pub platform: Platform,
    /// Layers, base first.
    pub layers: Vec<Layer>,
    /// Config bytes.
    pub config: Vec<u8>,
    /// Config digest.
    pub config_digest: String,
    /// Manifest bytes, exactly as pushed.
    pub manifest: Vec<u8>,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type (`Content-Type` on push).
    pub media_type: &'static str,
}

impl Image {
    /// Config then layer digests.
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(self.config_digest.clone())
            .chain(self.layers.iter().map(|l| l.digest.clone()))
            .collect()
    }
}

/// An image from its layers; `seed` goes into a config label, so that images with the same
/// layers may still differ.
pub fn image(format: ManifestFormat, platform: Platform, layers: Vec<Layer>, seed: &str) -> Image {
    let docker = format == ManifestFormat::Docker;
    let config = ConfigJson {
        architecture: &platform.architecture,
        os: &platform.os,
        variant: platform.variant.as_deref(),
        config: RunConfigJson {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["/bin/true".into()],
            labels: BTreeMap::from([("org.example.seed".to_owned(), seed.to_owned())]),
        },
        rootfs: RootfsJson {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.diff_id.as_str()).collect(),
        },
        history: layers
            .iter()
            .map(|l| HistoryJson {
                created: "1970-01-01T00:00:00Z",
                created_by: format!("layer {}", l.digest),
            })
            .collect(),
    };
    let config = serde_json::to_vec(&config).expect("serialize a config");
    let config_digest = sha256_digest(&config);
    let (config_type, layer_type) = if docker {
        (DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_CONFIG, OCI_LAYER)
    };
    let manifest = ManifestJson {
        schema_version: 2,
        media_type: (format != ManifestFormat::OciWithoutMediaType).then(|| format.media_type()),
        config: DescriptorJson {
            media_type: config_type,
            digest: &config_digest,
            size: config.len() as u64,
            platform: None,
        },
        layers: layers
            .iter()
            .map(|l| DescriptorJson {
                media_type: layer_type,
                digest: &l.digest,
                size: l.bytes.len() as u64,
                platform: None,
            })
            .collect(),
    };
    let manifest = serde_json::to_vec_pretty(&manifest).expect("serialize a manifest");
    Image {
        format,
        platform,
        digest: sha256_digest(&manifest),
        manifest,
        config_digest,
        config,
        layers,
        media_type: format.media_type(),
    }
}

/// The base layer every [`single`] image shares (`layer("base", 4096)`).
pub fn base_layer() -> Layer {
    layer("base", 4096)
}

/// A linux/amd64 image: [`base_layer`] then a layer of its own from `seed`.
pub fn single(format: ManifestFormat, seed: &str) -> Image {
    single_for(format, Platform::linux("amd64"), seed)
}

/// Like [`single`], for another platform.
pub fn single_for(format: ManifestFormat, platform: Platform, seed: &str) -> Image {
    let own = layer(&format!("{seed}/{}", platform.architecture), 1024);
    image(format, platform, vec![base_layer(), own], seed)
}

/// A multi-platform index, built.
#[derive(Clone, Debug)]
pub struct Index {
    /// Index format.
    pub format: IndexFormat,
    /// Children, in order.
    pub children: Vec<Image>,
    /// Index bytes, exactly as pushed.
    pub manifest: Vec<u8>,
    /// Index digest.
    pub digest: String,
    /// Media type (`Content-Type` on push).
    pub media_type: &'static str,
}

/// An index over `children` (their platforms go into the descriptors).
pub fn index(format: IndexFormat, children: Vec<Image>) -> Index {
    let json = IndexJson {
        schema_version: 2,
        media_type: format.media_type(),
        manifests: children
            .iter()
            .map(|c| DescriptorJson {
                media_type: c.media_type,
                digest: &c.digest,
                size: c.manifest.len() as u64,
                platform: Some(&c.platform),
            })
            .collect(),
    };
    let manifest = serde_json::to_vec_pretty(&json).expect("serialize an index");
    Index {
        format,
        digest: sha256_digest(&manifest),
        manifest,
        children,
        media_type: format.media_type(),
    }
}

/// A linux/amd64 + linux/arm64 index; children as [`single_for`] (they share [`base_layer`]).
pub fn multi_platform(format: IndexFormat, seed: &str) -> Index {
    let children = ["amd64", "arm64"]
        .iter()
        .map(|arch| single_for(format.child_format(), Platform::linux(arch), seed))
        .collect();
    index(format, children)
}

/// What was pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Repository.
    pub repo: String,
    /// Tag, if pushed by tag.
    pub tag: Option<String>,
    /// Manifest digest.
    pub digest: String,
    /// Media type it was pushed with.
    pub media_type: String,
    /// Exact manifest bytes.
    pub bytes: Vec<u8>,
    /// Blobs of this manifest (config then layers; none for an index).
    pub blobs: Vec<String>,
    /// Children of an index, pushed by digest before it.
    pub children: Vec<Pushed>,
}

impl Pushed {
    /// The tag if any, else the digest.
    pub fn reference(&self) -> &str {
        self.tag.as_deref().unwrap_or(&self.digest)
    }

    /// Every blob, children's included, without duplicates, in first-seen order.
    pub fn all_blobs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for blob in self
            .blobs
            .iter()
            .chain(self.children.iter().flat_map(|c| c.blobs.iter()))
        {
            if !out.contains(blob) {
                out.push(blob.clone());
            }
        }
        out
    }
}

/// Pushes images with a [`RawClient`] (not the promoter's client).
pub struct Seeder {
    client: RawClient,
}

impl Seeder {
    /// A seeder for a test registry, with its credentials.
    pub fn new(registry: &TestRegistry) -> Self {
        Self {
            client: RawClient::for_registry(registry),
        }
    }

    /// A seeder over a client (another host, other credentials).
    pub fn with_client(client: RawClient) -> Self {
        Self { client }
    }

    /// Its client.
    pub fn client(&self) -> &RawClient {
        &self.client
    }

    /// Uploads a blob unless the repository has it (`HEAD` first): `POST` an upload, then one
    /// `PUT` with the whole body.
    pub fn push_blob(&self, repo: &str, digest: &str, bytes: &[u8]) {
        assert_eq!(
            sha256_digest(bytes),
            digest,
            "blob bytes do not match their digest"
        );
        let head = self.client.send(
            "HEAD",
            &format!("/v2/{repo}/blobs/{digest}"),
            repo,
            &[],
            None,
        );
        if head.status == 200 {
            return;
        }
        let start = self.client.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            repo,
            &[],
            Some(&[]),
        );
        assert_eq!(
            start.status,
            202,
            "POST upload to {repo}: {}",
            String::from_utf8_lossy(&start.body)
        );
        let location = start
            .header("location")
            .expect("an upload Location")
            .to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", percent_encode(digest));
        let put = self.client.send(
            "PUT",
            &url,
            repo,
            &[("Content-Type", "application/octet-stream")],
            Some(bytes),
        );
        assert_eq!(
            put.status,
            201,
            "PUT blob {digest} to {repo}: {}",
            String::from_utf8_lossy(&put.body)
        );
    }

    /// `PUT`s a manifest by tag or digest with its exact bytes; returns the registry's
    /// `Docker-Content-Digest`, checked against the bytes.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let put = self.client.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            repo,
            &[("Content-Type", media_type)],
            Some(bytes),
        );
        assert_eq!(
            put.status,
            201,
            "PUT manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&put.body)
        );
        let digest = sha256_digest(bytes);
        if let Some(returned) = put.header("docker-content-digest") {
            assert_eq!(
                returned, digest,
                "the registry digested the manifest differently"
            );
        }
        digest
    }

    /// Pushes an image's blobs, then its manifest by `tag` (or by digest without one).
    pub fn push_image(&self, repo: &str, image: &Image, tag: Option<&str>) -> Pushed {
        self.push_blob(repo, &image.config_digest, &image.config);
        for layer in &image.layers {
            self.push_blob(repo, &layer.digest, &layer.bytes);
        }
        let digest = self.push_manifest(
            repo,
            tag.unwrap_or(&image.digest),
            image.media_type,
            &image.manifest,
        );
        Pushed {
            repo: repo.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
            media_type: image.media_type.to_owned(),
            bytes: image.manifest.clone(),
            blobs: image.blob_digests(),
            children: Vec::new(),
        }
    }

    /// Pushes an index's children by digest, then the index by `tag` (or by digest).
    pub fn push_index(&self, repo: &str, index: &Index, tag: Option<&str>) -> Pushed {
        let children = index
            .children
            .iter()
            .map(|c| self.push_image(repo, c, None))
            .collect();
        let digest = self.push_manifest(
            repo,
            tag.unwrap_or(&index.digest),
            index.media_type,
            &index.manifest,
        );
        Pushed {
            repo: repo.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
            media_type: index.media_type.to_owned(),
            bytes: index.manifest.clone(),
            blobs: Vec::new(),
            children,
        }
    }
}

/// Builds [`single`] `(format, seed)` and pushes it to `repo`.
pub fn push_single(
    registry: &TestRegistry,
    repo: &str,
    format: ManifestFormat,
    seed: &str,
    tag: Option<&str>,
) -> Pushed {
    Seeder::new(registry).push_image(repo, &single(format, seed), tag)
}

/// Builds [`multi_platform`] `(format, seed)` and pushes it to `repo`.
pub fn push_multi(
    registry: &TestRegistry,
    repo: &str,
    format: IndexFormat,
    seed: &str,
    tag: Option<&str>,
) -> Pushed {
    Seeder::new(registry).push_index(repo, &multi_platform(format, seed), tag)
}
