"""Builds a repository whose delegations probe path-pattern matching, with python-tuf's verdicts.

    delegation_cases.py OUTDIR

Top-level targets delegates one role per case, with the case's pattern as its only `paths`
entry; the role lists the case's target path whether or not the pattern covers it. A client
must find the target exactly when the delegation covers the path, which python-tuf decides with
`DelegatedRole.is_delegated_path` (fnmatch per path segment: `*`, `?` one character, `[seq]`,
`[!seq]`), the same function its ngclient uses to walk delegations.

Prints {"root": "metadata/1.root.json", "cases": [{"pattern", "path", "delegated"}]}.
"""

import json
import sys
from pathlib import Path

from make_repo import escaped, expiry, signed, snapshot_and_timestamp, write
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import DelegatedRole, Delegations, MetaFile, Root, TargetFile, Targets

CASES = [
    ("star/*", "star/a b.bin"),
    ("deep/*", "deep/sub/x.bin"),
    ("case/*.bin", "case/x.BIN"),
    ("class/fw-[0-9].bin", "class/fw-1.bin"),
    ("negated/fw-[!0-9].bin", "negated/fw-x.bin"),
    ("literal/[ab].bin", "literal/[ab].bin"),
    ("one/?.bin", "one/\u00e9.bin"),
    ("two/??.bin", "two/\u00e9.bin"),
]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    signers = {
        role: CryptoSigner.generate_ed25519()
        for role in ["root", "targets", "snapshot", "timestamp", "delegated"]
    }
    root = Root(expires=expiry(30))
    for role in ["root", "targets", "snapshot", "timestamp"]:
        root.add_key(signers[role].public_key, role)
    write(out, "metadata/1.root.json", escaped(signed(root, signers["root"])))

    key = signers["delegated"].public_key
    roles = {}
    meta = {"targets.json": MetaFile(1)}
    cases = []
    for i, (pattern, path) in enumerate(CASES):
        name = f"case{i}"
        data = f"{pattern} -> {path}\n".encode() * 50
        target = TargetFile.from_data(path, data)
        for prefixed in target.get_prefixed_paths():
            write(out, f"targets/{prefixed}", data)
        role_md = signed(Targets(expires=expiry(30), targets={path: target}), signers["delegated"])
        write(out, f"metadata/1.{name}.json", escaped(role_md))
        meta[f"{name}.json"] = MetaFile(1)
        roles[name] = DelegatedRole(name, [key.keyid], 1, False, paths=[pattern])
        cases.append(
            {"pattern": pattern, "path": path, "delegated": roles[name].is_delegated_path(path)}
        )
    targets = Targets(expires=expiry(30), delegations=Delegations({key.keyid: key}, roles))
    write(out, "metadata/1.targets.json", escaped(signed(targets, signers["targets"])))
    snapshot_and_timestamp(out, meta, 1, signers["snapshot"], signers["timestamp"])
    print(json.dumps({"root": "metadata/1.root.json", "cases": cases}))


if __name__ == "__main__":
    main()
