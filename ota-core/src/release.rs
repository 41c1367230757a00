//! The release model: what the signer promises a device about a release in the TUF target's
//! `custom` metadata ([`ReleaseInfo`], written by `ota-sign repo add`, read by `ota-update`),
//! and the one rule that picks, per image, the delta or the full payload a device applies
//! ([`choose_payloads`], used by `ota-update check`, `ota-update install` and `ota-sign verify`).
//!
//! Both a bundle manifest and a target's `custom` list the same offers per image: a full image,
//! or a delta from an exact base (its SHA-256 over its length). A device applies, per image, a
//! delta whose base is what its running slot holds, else the full image; when neither exists
//! for some image, the release does not apply to it.

use crate::bundle::{Manifest, PayloadKind};
use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most image entries a target's `custom` may list. A release carries a handful of images and a
/// few bases each; the cap bounds the work a `check` does for anything a targets key signs.
pub const MAX_RELEASE_IMAGES: usize = 256;

/// The release a repository target carries, as the device reads it from the signed `custom`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Product (compatible) string.
    pub product: String,
    /// Release version.
    pub version: semver::Version,
    /// The channel the release was added under.
    pub channel: String,
    /// The payloads the bundle offers, per image.
    #[serde(default)]
    pub images: Vec<ReleaseImage>,
    /// Fields this version does not know (kept when the writer edits an entry).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One payload offered for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseImage {
    /// Image name (`rootfs`, `kernel`).
    pub name: String,
    /// Full image or delta.
    #[serde(flatten)]
    pub payload: ReleasePayload,
    /// SHA-256 of the image once written.
    pub sha256: Sha256Digest,
    /// Size of the image once written (absent in targets added before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// How an image is encoded in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReleasePayload {
    /// The whole image.
    Full,
    /// A delta from an exact base image.
    Delta {
        /// SHA-256 of the base image.
        base_sha256: Sha256Digest,
        /// Length of the base image.
        base_size: u64,
    },
}

/// Why a target's `custom` is not a release this updater can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// Missing or mistyped fields.
    #[error("custom metadata is not a release: {0}")]
    Malformed(String),
    /// More image entries than [`MAX_RELEASE_IMAGES`].
    #[error("custom metadata lists {0} image entries, more than the {MAX_RELEASE_IMAGES} allowed")]
    TooManyImages(usize),
}

impl ReleaseInfo {
    /// The release of a bundle, offered on `channel`.
    pub fn from_manifest(manifest: &Manifest, channel: &str) -> Self {
        let images = manifest
            .images
            .iter()
            .map(|image| ReleaseImage {
                name: image.name.clone(),
                payload: match &image.payload {
                    PayloadKind::Full => ReleasePayload::Full,
                    PayloadKind::Delta {
                        base_sha256,
                        base_size,
                        ..
                    } => ReleasePayload::Delta {
                        base_sha256: *base_sha256,
                        base_size: *base_size,
                    },
                },
                sha256: image.sha256,
                size: Some(image.size),
            })
            .collect();
        ReleaseInfo {
            product: manifest.product.clone(),
            version: manifest.version.clone(),
            channel: channel.to_owned(),
            images,
            extra: Map::new(),
        }
    }

    /// Whether this release describes exactly the bundle with `manifest`: same product and
    /// version, and the same image offers (name, payload, image hash; the size when recorded),
    /// in the same order. Says what differs when it does not.
    pub fn describes(&self, manifest: &Manifest) -> Result<(), String> {
        if self.product != manifest.product || self.version != manifest.version {
            return Err(format!(
                "it is {} {}, the bundle {} {}",
                self.product, self.version, manifest.product, manifest.version
            ));
        }
        let bundle = Self::from_manifest(manifest, &self.channel).images;
        let same = self.images.len() == bundle.len()
            && self.images.iter().zip(&bundle).all(|(listed, actual)| {
                listed.name == actual.name
                    && listed.payload == actual.payload
                    && listed.sha256 == actual.sha256
                    && listed.size.is_none_or(|s| Some(s) == actual.size)
            });
        if !same {
            return Err("its images differ from the bundle's".into());
        }
        Ok(())
    }

