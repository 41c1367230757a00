//! `cmd:COMMAND`: a private key kept by an external signer, such as a cloud KMS reached through
//! its command-line client. The command runs under `sh -c` twice at most:
//!
//! - with `OTA_SIGN_ACTION=public-key`: it prints the public key (SPKI PEM, DER, or DER in
//!   base64, as `aws kms get-public-key --output text --query PublicKey` gives);
//! - with `OTA_SIGN_ACTION=sign`: the bytes to sign arrive on standard input, their SHA-256 in
//!   `OTA_SIGN_SHA256` (hex) and `OTA_SIGN_SHA256_BASE64`, the algorithm in `OTA_SIGN_ALGORITHM` (`ed25519` or
//!   `ecdsa-p256`); it prints the signature (Ed25519's 64 bytes; for P-256 DER or `r ‖ s` over
//!   SHA-256 of the input, which is what a KMS signing that digest returns), raw or in base64.
//!
//! Every signature is verified against the public key before use, so a command that signs with
//! the wrong key or the wrong bytes fails here, not on the devices.

use crate::keys::{ExternalSigner, KeyError, SigningKey, VerifyingKey};
use std::io::Write;
use std::process::{Command, Stdio};

/// The key the command keeps.
pub fn load(command: &str) -> Result<SigningKey, KeyError> {
    let reference = format!("cmd:{command}");
    let output = run(
        command,
        &reference,
        &[("OTA_SIGN_ACTION", "public-key")],
        None,
    )?;
    let public = parse_public_key(&output, &reference)?;
    let signer = CommandSigner {
        command: command.to_owned(),
        reference: reference.clone(),
        algorithm: public.algorithm().to_string(),
    };
    Ok(SigningKey::external(reference, public, Box::new(signer)))
}

struct CommandSigner {
    command: String,
    reference: String,
    algorithm: String,
}

impl ExternalSigner for CommandSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let digest = crate::Sha256Digest::of(message);
        let (hex, base64) = (digest.to_hex(), base64_encode(&digest.0));
        let env = [
            ("OTA_SIGN_ACTION", "sign"),
            ("OTA_SIGN_SHA256", hex.as_str()),
            ("OTA_SIGN_SHA256_BASE64", base64.as_str()),
            ("OTA_SIGN_ALGORITHM", self.algorithm.as_str()),
        ];
        let output = run(&self.command, &self.reference, &env, Some(message))?;
        Ok(decode_signature(output))
    }
}

/// Runs `sh -c command` with `env`, feeding `input`; its standard output, or why it failed
/// (with the last line it printed on standard error).
fn run(
    command: &str,
    reference: &str,
    env: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Result<Vec<u8>, KeyError> {
    let unavailable = |detail: String| KeyError::Unavailable {
        reference: reference.to_owned(),
        detail,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unavailable(format!("cannot start sh: {e}")))?;
    // Feed standard input from another thread: a command that prints before it has read
    // everything must not deadlock against us.
    let feeder = child
        .stdin
        .take()
        .zip(input.map(<[u8]>::to_vec))
        .map(|(mut stdin, bytes)| std::thread::spawn(move || stdin.write_all(&bytes)));
    let output = child
        .wait_with_output()
        .map_err(|e| unavailable(format!("cannot read its output: {e}")))?;
    if let Some(feeder) = feeder {
        // A command that exits without reading its input gets a broken pipe: its exit status
        // and output decide, not the pipe.
        let _ = feeder.join();
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let action = env.first().map_or("", |(_, v)| *v);
        return Err(unavailable(format!(
            "the signing command failed ({}) when asked for {action}{}",
            output.status,
            if last.is_empty() {
                String::new()
            } else {
                format!(": {}", last.trim())
            }
        )));
    }
    Ok(output.stdout)
}

fn parse_public_key(output: &[u8], reference: &str) -> Result<VerifyingKey, KeyError> {
    let origin = format!("{reference} (public-key)");
    let text = String::from_utf8_lossy(output);
    if text.contains("-----BEGIN") {
        return VerifyingKey::from_pem(&text, &origin);
    }
    VerifyingKey::from_der(output, &origin).or_else(|err| {
        base64_decode(&text)
            .and_then(|der| VerifyingKey::from_der(&der, &origin).ok())
            .ok_or(err)
    })
}

/// Raw bytes as they are, unless they read as base64 (a CLI's text output): then decoded.
fn decode_signature(output: Vec<u8>) -> Vec<u8> {
    if output.len() == 64 || p256::ecdsa::Signature::from_der(&output).is_ok() {
        return output;
    }
    match std::str::from_utf8(&output).ok().and_then(base64_decode) {
        Some(decoded) => decoded,
        None => output,
    }
}

/// Standard base64 with padding (what KMS command-line clients take for binary arguments).
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64 (whitespace ignored); `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let digits: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(digits)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_output_is_decoded_and_junk_refused() {
        assert_eq!(base64_decode("aGVs\nbG8=\n").unwrap(), b"hello");
        assert!(base64_decode("ab!d").is_none());
    }

    #[test]
    fn a_script_signer_signs_and_a_failing_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate_with(crate::keys::Algorithm::EcdsaP256);
        let pem = dir.path().join("k.pem");
        std::fs::write(&pem, key.to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("k.pub"), key.verifying_key().to_pem()).unwrap();
        // openssl stands in for a KMS: DER public key in base64, DER signature.
        let script = format!(
            "cd {}; case $OTA_SIGN_ACTION in public-key) openssl pkey -pubin -in k.pub -outform DER | base64 ;; sign) openssl dgst -sha256 -sign k.pem ;; esac",
            dir.path().display()
        );
        let external = load(&script).unwrap();
        assert_eq!(external.verifying_key(), key.verifying_key());
        let sig = external.sign(b"manifest").unwrap();
        assert!(key.verifying_key().verifies(b"manifest", &sig));
        let err = load("echo nope >&2; exit 3").err().unwrap();
        assert!(matches!(err, KeyError::Unavailable { .. }), "{err}");
        assert!(err.to_string().ends_with("public-key: nope"), "{err}");
    }
}
