"""Builds a TUF repository with python-tuf's Metadata API, for `ota-update tuf` to consume.

    make_repo.py OUTDIR          create the repository in OUTDIR
    make_repo.py --bump OUTDIR   publish new snapshot and timestamp versions (same targets)

Prints one JSON object on stdout. On creation: {"root": RELATIVE_PATH, "targets": {NAME:
[SERVED_PATH, ...]}}, every served path relative to OUTDIR (one copy per hash, as python-tuf's
`TargetFile.get_prefixed_paths` names them); after --bump: {"timestamp": V, "snapshot": V}.

The repository uses consistent snapshots and a different key type per role:
  root       ed25519
  targets    ecdsa-sha2-nistp256, delegating router/* (terminating) to the role "router"
  router     ed25519 (its own key)
  snapshot   rsassa-pss-sha256
  timestamp  ed25519
Targets: "fw 2.bin" (a space in the name; sha256 and sha512) in targets, "router/fw.bin" only in
router. Custom fields and an unrecognized signed field carry non-ASCII text, written both as
\\u escapes (python-tuf's serializer) and as raw UTF-8 (targets.json), so the signature check
has to canonicalise what it parsed, not the bytes it received.

Layout: OUTDIR/metadata/{1.root.json, timestamp.json, N.snapshot.json, N.targets.json,
N.router.json}, OUTDIR/targets/HASH.NAME (router/HASH.fw.bin for the delegated target). The
private keys are kept in OUTDIR/.keys (ota-server does not serve hidden paths) for --bump.
Every role is verified here with python-tuf before the script exits, so a refusal by the Rust
client is the Rust client's.
"""

import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def expiry(days: int) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


def escaped(md: Metadata) -> bytes:
    """python-tuf's default serialization: compact, non-ASCII as \\u escapes."""
    return md.to_bytes()


def indented(md: Metadata) -> bytes:
    return md.to_bytes(JSONSerializer(compact=False))