    /// Reads a target's `custom` object.
    pub fn from_custom(custom: &Value) -> Result<Self, ReleaseError> {
        let count = custom
            .get("images")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if count > MAX_RELEASE_IMAGES {
            return Err(ReleaseError::TooManyImages(count));
        }
        serde_json::from_value(custom.clone()).map_err(|e| ReleaseError::Malformed(e.to_string()))
    }

    /// The `custom` object written into the target entry.
    pub fn to_custom(&self) -> Value {
        // A struct of strings, versions, digests and maps always serialises.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The offers of this release, in the shape [`choose_payloads`] takes.
    pub fn offers(&self) -> Vec<PayloadOffer<'_>> {
        self.images
            .iter()
            .map(|image| PayloadOffer {
                name: &image.name,
                base: match &image.payload {
                    ReleasePayload::Full => None,
                    ReleasePayload::Delta {
                        base_sha256,
                        base_size,
                    } => Some((*base_sha256, *base_size)),
                },
            })
            .collect()
    }

    /// The image names this release updates, sorted, without repeats.
    pub fn image_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.images.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The full images' hashes and sizes (what a slot holding this release contains).
    pub fn full_images(&self) -> BTreeMap<&str, (Sha256Digest, Option<u64>)> {
        self.images
            .iter()
            .filter(|i| i.payload == ReleasePayload::Full)
            .map(|i| (i.name.as_str(), (i.sha256, i.size)))
            .collect()
    }
}

/// One payload offered for one image: a full image (`base: None`) or a delta from a base with
/// that SHA-256 over that many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadOffer<'a> {
    /// Image name.
    pub name: &'a str,
    /// The delta's base (hash, length), or `None` for a full image.
    pub base: Option<(Sha256Digest, u64)>,
}

/// The offers of a bundle manifest, in payload order.
pub fn manifest_offers(manifest: &Manifest) -> Vec<PayloadOffer<'_>> {
    manifest
        .images
        .iter()
        .map(|image| PayloadOffer {
            name: &image.name,
            base: match &image.payload {
                PayloadKind::Full => None,
                PayloadKind::Delta {
                    base_sha256,
                    base_size,
                    ..
                } => Some((*base_sha256, *base_size)),
            },
        })
        .collect()
}

/// What [`choose_payloads`] picked for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// Index into the offers.
    pub index: usize,
    /// Whether it is a delta.
    pub delta: bool,
}

/// An image for which nothing applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {image}: only deltas from bases {bases} are offered, none matches what is there, and there is no full image")]
pub struct NothingApplies {
    /// The image.
    pub image: String,
    /// The first 16 hex digits of each offered base hash, comma separated.
    pub bases: String,
}

