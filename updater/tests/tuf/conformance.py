"""Builds TUF repositories with python-tuf's Metadata API for the client rules that
tests/tuf_conformance.rs checks (docs/tuf-metadata.md, "Client rules"):

    conformance.py diamond OUTDIR            delegation confusion: `release` delegated by two
                                             roles with different keys, signed for one
    conformance.py broken-branches OUTDIR    delegated roles missing from the snapshot, badly
                                             signed, or unreachable, beside a healthy one
    conformance.py fast-forward OUTDIR       a delegated role fast-forwarded to v99999 ...
    conformance.py fast-forward --recover OUTDIR
                                             ... then recovered: snapshot key rotated, the role
                                             back at version 1
    conformance.py unusual-names OUTDIR      delegated roles named ?, #, /delegatedrole and
                                             ../delegatedrole
    conformance.py duplicate-sigs OUTDIR     timestamp.json with one signature listed twice
    conformance.py key-twice ed25519|ecdsa OUTDIR
                                             one key listed twice under two spellings (hex case;
                                             PEM line ends), the role's threshold 2
    conformance.py expired-2021 OUTDIR       every role expires 2021-01-01T00:00:00Z

Prints one JSON object: {"root": RELATIVE_PATH, "targets": {PATH: [SERVED_PATH, ...]}} plus
what the case adds. Every role is written as `metadata/VERSION.NAME.json` with the role name as
is (so `metadata/1./delegatedrole.json` for "/delegatedrole"): what a web server maps the
request `1.%2Fdelegatedrole.json` to. Consistent snapshots; targets under
`targets/DIR/HASH.NAME`. Private keys stay in OUTDIR/.keys (not served) for later steps.
"""

import json
import sys
from datetime import datetime, timedelta, timezone
from hashlib import sha256
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from make_repo import escaped, write
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey
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

TOP = ["root", "targets", "snapshot", "timestamp"]


def in_days(days: int) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


class Repo:
    """A repository in memory: keys by name (kept in OUTDIR/.keys), a targets role per name,
    who signs each role, and what the snapshot leaves out."""

    def __init__(self, out: Path, expires: datetime | None = None):
        self.out = out
        self.expires = expires or in_days(30)
        self.keys: dict[str, CryptoSigner] = {}
        self.root = Root(expires=self.expires, consistent_snapshot=True)
        for role in TOP:
            self.root.add_key(self.key(role).public_key, role)
        self.roles: dict[str, Targets] = {"targets": Targets(expires=self.expires)}
        self.signers: dict[str, list[str]] = {"targets": ["targets"]}
        self.unlisted: set[str] = set()
        self.served: dict[str, list[str]] = {}

    def key(self, name: str) -> CryptoSigner:
        if name not in self.keys:
            path = self.out / ".keys" / f"{name}.pem"
            if path.exists():
                self.keys[name] = CryptoSigner(load_pem_private_key(path.read_bytes(), None))
            else:
                self.keys[name] = CryptoSigner.generate_ed25519()
                write(self.out, f".keys/{name}.pem", self.keys[name].private_bytes)
        return self.keys[name]

    def delegate(self, delegator: str, name: str, key: str, paths: list[str], terminating=False):
        """`delegator` delegates `name` for `paths` to key `key`; `name` is signed by `key`
        unless `sign_with` says otherwise."""
        parent = self.roles[delegator]
        if parent.delegations is None:
            parent.delegations = Delegations(keys={}, roles={})
        public = self.key(key).public_key
        parent.delegations.keys[public.keyid] = public
        parent.delegations.roles[name] = DelegatedRole(
            name, [public.keyid], 1, terminating, paths=paths
        )
        self.roles.setdefault(name, Targets(expires=self.expires))
        self.signers.setdefault(name, [key])

    def add_target(self, role: str, path: str, data: bytes) -> None:
        target = TargetFile.from_data(path, data)
        self.roles[role].targets[path] = target
        self.served[path] = []
        for prefixed in target.get_prefixed_paths():
            write(self.out, f"targets/{prefixed}", data)
            self.served[path].append(f"targets/{prefixed}")

    def sign(self, signed, key_names: list[str]) -> Metadata:
        md = Metadata(signed)
        for name in key_names:
            md.sign(self.key(name), append=True)
        return md

    def publish(self, snapshot_version: int = 1) -> dict:
        """Writes root (its current version), every targets role, snapshot and timestamp."""
        root_md = self.sign(self.root, ["root"])
        write(self.out, f"metadata/{self.root.version}.root.json", escaped(root_md))
        meta = {}
        for name, role in self.roles.items():
            md = self.sign(role, self.signers[name])
            write(self.out, f"metadata/{role.version}.{name}.json", escaped(md))
            if name not in self.unlisted:
                meta[f"{name}.json"] = MetaFile(role.version)
        snapshot = self.sign(
            Snapshot(version=snapshot_version, expires=self.expires, meta=meta), ["snapshot"]
        )
        snapshot_bytes = escaped(snapshot)
        write(self.out, f"metadata/{snapshot_version}.snapshot.json", snapshot_bytes)
        timestamp = self.sign(
            Timestamp(
                version=snapshot_version,
                expires=self.expires,
                snapshot_meta=MetaFile.from_data(snapshot_version, snapshot_bytes, ["sha256"]),
            ),
            ["timestamp"],
        )
        write(self.out, "metadata/timestamp.json", escaped(timestamp))
        return {"root": "metadata/1.root.json", "targets": self.served}

    def load(self, relative: str) -> Metadata:
        return Metadata.from_bytes((self.out / relative).read_bytes())