def raw_utf8(md: Metadata) -> bytes:
    """The same document with non-ASCII characters as raw UTF-8 (valid JSON too)."""
    return json.dumps(
        md.to_dict(), ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode("utf-8")


def write(out: Path, relative: str, data: bytes) -> None:
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def signed(signed_part, signer: Signer) -> Metadata:
    md = Metadata(signed_part)
    md.sign(signer)
    return md


def snapshot_and_timestamp(out: Path, meta: dict, version: int, snapshot_signer, timestamp_signer):
    """Writes VERSION.snapshot.json listing `meta` and timestamp.json (also VERSION) naming it
    with its length and hashes; returns both."""
    snapshot = signed(Snapshot(version=version, expires=expiry(7), meta=meta), snapshot_signer)
    snapshot_bytes = escaped(snapshot)
    write(out, f"metadata/{version}.snapshot.json", snapshot_bytes)
    timestamp = signed(
        Timestamp(
            version=version,
            expires=expiry(1),
            snapshot_meta=MetaFile.from_data(version, snapshot_bytes, ["sha256", "sha512"]),
        ),
        timestamp_signer,
    )
    write(out, "metadata/timestamp.json", escaped(timestamp))
    return snapshot, timestamp


def create(out: Path) -> dict:
    signers = {
        "root": CryptoSigner.generate_ed25519(),
        "targets": CryptoSigner.generate_ecdsa(),
        "snapshot": CryptoSigner.generate_rsa(),
        "timestamp": CryptoSigner.generate_ed25519(),
        "router": CryptoSigner.generate_ed25519(),
    }
    (out / ".keys").mkdir(parents=True, exist_ok=True)
    for role, signer in signers.items():
        (out / ".keys" / f"{role}.pem").write_bytes(signer.private_bytes)

    root = Root(expires=expiry(365), consistent_snapshot=True)
    for role in ["root", "targets", "snapshot", "timestamp"]:
        root.add_key(signers[role].public_key, role)
    root.unrecognized_fields["x-operator"] = "Société Générale d'Équipements — Zürich"
    root_md = signed(root, signers["root"])
    write(out, "metadata/1.root.json", indented(root_md))

    rng = random.Random(20240607)
    contents = {"fw 2.bin": rng.randbytes(70_000), "router/fw.bin": rng.randbytes(33_333)}
    served = {}
    target_files = {}
    for name, data in contents.items():
        algorithms = ["sha256", "sha512"] if name == "fw 2.bin" else ["sha256"]
        target = TargetFile.from_data(name, data, algorithms)
        target.unrecognized_fields["custom"] = {
            "description": "Frühjahrs-Update für den Router ✓",
            "名前": "ルーター",
            "emoji": "\U0001f680",
        }
        target_files[name] = target
        served[name] = []
        for prefixed in target.get_prefixed_paths():
            write(out, f"targets/{prefixed}", data)
            served[name].append(f"targets/{prefixed}")

    router_key = signers["router"].public_key
    router = Targets(
        version=1,
        expires=expiry(30),
        targets={"router/fw.bin": target_files["router/fw.bin"]},
    )
    router_md = signed(router, signers["router"])
    write(out, "metadata/1.router.json", escaped(router_md))

    targets = Targets(
        version=1,
        expires=expiry(90),
        targets={"fw 2.bin": target_files["fw 2.bin"]},
        delegations=Delegations(
            keys={router_key.keyid: router_key},
            roles={
                "router": DelegatedRole(
                    name="router",
                    keyids=[router_key.keyid],
                    threshold=1,
                    terminating=True,
                    paths=["router/*"],
                )
            },
        ),
        unrecognized_fields={"x-release-notes": "Sicherheitsupdate — «wichtig»"},
    )
    targets_md = signed(targets, signers["targets"])
    write(out, "metadata/1.targets.json", raw_utf8(targets_md))

    meta = {"targets.json": MetaFile(1), "router.json": MetaFile(1)}
    snapshot_md, timestamp_md = snapshot_and_timestamp(
        out, meta, 1, signers["snapshot"], signers["timestamp"]
    )

    # python-tuf's own verdict on what was written (from the bytes, as a client reads them).
    def load(relative: str) -> Metadata:
        return Metadata.from_bytes((out / relative).read_bytes())

    trusted_root = load("metadata/1.root.json")
    trusted_root.verify_delegate(Root.type, trusted_root)
    trusted_root.verify_delegate(Targets.type, load("metadata/1.targets.json"))
    trusted_root.verify_delegate(Snapshot.type, load("metadata/1.snapshot.json"))
    trusted_root.verify_delegate(Timestamp.type, load("metadata/timestamp.json"))
    load("metadata/1.targets.json").verify_delegate("router", load("metadata/1.router.json"))
    for name, data in contents.items():
        for path in served[name]:
            target_files[name].verify_length_and_hashes((out / path).read_bytes())

    return {"root": "metadata/1.root.json", "targets": served}


def bump(out: Path) -> dict:
    """New snapshot and timestamp versions listing the same targets metadata, signed with the
    keys create() stored; the public keys come from the published root."""
    root = Metadata[Root].from_bytes((out / "metadata/1.root.json").read_bytes()).signed

    def signer(role: str) -> Signer:
        public = root.get_key(root.roles[role].keyids[0])
        return CryptoSigner.from_priv_key_uri(f"file2:{out / '.keys' / role}.pem", public)

    old = Metadata[Timestamp].from_bytes((out / "metadata/timestamp.json").read_bytes()).signed
    previous = Metadata[Snapshot].from_bytes(
        (out / f"metadata/{old.snapshot_meta.version}.snapshot.json").read_bytes()
    ).signed
    version = max(old.version, previous.version) + 1
    snapshot_and_timestamp(out, previous.meta, version, signer("snapshot"), signer("timestamp"))
    return {"timestamp": version, "snapshot": version}


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--bump"] and len(args) == 2:
        result = bump(Path(args[1]))
    elif len(args) == 1 and not args[0].startswith("-"):
        result = create(Path(args[0]))
    else:
        sys.exit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
