//! Build provenance bound to a bundle: an in-toto Statement (SLSA provenance, typically) that
//! says how the images were built. The signed manifest records the document's SHA-256 and
//! size, its predicate type and builder, so a release is tied to one build record; the
//! document itself travels beside the bundle (a repository target), and its own signature
//! (DSSE, Sigstore) is checked by auditors with their tools (`slsa-verifier`, `cosign`).
//!
//! Accepted documents: a bare in-toto Statement (`_type` `https://in-toto.io/Statement/v*`), a
//! DSSE envelope carrying one (`payloadType` `application/vnd.in-toto+json`), or a Sigstore
//! bundle holding such an envelope (what GitHub's `attest-build-provenance` and
//! `slsa-github-generator` write). Every image a bundle carries must be one of the statement's
//! subjects (by SHA-256): provenance that does not attest the images is refused.

use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest provenance document read (real SLSA documents are a few KiB to a few hundred).
pub const MAX_PROVENANCE_SIZE: usize = 16 << 20;

/// Longest text kept from a document (predicate type, builder id).
const MAX_FIELD_LEN: usize = 512;

/// What the signed manifest records about the provenance document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// SHA-256 of the document's exact bytes.
    pub sha256: Sha256Digest,
    /// The document's length.
    pub size: u64,
    /// How it is wrapped: `statement`, `dsse` or `sigstore-bundle`.
    pub envelope: String,
    /// The statement's predicate type (`https://slsa.dev/provenance/v1`, ...).
    pub predicate_type: String,
    /// The builder id SLSA provenance names (`runDetails.builder.id`, or `builder.id` in
    /// v0.2), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder_id: Option<String>,
}

/// Why a provenance document is refused.
#[derive(Debug, thiserror::Error)]
#[error("provenance: {0}")]
pub struct ProvenanceError(pub String);

/// A subject of the statement: a name and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The subject's name (a file name, usually).
    pub name: String,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
}

/// A parsed provenance document.
#[derive(Debug, Clone)]
pub struct ProvenanceDocument {
    /// What the manifest records.
    pub record: Provenance,
    /// The subjects with a SHA-256 digest.
    pub subjects: Vec<Subject>,
}

