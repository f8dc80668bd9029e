//! A snapshot as text: the `images.yaml` format (a list of `name` + `dmap`), or CSV.

use std::fmt::Write as _;

use super::SnapshotImage;

/// `- name: …` / `dmap:` / `"sha256:…": ["tag", …]` per image, names and digests sorted,
/// tags quoted (so that `1.0` stays text): a thin manifest's `images.yaml`, or the `images:`
/// list of a plain manifest.
pub fn images_yaml(images: &[SnapshotImage]) -> String {
    let mut out = String::new();
    for image in images {
        let _ = writeln!(out, "- name: {}", image.name);
        let _ = writeln!(out, "  dmap:");
        for (digest, tags) in &image.digests {
            let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            let _ = writeln!(out, "    \"{digest}\": [{}]", tags.join(", "));
        }
    }
    out
}

/// `image,digest,tag`, one row per tag (an untagged digest has one row with an empty tag).
/// Names, digests and tags hold no comma or quote, so no field needs quoting.
pub fn csv(images: &[SnapshotImage]) -> String {
    let mut out = String::from("image,digest,tag\n");
    for image in images {
        for (digest, tags) in &image.digests {
            if tags.is_empty() {
                let _ = writeln!(out, "{},{digest},", image.name);
            }
            for tag in tags {
                let _ = writeln!(out, "{},{digest},{tag}", image.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_yaml_and_csv() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let mut image = SnapshotImage {
            name: "charts/app".to_owned(),
            ..SnapshotImage::default()
        };
        image.digests.insert(
            digest.parse().expect("digest"),
            ["v1.0", "latest"]
                .iter()
                .map(|t| t.parse().expect("tag"))
                .collect(),
        );
        assert_eq!(
            images_yaml(std::slice::from_ref(&image)),
            format!("- name: charts/app\n  dmap:\n    \"{digest}\": [\"latest\", \"v1.0\"]\n")
        );
        assert_eq!(
            csv(&[image]),
            format!("image,digest,tag\ncharts/app,{digest},latest\ncharts/app,{digest},v1.0\n")
        );
    }
}
