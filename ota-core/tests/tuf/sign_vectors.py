"""Reads a message (raw bytes) from stdin, signs it with freshly generated securesystemslib keys
and prints one JSON object: {"vectors": [{"name", "keyid", "key", "signatures": [hex, ...]}]}.

"key" is the TUF key object (`public_key.to_dict()`), "keyid" the id securesystemslib computed
for it (null where the key object was edited by hand, so no id was computed for it).
Every signature is checked here with securesystemslib's own `verify_signature` before it is
printed, and so is its rejection of the message with one byte flipped (the same flip the Rust
test makes), so the test's expected answers are the reference implementation's answers.
"""

import json
import sys
import warnings

from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

message = sys.stdin.buffer.read()
tampered = bytearray(message)
tampered[0] ^= 1
tampered = bytes(tampered)


def checked(key: SSlibKey, sig_hex: str) -> str:
    """Returns sig_hex after securesystemslib accepted it for message and refused it for tampered."""
    key.verify_signature(Signature(key.keyid, sig_hex), message)
    try:
        key.verify_signature(Signature(key.keyid, sig_hex), tampered)
    except UnverifiedSignatureError:
        return sig_hex
    raise AssertionError(f"securesystemslib accepted a tampered message for {key.keytype}")


def vector(name: str, key: SSlibKey, signatures: list[str], keyid: str | None) -> dict:
    return {
        "name": name,
        "keyid": keyid,
        "key": key.to_dict(),
        "signatures": [checked(key, s) for s in signatures],
    }


vectors = []

# ECDSA: OpenSSL picks a random nonce and does not normalise S, so several signatures make it
# near certain that both the low-S and the high-S form are exercised.
ecdsa = CryptoSigner.generate_ecdsa()
ecdsa_sigs = [ecdsa.sign(message).signature for _ in range(8)]
vectors.append(vector("ecdsa (generate_ecdsa)", ecdsa.public_key, ecdsa_sigs, ecdsa.public_key.keyid))

# The same key under the spec-deprecated keytype that older securesystemslib wrote.
legacy_dict = dict(ecdsa.public_key.to_dict(), keytype="ecdsa-sha2-nistp256")
legacy = SSlibKey.from_dict(ecdsa.public_key.keyid, dict(legacy_dict))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    vectors.append(vector("ecdsa-sha2-nistp256 legacy keytype", legacy, ecdsa_sigs[:2], None))

# RSA: securesystemslib's signer (3072 bits, PSS with salt length = digest length).
rsa_signer = CryptoSigner.generate_rsa()
rsa_sigs = [rsa_signer.sign(message).signature for _ in range(2)]
vectors.append(vector("rsa (generate_rsa)", rsa_signer.public_key, rsa_sigs, rsa_signer.public_key.keyid))

# RSA signed with the maximum salt length, as signers using Go's PSSSaltLengthAuto do;
# securesystemslib verifies with PSS.AUTO and accepts it.
private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
max_salt = CryptoSigner(private)
pss_max = padding.PSS(mgf=padding.MGF1(SHA256()), salt_length=padding.PSS.MAX_LENGTH)
max_sig = private.sign(message, pss_max, SHA256()).hex()
max_key = max_salt.public_key
vectors.append(vector("rsa, maximum PSS salt length", max_key, [max_sig], max_key.keyid))

json.dump({"vectors": vectors}, sys.stdout)