impl ProvenanceDocument {
    /// Parses the document's exact bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProvenanceError> {
        let fail = |m: &str| ProvenanceError(m.to_owned());
        if bytes.len() > MAX_PROVENANCE_SIZE {
            return Err(fail("the document is larger than 16 MiB"));
        }
        let outer: Value =
            serde_json::from_slice(bytes).map_err(|e| ProvenanceError(format!("not JSON: {e}")))?;
        let (envelope, statement) = unwrap_statement(&outer)?;
        let statement_type = text(&statement["_type"]).unwrap_or_default();
        if !statement_type.starts_with("https://in-toto.io/Statement/") {
            return Err(fail(
                "not an in-toto Statement (no _type https://in-toto.io/Statement/v1)",
            ));
        }
        let predicate_type = text(&statement["predicateType"])
            .filter(|t| !t.is_empty() && t.len() <= MAX_FIELD_LEN)
            .ok_or_else(|| fail("the statement has no predicateType"))?;
        let predicate = &statement["predicate"];
        let builder_id = [
            &predicate["runDetails"]["builder"]["id"],
            &predicate["builder"]["id"],
        ]
        .into_iter()
        .find_map(text)
        .filter(|id| id.len() <= MAX_FIELD_LEN);
        let subjects = subjects(&statement)?;
        Ok(Self {
            record: Provenance {
                sha256: Sha256Digest::of(bytes),
                size: bytes.len() as u64,
                envelope: envelope.to_owned(),
                predicate_type,
                builder_id,
            },
            subjects,
        })
    }

    /// Refuses unless every image, `(name, sha256)`, is a subject (the first missing one is
    /// named): at `bundle --provenance` and at `verify --provenance`.
    pub fn require_subjects<'a>(
        &self,
        images: impl IntoIterator<Item = (&'a str, &'a Sha256Digest)>,
    ) -> Result<(), ProvenanceError> {
        images
            .into_iter()
            .try_for_each(|(name, sha256)| self.require_subject(name, sha256))
    }

    /// Refuses unless an image of SHA-256 `sha256` (named `name` in errors) is a subject.
    pub fn require_subject(
        &self,
        name: &str,
        sha256: &Sha256Digest,
    ) -> Result<(), ProvenanceError> {
        if self.subjects.iter().any(|s| s.sha256 == *sha256) {
            return Ok(());
        }
        let named: Vec<String> = self
            .subjects
            .iter()
            .take(8)
            .map(|s| format!("{} ({})", s.name, &s.sha256.to_hex()[..12]))
            .collect();
        Err(ProvenanceError(format!(
            "it does not attest image '{name}' (sha256 {}…): its subjects are {}; attest the image files the bundle is made of",
            &sha256.to_hex()[..12],
            if named.is_empty() { "none".to_owned() } else { named.join(", ") }
        )))
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// The statement inside the document, and how it was wrapped.
fn unwrap_statement(outer: &Value) -> Result<(&'static str, Value), ProvenanceError> {
    if outer.get("_type").is_some() {
        return Ok(("statement", outer.clone()));
    }
    let media_type = outer["mediaType"].as_str().unwrap_or_default();
    if media_type.starts_with("application/vnd.dev.sigstore.bundle") {
        let envelope = outer.get("dsseEnvelope").ok_or_else(|| {
            ProvenanceError("a Sigstore bundle without a dsseEnvelope holds no statement".into())
        })?;
        return Ok(("sigstore-bundle", dsse_payload(envelope)?));
    }
    if outer.get("payloadType").is_some() {
        return Ok(("dsse", dsse_payload(outer)?));
    }
    Err(ProvenanceError(
        "neither an in-toto Statement, a DSSE envelope nor a Sigstore bundle".into(),
    ))
}

fn dsse_payload(envelope: &Value) -> Result<Value, ProvenanceError> {
    use base64::Engine;
    if envelope["payloadType"].as_str() != Some("application/vnd.in-toto+json") {
        return Err(ProvenanceError(
            "the DSSE payloadType is not application/vnd.in-toto+json".into(),
        ));
    }
    let payload = envelope["payload"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(payload))
        .map_err(|_| ProvenanceError("the DSSE payload is not base64".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ProvenanceError(format!("the DSSE payload is not JSON: {e}")))
}

fn subjects(statement: &Value) -> Result<Vec<Subject>, ProvenanceError> {
    let list = statement["subject"]
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ProvenanceError("the statement has no subject".into()))?;
    Ok(list
        .iter()
        .filter_map(|s| {
            let sha256: Sha256Digest = s["digest"]["sha256"].as_str()?.parse().ok()?;
            Some(Subject {
                name: s["name"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(MAX_FIELD_LEN)
                    .collect(),
                sha256,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn statement(digest: &str) -> Value {
        json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "rootfs.ext4", "digest": {"sha256": digest}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"runDetails": {"builder": {"id": "https://github.com/acme/fw/.github/workflows/release.yml@refs/tags/v2.0.0"}}}
        })
    }

    #[test]
    fn bare_dsse_and_sigstore_forms_give_the_same_statement() {
        let digest = Sha256Digest::of(b"rootfs");
        let s = statement(&digest.to_hex());
        let payload =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&s).unwrap());
        let dsse = json!({"payloadType": "application/vnd.in-toto+json", "payload": payload, "signatures": []});
        let sigstore = json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": dsse});
        for (doc, envelope) in [
            (s, "statement"),
            (dsse, "dsse"),
            (sigstore, "sigstore-bundle"),
        ] {
            let bytes = serde_json::to_vec(&doc).unwrap();
            let parsed = ProvenanceDocument::parse(&bytes).unwrap();
            assert_eq!(parsed.record.envelope, envelope);
            assert_eq!(parsed.record.sha256, Sha256Digest::of(&bytes));
            assert_eq!(
                parsed.record.predicate_type,
                "https://slsa.dev/provenance/v1"
            );
            assert!(parsed
                .record
                .builder_id
                .as_deref()
                .unwrap()
                .contains("release.yml"));
            parsed.require_subject("rootfs", &digest).unwrap();
            let err = parsed
                .require_subject("kernel", &Sha256Digest::of(b"kernel"))
                .unwrap_err();
            assert!(
                err.to_string().contains("does not attest image 'kernel'"),
                "{err}"
            );
        }
    }

    #[test]
    fn documents_that_are_not_provenance_are_refused() {
        for bad in [
            json!({"hello": 1}),
            json!({"_type": "something", "subject": []}),
            json!({"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "x"}),
            json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "a", "digest": {"sha256": "00"}}]}),
            json!({"payloadType": "text/plain", "payload": ""}),
            json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}),
        ] {
            assert!(
                ProvenanceDocument::parse(&serde_json::to_vec(&bad).unwrap()).is_err(),
                "{bad}"
            );
        }
        assert!(ProvenanceDocument::parse(b"not json").is_err());
    }
}