/// Per image of `names`: the first delta whose base equals what `base_hash(name, base_size)`
/// reports (the SHA-256 of the first `base_size` bytes of what the device holds for that image,
/// `None` when unknown or unreadable), else the full image. An image with neither is an error.
/// `base_hash` is asked at most once per (image, length): callers hash slots through it.
pub fn choose_payloads(
    offers: &[PayloadOffer<'_>],
    names: &[&str],
    mut base_hash: impl FnMut(&str, u64) -> Option<Sha256Digest>,
) -> Result<BTreeMap<String, Chosen>, NothingApplies> {
    let mut known: BTreeMap<(&str, u64), Option<Sha256Digest>> = BTreeMap::new();
    let mut chosen = BTreeMap::new();
    for &name in names {
        let mut delta = None;
        let mut full = None;
        let mut bases = Vec::new();
        for (index, offer) in offers.iter().enumerate().filter(|(_, o)| o.name == name) {
            match offer.base {
                None => {
                    full.get_or_insert(index);
                }
                Some((sha256, size)) => {
                    bases.push(sha256.to_hex()[..16].to_owned());
                    if delta.is_some() {
                        continue;
                    }
                    let have = *known
                        .entry((name, size))
                        .or_insert_with(|| base_hash(name, size));
                    if have == Some(sha256) {
                        delta = Some(index);
                    }
                }
            }
        }
        let pick = match (delta, full) {
            (Some(index), _) => Chosen { index, delta: true },
            (None, Some(index)) => Chosen {
                index,
                delta: false,
            },
            (None, None) => {
                return Err(NothingApplies {
                    image: name.to_owned(),
                    bases: bases.join(", "),
                })
            }
        };
        chosen.insert(name.to_owned(), pick);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(byte: u8) -> Sha256Digest {
        Sha256Digest([byte; 32])
    }

    #[test]
    fn custom_round_trips_and_keeps_unknown_fields() {
        let custom = json!({
            "product": "acme-router", "version": "2.0.0", "channel": "stable",
            "images": [
                {"name": "rootfs", "kind": "full", "sha256": digest(1).to_hex(), "size": 10},
                {"name": "rootfs", "kind": "delta", "sha256": digest(1).to_hex(),
                 "base_sha256": digest(2).to_hex(), "base_size": 7},
            ],
            "rollout": {"waves": []},
        });
        let release = ReleaseInfo::from_custom(&custom).unwrap();
        assert_eq!(release.version, semver::Version::new(2, 0, 0));
        assert_eq!(release.images.len(), 2);
        assert!(release.extra.contains_key("rollout"));
        assert_eq!(release.to_custom(), custom);
    }

    #[test]
    fn malformed_custom_is_an_error_not_a_panic() {
        for bad in [
            json!(null),
            json!({"product": "p", "version": "x", "channel": "c"}),
            json!({"product": "p", "version": "1.0.0", "channel": "c",
                   "images": [{"name": "rootfs", "kind": "weird", "sha256": digest(1).to_hex()}]}),
        ] {
            assert!(ReleaseInfo::from_custom(&bad).is_err(), "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_RELEASE_IMAGES)
            .map(|_| json!({"name": "rootfs", "kind": "full", "sha256": digest(1).to_hex()}))
            .collect();
        let custom = json!({"product": "p", "version": "1.0.0", "channel": "c", "images": many});
        assert!(matches!(
            ReleaseInfo::from_custom(&custom),
            Err(ReleaseError::TooManyImages(_))
        ));
    }

    #[test]
    fn delta_from_the_running_base_wins_over_full_and_hashes_once_per_length() {
        let offers = [
            PayloadOffer {
                name: "rootfs",
                base: None,
            },
            PayloadOffer {
                name: "rootfs",
                base: Some((digest(9), 100)),
            },
            PayloadOffer {
                name: "rootfs",
                base: Some((digest(2), 100)),
            },
            PayloadOffer {
                name: "kernel",
                base: None,
            },
        ];
        let mut asked = Vec::new();
        let chosen = choose_payloads(&offers, &["kernel", "rootfs"], |name, len| {
            asked.push((name.to_owned(), len));
            Some(digest(2))
        })
        .unwrap();
        assert_eq!(
            chosen["rootfs"],
            Chosen {
                index: 2,
                delta: true
            }
        );
        assert_eq!(
            chosen["kernel"],
            Chosen {
                index: 3,
                delta: false
            }
        );
        assert_eq!(asked, vec![("rootfs".to_owned(), 100)]);
    }

    #[test]
    fn only_foreign_deltas_means_nothing_applies() {
        let offers = [PayloadOffer {
            name: "rootfs",
            base: Some((digest(9), 100)),
        }];
        let err = choose_payloads(&offers, &["rootfs"], |_, _| Some(digest(2))).unwrap_err();
        assert_eq!(err.image, "rootfs");
        assert!(err.to_string().contains(&digest(9).to_hex()[..16]));
    }
}