def diamond(out: Path) -> dict:
    """targets -> parent-a (team-a/*), parent-b (team-b/*); parent-a -> release (team-a/*,
    key release-a); parent-b -> release (team-b/*, key release-b); release is signed with
    release-a only and lists team-a/x.bin and team-b/y.bin."""
    repo = Repo(out)
    repo.delegate("targets", "parent-a", "parent-a", ["team-a/*"])
    repo.delegate("targets", "parent-b", "parent-b", ["team-b/*"])
    repo.delegate("parent-a", "release", "release-a", ["team-a/*"])
    repo.delegate("parent-b", "release", "release-b", ["team-b/*"])
    repo.add_target("release", "team-a/x.bin", b"team a's firmware\n" * 100)
    repo.add_target("release", "team-b/y.bin", b"not team b's firmware\n" * 100)
    made = repo.publish()
    # python-tuf's own verdict on the role itself: valid for parent-a, not for parent-b.
    release = repo.load("metadata/1.release.json")
    repo.load("metadata/1.parent-a.json").verify_delegate("release", release)
    try:
        repo.load("metadata/1.parent-b.json").verify_delegate("release", release)
        raise SystemExit("release must not verify under parent-b's keys")
    except Exception as e:  # UnsignedMetadataError
        made["parent_b_verdict"] = type(e).__name__
    return made


def broken_branches(out: Path) -> dict:
    """targets lists fw.bin and delegates, in this order: missing (other/*, not in the
    snapshot), badsig (bad/*, signed by the wrong key), gone (gone/*, listed but its file is
    absent), fine (fine/*, lists fine/x.bin)."""
    repo = Repo(out)
    repo.add_target("targets", "fw.bin", b"top-level firmware\n" * 100)
    repo.delegate("targets", "missing", "missing", ["other/*"])
    repo.add_target("missing", "other/x.bin", b"other\n" * 100)
    repo.unlisted.add("missing")
    repo.delegate("targets", "badsig", "badsig", ["bad/*"])
    repo.signers["badsig"] = ["not-badsig"]
    repo.add_target("badsig", "bad/x.bin", b"bad\n" * 100)
    repo.delegate("targets", "gone", "gone", ["gone/*"])
    repo.delegate("targets", "fine", "fine", ["fine/*"])
    repo.add_target("fine", "fine/x.bin", b"fine\n" * 100)
    made = repo.publish()
    (out / "metadata/1.gone.json").unlink()
    return made


def fast_forward(out: Path, recover: bool) -> dict:
    """Step 1: targets -> ff (ff/*), ff at version 99999 listing ff/a.bin. Step 2 (--recover):
    root v2 with a new snapshot key; ff back at version 1 listing ff/a.bin and ff/b.bin;
    snapshot and timestamp v2."""
    repo = Repo(out)
    repo.delegate("targets", "ff", "ff", ["ff/*"])
    repo.add_target("ff", "ff/a.bin", b"a\n" * 100)
    if not recover:
        repo.roles["ff"].version = 99999
        return repo.publish()
    repo.add_target("ff", "ff/b.bin", b"b\n" * 100)
    old = repo.root.roles["snapshot"].keyids[0]
    repo.root.revoke_key(old, "snapshot")
    repo.root.add_key(repo.key("snapshot-2").public_key, "snapshot")
    repo.keys["snapshot"] = repo.key("snapshot-2")
    # Root v2, signed by the (unchanged) root key.
    repo.root.version = 2
    made = repo.publish(snapshot_version=2)
    return made


UNUSUAL = ["?", "#", "/delegatedrole", "../delegatedrole"]


def unusual_names(out: Path) -> dict:
    """One delegated role per unusual name, role i trusted for r{i}/* and listing
    r{i}/fw.bin."""
    repo = Repo(out)
    for i, name in enumerate(UNUSUAL):
        repo.delegate("targets", name, f"role{i}", [f"r{i}/*"])
        repo.add_target(name, f"r{i}/fw.bin", f"firmware of role {name}\n".encode() * 100)
    made = repo.publish()
    made["roles"] = UNUSUAL
    return made


def duplicate_sigs(out: Path) -> dict:
    """A valid repository, then timestamp.json rewritten with its one signature listed
    twice (python-tuf's Metadata cannot even hold that: its signatures are a dict)."""
    repo = Repo(out)
    repo.add_target("targets", "fw.bin", b"firmware\n" * 100)
    made = repo.publish()
    path = out / "metadata/timestamp.json"
    good = path.read_bytes()
    doc = json.loads(good)
    doc["signatures"] = doc["signatures"] * 2
    path.write_bytes(json.dumps(doc, separators=(",", ":")).encode())
    write(out, ".keys/timestamp.good.json", good)
    try:
        Metadata.from_bytes(path.read_bytes())
        raise SystemExit("python-tuf read a duplicate signature key id")
    except Exception as e:  # DeserializationError from ValueError
        made["python_tuf"] = str(e.__cause__ or e)
    return made


def key_twice(out: Path, keytype: str) -> dict:
    """ed25519: the timestamp key listed twice, its public hex in lower and in upper case;
    ecdsa: the snapshot key (ECDSA P-256) listed twice, its PEM with LF and with CRLF. The
    role's threshold is 2 and both key ids carry the one key's signature."""
    role = "timestamp" if keytype == "ed25519" else "snapshot"
    repo = Repo(out)
    if keytype == "ecdsa":
        repo.keys["snapshot"] = CryptoSigner.generate_ecdsa()
        write(out, ".keys/snapshot.pem", repo.keys["snapshot"].private_bytes)
        repo.root.revoke_key(repo.root.roles["snapshot"].keyids[0], "snapshot")
        repo.root.add_key(repo.keys["snapshot"].public_key, "snapshot")
    signer = repo.key(role)
    public = signer.public_key
    if keytype == "ed25519":
        other_public = public.keyval["public"].upper()
    else:
        other_public = public.keyval["public"].replace("\n", "\r\n")
    other = {"keytype": public.keytype, "scheme": public.scheme, "keyval": {"public": other_public}}
    other_id = sha256(encode_canonical(other).encode()).hexdigest()
    assert other_id != public.keyid
    repo.root.add_key(SSlibKey(other_id, public.keytype, public.scheme, {"public": other_public}), role)
    repo.root.roles[role].threshold = 2
    repo.add_target("targets", "fw.bin", b"firmware\n" * 100)
    made = repo.publish()
    # The role's file: a second signature entry under the other id, the same signature.
    versioned = "metadata/timestamp.json" if role == "timestamp" else "metadata/1.snapshot.json"
    md = repo.load(versioned)
    md.signatures[other_id] = Signature(other_id, md.signatures[public.keyid].signature)
    data = escaped(md)
    write(out, versioned, data)
    if role == "snapshot":
        # The timestamp names the snapshot by hash: sign a new one for the rewritten file.
        timestamp = repo.sign(
            Timestamp(version=1, expires=repo.expires,
                      snapshot_meta=MetaFile.from_data(1, data, ["sha256"])),
            ["timestamp"],
        )
        write(out, "metadata/timestamp.json", escaped(timestamp))
    # python-tuf 7 counts key ids: it takes the two spellings as two keys.
    try:
        repo.load("metadata/1.root.json").verify_delegate(role, repo.load(versioned))
        made["python_tuf_threshold_met"] = True
    except Exception:
        made["python_tuf_threshold_met"] = False
    made["role"] = role
    return made


def expired_2021(out: Path) -> dict:
    repo = Repo(out, expires=datetime(2021, 1, 1, tzinfo=timezone.utc))
    repo.add_target("targets", "fw.bin", b"firmware of 2020\n" * 100)
    return repo.publish()


def main() -> None:
    args = sys.argv[1:]
    cases = {
        "diamond": diamond,
        "broken-branches": broken_branches,
        "unusual-names": unusual_names,
        "duplicate-sigs": duplicate_sigs,
        "expired-2021": expired_2021,
    }
    if len(args) == 2 and args[0] in cases:
        result = cases[args[0]](Path(args[1]))
    elif args[:1] == ["fast-forward"] and len(args) in (2, 3):
        result = fast_forward(Path(args[-1]), recover=args[1] == "--recover")
    elif args[:1] == ["key-twice"] and len(args) == 3 and args[1] in ("ed25519", "ecdsa"):
        result = key_twice(Path(args[2]), args[1])
    else:
        sys.exit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
