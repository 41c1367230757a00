#!/usr/bin/env bash
# fuzz/make-seeds.sh -- regenerates the committed seed corpora (fuzz/corpus/TARGET/) and the
# TUF fixture (fuzz/fixtures/tuf/) from real tools: bundles made by ota-sign with the fixture
# bundle key, a TUF repository made by `ota-sign repo` with the fixture role keys
# (SOURCE_DATE_EPOCH=1767225600, ten-year lifetimes, so the metadata is reproducible and fresh
# at the targets' reference time), GRUB environments from grub-editenv, U-Boot environments
# from mkenvimage, the shipped updater.toml examples, HTTP paths and ranges.
#
# Run from anywhere; needs the workspace's ota-sign (built here if missing), python3, zstd,
# grub-editenv and mkenvimage (scripts/install-deps.sh installs them). The keys under
# fuzz/fixtures/keys/ are test keys, public on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz=$root/fuzz
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
sign=$target_dir/release/ota-sign
[ -x "$sign" ] || cargo build --release -q -p ota-signer
keys=$fuzz/fixtures/keys
export SOURCE_DATE_EPOCH=1767225600
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

corpus=$fuzz/corpus
rm -rf "$corpus"
mkdir -p "$corpus"/{bundle_manifest,delta_signed,bsdiff_patch,tuf_metadata,tuf_trusted_set,canonical_json,grubenv,ubootenv,updater_config,server_path,server_range}

# --- small images: random, text, zeros; v2 edits them so the delta uses every kind of op ---
python3 - "$work" <<'EOF'
import random, sys
w = sys.argv[1]
r = random.Random(7)
text = b"".join(b"line %05d: the quick brown fox jumps over the lazy dog\n" % i for i in range(400))
rand = bytes(r.getrandbits(8) for _ in range(1024))
v1 = rand + text[:4096] + bytes(4096) + rand[::-1]
v2 = bytearray(v1)
v2[100:140] = b"patched bytes inside the random region!!"
v2[1024 + 500:1024 + 500] = b"an insertion that shifts the text "
del v2[1024 + 3000:1024 + 3100]
v2 += bytes(1024) + text[5000:6000]
for i in range(8000, 8500, 7):
    v2[i] = (v2[i] + 1) & 0xff
open(f"{w}/v1.img", "wb").write(v1)
open(f"{w}/v2.img", "wb").write(bytes(v2))
open(f"{w}/kernel.img", "wb").write(text[:6000] + rand[:1000])
EOF

# --- bundles (signed with the fixture bundle key) ---
common=(--product fuzz-device --key "$keys/bundle.key" --chunk-size 4K --level 19)
"$sign" bundle "${common[@]}" --version 1.0.0 --image rootfs="$work/v1.img" --image kernel="$work/kernel.img" -o "$work/full.bundle" >/dev/null
"$sign" bundle "${common[@]}" --version 2.0.0 --image rootfs="$work/v2.img" --base rootfs="$work/v1.img" -o "$work/delta.bundle" >/dev/null
# delta.bundle has the newest delta format (one inline sparse LZMA2 patch on these images);
# delta-full.bundle keeps to format 2, whose digest-carrying zstd/bzip2 patches seed the rest.
"$sign" bundle "${common[@]}" --version 2.0.1 --image rootfs="$work/v2.img" --base rootfs="$work/v1.img" --with-full --image kernel="$work/kernel.img" --delta-format 2 -o "$work/delta-full.bundle" >/dev/null
for b in full delta delta-full; do cp "$work/$b.bundle" "$corpus/bundle_manifest/$b.bundle"; done

# Manifests alone, op lists and operation data out of the delta bundle (for the delta and
# bsdiff targets), hand-made op programs and patches.
python3 - "$work" "$corpus" <<'EOF'
import bz2, hashlib, json, lzma, struct, subprocess, sys
w, corpus = sys.argv[1], sys.argv[2]

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80); v >>= 7
    out.append(v)
    return bytes(out)

def read_varint(b, at):
    v = shift = 0
    while True:
        c = b[at]; at += 1
        v |= (c & 0x7f) << shift; shift += 7
        if c < 0x80:
            return v, at

def unzstd(b):
    return subprocess.run(["zstd", "-dc"], input=b, capture_output=True, check=True).stdout

patches = []
for name in ["full", "delta", "delta-full"]:
    bundle = open(f"{w}/{name}.bundle", "rb").read()
    mlen, slen = struct.unpack_from("<II", bundle, 12)
    manifest = bundle[24:24 + mlen]
    open(f"{corpus}/bundle_manifest/{name}.manifest.json", "wb").write(manifest)
    open(f"{corpus}/canonical_json/{name}.manifest.json", "wb").write(manifest)
    payload = bundle[24 + mlen + slen:]
    for image in json.loads(manifest)["images"]:
        p = image["payload"]
        if p["kind"] != "delta":
            continue
        ops = p["ops"]
        start = ops["payload_offset"]
        blob = payload[start:start + ops["stored_size"]]
        data = payload[start + ops["stored_size"]:start + ops["stored_size"] + ops["data_size"]]
        oplist = unzstd(blob)
        # Raw mode: flags 1, base_len (x4), target size, list, data.
        seed = bytes([1]) + struct.pack("<HI", min(p["base_size"] // 4, 0xffff), image["size"])
        seed += struct.pack("<H", len(oplist)) + oplist + data
        open(f"{corpus}/delta_signed/raw-{name}-{image['name']}", "wb").write(seed)
        # The same list given already compressed (flags 3).
        seed = bytes([3]) + struct.pack("<HI", min(p["base_size"] // 4, 0xffff), image["size"])
        seed += struct.pack("<H", len(blob)) + blob + data
        open(f"{corpus}/delta_signed/rawz-{name}-{image['name']}", "wb").write(seed)
        # Walk the list for the bsdiff patches.
        count, at = read_varint(oplist, 0)
        pos = 0
        kinds = []
        for _ in range(count):
            flagged = oplist[at]; at += 1
            # Delta format 4 flags: 0x80 inline data instead of a digest, 0x10 x86 filter
            # (an `origin` varint after the window).
            kind, inline, x86 = flagged & 0x0f, flagged & 0x80, flagged & 0x10
            length, at = read_varint(oplist, at)
            fields = []
            n = {0: 1, 1: 0, 2: 1, 3: 3, 4: 3, 5: 3, 6: 5, 7: 3, 8: 3}[kind] + (1 if x86 else 0)
            for _ in range(n):
                v, at = read_varint(oplist, at); fields.append(v)
            if kind >= 2:
                stored = fields[-1]
                if inline:
                    op_data = oplist[at:at + stored]; at += stored
                else:
                    at += 32
                    op_data = data[pos:pos + stored]; pos += stored
                if kind in (4, 5, 7, 8) and not x86:
                    if kind in (7, 8):  # raw LZMA2, 2 MiB dictionary (docs/bundle-format.md)
                        patch = lzma.decompress(op_data, format=lzma.FORMAT_RAW,
                                                filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 2 << 20}])
                    else:
                        patch = bz2.decompress(op_data) if kind == 5 else unzstd(op_data)
                    patches.append((length, fields[0], fields[1], patch, kind))
            kinds.append(flagged)
        print(f"{name}/{image['name']}: {count} ops, kinds {sorted(set(kinds))}")

# bsdiff_patch: flags, len, src, window, patch. Real patches are against another base, so
# their output differs; the fuzzer starts from their shape.
def bsdiff_seed(flags, length, src, window, patch):
    return bytes([flags]) + struct.pack("<III", length, src, window) + patch

def raw_patch(triples, data):
    out = varint(len(triples))
    for a, c, s in triples:
        out += varint(a) + varint(c) + varint((s << 1) ^ (s >> 63) if s >= 0 else ((-s) << 1) - 1)
    return out + data

def sparse_patch(triples, runs, extra):
    """The sparse layout (kind 8): control, run count, gaps, lengths, run bytes, extra."""
    out = raw_patch(triples, b"") + varint(len(runs))
    for gap, _ in runs:
        out += varint(gap)
    for _, data in runs:
        out += varint(len(data))
    return out + b"".join(data for _, data in runs) + extra

for i, (length, src, window, patch, kind) in enumerate(patches[:6]):
    if kind == 8:  # sparse layout: bits 6 and 5 (LZMA2, sparse)
        open(f"{corpus}/bsdiff_patch/real-sparse-{i}", "wb").write(bsdiff_seed(0x60, length, src, window, patch))
        continue
    open(f"{corpus}/bsdiff_patch/real-{i}", "wb").write(bsdiff_seed(0, length, src, window, patch))
    open(f"{corpus}/bsdiff_patch/real-bz2-{i}", "wb").write(bsdiff_seed(0x81, length, src, window, patch))
    open(f"{corpus}/bsdiff_patch/real-lzma2-{i}", "wb").write(bsdiff_seed(0x40, length, src, window, patch))
hand = {
    "identity": raw_patch([(2048, 0, 0)], bytes(2048)),
    "add-copy-seek": raw_patch([(100, 20, 50), (200, 0, -30), (0, 10, 0)], bytes(range(100)) + bytes(200) + b"x" * 30),
    "seek-only": raw_patch([(0, 0, 70000), (1000, 0, 0)], bytes(1000)),
    "cross-piece": raw_patch([(0, 0, 65530), (20, 0, 0)], bytes(20)),
    "extra-only": raw_patch([(0, 64, 0)], b"e" * 64),
    "empty-entries": raw_patch([(0, 0, 0)] * 65 + [(8, 0, 0)], bytes(8)),
}
for name, patch in hand.items():
    open(f"{corpus}/bsdiff_patch/{name}", "wb").write(bsdiff_seed(4 if name == "cross-piece" else 0, 0, 0, 200000, patch))
sparse_hand = {
    "sparse-runs": sparse_patch([(100, 20, 50), (200, 0, -30), (0, 10, 0)], [(3, b"\x01\x02"), (250, b"\xff")], b"x" * 30),
    "sparse-no-runs": sparse_patch([(4096, 0, 0)], [], b""),
}
for name, patch in sparse_hand.items():
    open(f"{corpus}/bsdiff_patch/{name}", "wb").write(bsdiff_seed(0x60, 0, 0, 200000, patch))
# Delta format 4: flag bit 3 filters the window and unfilters the output (x86), here over the
# sparse layout; the `len` field is the filter's origin.
open(f"{corpus}/bsdiff_patch/sparse-x86", "wb").write(
    bsdiff_seed(0x68, 4096, 0, 200000, sparse_hand["sparse-runs"]))

# delta_signed, structured: flags 0, base_len (x4), then ops.
def u32(v): return struct.pack("<I", v)
def blob(b): return struct.pack("<H", len(b)) + b
copy = lambda length, src, raw=False: bytes([0x80 if raw else 0]) + u32(length) + u32(src)
zero = lambda length, raw=False: bytes([0x81 if raw else 1]) + u32(length)
replace = lambda plain: bytes([2]) + blob(plain)
zref = lambda src, window, plain: bytes([3]) + u32(src) + u32(window) + blob(plain)
bsd = lambda src, window, patch, bz=False: bytes([5 if bz else 4]) + u32(src) + u32(window) + blob(patch)
bsd_sparse = lambda src, window, patch: bytes([7]) + u32(src) + u32(window) + blob(patch)
programs = {
    "copy-zero-replace": copy(4095, 10) + zero(999) + replace(b"hello, replaced world\n" * 20),
    "zstd-ref": zref(131072, 8192, b"ota fuzz base block: the quick brown fox jumps over the lazy dog 0123456789\n" * 30),
    "bsdiff": bsd(0, 4096, raw_patch([(4096, 0, 0)], bytes(4096))),
    "bsdiff-bz2": bsd(1000, 70000, raw_patch([(0, 0, 65000), (2000, 16, 0)], bytes(2000) + b"x" * 16), bz=True),
    "bsdiff-lzma2-sparse": bsd_sparse(1000, 70000, sparse_patch([(0, 0, 65000), (2000, 16, 0)], [(7, b"\x05\x06")], b"x" * 16)),
    "all-kinds": copy(100, 0) + zero(50) + replace(b"r" * 300) + zref(200000, 4096, b"z" * 1000)
        + bsd(5, 5000, raw_patch([(10, 5, 3), (20, 0, 0)], bytes(30) + b"12345")),
    "raw-fields": copy(1 << 31, 1 << 31, raw=True) + zero(0, raw=True),
    # Delta format 4: kind bit 5 = x86-filtered bsdiff, bit 6 = data inline in the op list.
    "bsdiff-x86-inline": bytes([4 | 0x20 | 0x40]) + u32(0) + u32(4096) + blob(raw_patch([(4096, 0, 0)], bytes(4096)))
        + bytes([2 | 0x40]) + blob(b"inline replace " * 8),
}
for name, prog in programs.items():
    open(f"{corpus}/delta_signed/{name}", "wb").write(bytes([0]) + struct.pack("<H", 65535) + prog)
    open(f"{corpus}/delta_signed/{name}-check", "wb").write(bytes([4]) + struct.pack("<H", 65535) + prog)
EOF

# --- a TUF repository signed with the fixture role keys ---
repo=$work/repo
"$sign" repo init --repo "$repo" --root-key "$keys/root.key" --targets-key "$keys/targets.key" \
  --snapshot-key "$keys/snapshot.key" --timestamp-key "$keys/timestamp.key" \
  --expires root=3650d --expires targets=3650d --expires snapshot=3650d --expires timestamp=3650d >/dev/null
"$sign" repo add --repo "$repo" --trusted "$keys/bundle.key.pub" --channel stable "$work/full.bundle" >/dev/null
"$sign" repo add --repo "$repo" --trusted "$keys/bundle.key.pub" --channel beta "$work/delta.bundle" >/dev/null
"$sign" repo publish --repo "$repo" --key "$keys/targets.key" --key "$keys/snapshot.key" --key "$keys/timestamp.key" >/dev/null
"$sign" rollout init --repo "$repo" --rollout-key "$keys/rollout.key.pub" --key "$keys/targets.key" \
  --key "$keys/snapshot.key" --key "$keys/timestamp.key" >/dev/null
mkdir -p "$fuzz/fixtures/tuf"
cp "$repo/metadata/1.root.json" "$fuzz/fixtures/tuf/root.json"
ls "$repo/metadata" > "$work/metadata.list"
for f in "$repo"/metadata/*.json; do
  cp "$f" "$corpus/tuf_metadata/$(basename "$f")"
  cp "$f" "$corpus/canonical_json/$(basename "$f")"
done

# Keys of every type python-tuf writes (ECDSA P-256 and RSA in PEM, ed25519 in hex) in a root.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ec.pem" 2>/dev/null
openssl pkey -in "$work/ec.pem" -pubout -out "$work/ec.pub" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl pkey -in "$work/rsa.pem" -pubout -out "$work/rsa.pub" 2>/dev/null

python3 - "$repo/metadata" "$work" "$corpus" <<'EOF'
import json, os, struct, sys
meta, w, corpus = sys.argv[1], sys.argv[2], sys.argv[3]
files = sorted(os.listdir(meta))
def load(name): return open(f"{meta}/{name}", "rb").read()
newest = {}
for f in files:
    parts = f.split(".")
    if len(parts) == 3 and parts[0].isdigit():
        v, role = int(parts[0]), parts[1]
        if v >= newest.get(role, (0, ""))[0]:
            newest[role] = (v, f)
ts = load("timestamp.json")
snap = load(newest["snapshot"][1]) if "snapshot" in newest else load("snapshot.json")
targets = load(newest["targets"][1])
rollout = load(newest["rollout"][1]) if "rollout" in newest else None
root = load("1.root.json")
signed = lambda b: json.dumps(json.loads(b)["signed"], separators=(",", ":")).encode()

# tuf_metadata: a root with ECDSA and RSA keys (unsigned), glob cases.
r = json.loads(root)
r["signed"]["keys"]["ec"] = {"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": open(f"{w}/ec.pub").read()}}
r["signed"]["keys"]["rsa"] = {"keytype": "rsa", "scheme": "rsassa-pss-sha256", "keyval": {"public": open(f"{w}/rsa.pub").read()}}
r["signed"]["roles"]["targets"]["keyids"] += ["ec", "rsa"]
open(f"{corpus}/tuf_metadata/root-ec-rsa.json", "w").write(json.dumps(r))
for i, case in enumerate(["targets/*.bundle\ntargets/acme-1.0.bundle", "[a-z]?[!0-9]*\nab_cd", "*/*\na/b", "rollout/[\nrollout/["]):
    open(f"{corpus}/tuf_metadata/glob-{i}", "w").write(case)

# tuf_trusted_set records: op (low 3 bits: 0 root, 1 timestamp, 2 snapshot, 3 targets,
# 4 delegated role for searches, 5 delegated update, 6 search, 7 freshness; 0x08 sign,
# 0x10 from cache, 0x20 link snapshot to a fresh timestamp, 0x40 wrong key), u16 length.
def rec(op, payload): return bytes([op]) + struct.pack("<H", len(payload)) + payload
SIGN, CACHE, LINK, WRONG = 0x08, 0x10, 0x20, 0x40
path = b"full.bundle"
seeds = {
    "raw-chain": rec(1, ts) + rec(2, snap) + rec(3, targets) + (rec(4, b"rollout\0" + rollout) if rollout else b"") + rec(6, path),
    "raw-root-first": rec(0, root) + rec(1, ts) + rec(2, snap) + rec(3, targets) + rec(6, path) + rec(7, b""),
    "signed-chain": rec(1 | SIGN, signed(ts)) + rec(2 | SIGN | LINK, signed(snap)) + rec(3 | SIGN, signed(targets))
        + (rec(4 | SIGN, b"rollout\0" + signed(rollout)) if rollout else b"") + rec(6, path),
    "cached": rec(1 | CACHE, ts) + rec(2 | CACHE, snap) + rec(3 | CACHE, targets) + rec(5, b"rollout\0targets\0" + (rollout or b"")),
    "wrong-key": rec(1 | SIGN | WRONG, signed(ts)) + rec(1, ts),
}
r2 = json.loads(root)["signed"]
r2["version"] = 2
seeds["root-rotation"] = rec(0 | SIGN, signed(json.dumps({"signed": r2}).encode())) + rec(1, ts) + rec(2, snap)
for name, seed in seeds.items():
    open(f"{corpus}/tuf_trusted_set/{name}", "wb").write(seed)

# canonical_json: unusual but valid JSON.
for i, text in enumerate([
    '{"b":1,"a":[true,false,null,-1,18446744073709551615,-9223372036854775808],"\\u00e9":"\\"\\\\\\u0001\\ud83d\\ude00"}',
    '[{"z":{"y":{"x":[]}}},"",{}]',
    '{"float":1.5,"exp":1e3}',
    '"caf\\u0065\\u0301"',
]):
    open(f"{corpus}/canonical_json/value-{i}.json", "w").write(text)
EOF

# --- GRUB environments (grub-editenv, the reference writer; ours writes the same bytes) ---
g=$work/grubenv
grub-editenv "$g" create
cp "$g" "$corpus/grubenv/empty"
grub-editenv "$g" set OTA_ORDER="B A" OTA_A_GOOD=1 OTA_B_GOOD=0 OTA_B_TRIES=1
cp "$g" "$corpus/grubenv/ota-state"
grub-editenv "$g" set 'odd=back\slash' 'nl=two
lines' 'empty='
cp "$g" "$corpus/grubenv/escapes"
python3 - "$corpus/grubenv" <<'EOF'
import sys
d = sys.argv[1]
sig = b"# GRUB Environment Block\n"
body = b"# WARNING: Do not edit this file by tools other than grub-editenv!!!\n"
full = sig + body + b"x=" + b"y" * (1024 - len(sig) - len(body) - 3) + b"\n"
open(f"{d}/full", "wb").write(full)
comments = sig + b"# a comment\nA=1\n#another\nA=2\n"
open(f"{d}/comments-dup", "wb").write(comments + b"#" * (1024 - len(comments)))
EOF

# --- U-Boot environments (mkenvimage), fw_env.config and default environment text ---
printf 'OTA_ORDER=A B\nOTA_A_GOOD=1\nbootcmd=run ota_boot\nbootdelay=2\n' > "$work/env.txt"
mkenvimage -s 0x1000 -o "$work/single.img" "$work/env.txt"
mkenvimage -r -s 0x1000 -o "$work/redund.img" "$work/env.txt"
python3 - "$work" "$corpus/ubootenv" "$root/qemu/u-boot-ota.env" <<'EOF'
import struct, sys, zlib
w, d, script = sys.argv[1], sys.argv[2], sys.argv[3]
single = open(f"{w}/single.img", "rb").read()
redund = open(f"{w}/redund.img", "rb").read()
# Mode byte: 0 single block, 1 redundant block, 2 two redundant copies (u16 size, then both),
# 3 fw_env.config text, 4 default environment text.
open(f"{d}/single", "wb").write(bytes([0]) + single)
open(f"{d}/redundant", "wb").write(bytes([1]) + redund)
data = redund[5:]
def copy(flags, data): return struct.pack("<I", zlib.crc32(data)) + bytes([flags]) + data
open(f"{d}/two-copies", "wb").write(bytes([2]) + struct.pack("<H", len(redund)) + copy(1, data) + copy(2, data))
open(f"{d}/two-copies-wrap", "wb").write(bytes([2]) + struct.pack("<H", len(redund)) + copy(255, data) + copy(0, data))
bad = bytearray(copy(7, data)); bad[10] ^= 1
open(f"{d}/two-copies-one-bad", "wb").write(bytes([2]) + struct.pack("<H", len(redund)) + copy(3, data) + bytes(bad))
open(f"{d}/blank", "wb").write(bytes([2]) + struct.pack("<H", 64) + b"\xff" * 128)
open(f"{d}/fw-env-config", "wb").write(bytes([3]) + b"# device offset size\n/dev/mmcblk0 0x3c0000 0x20000\n/dev/mmcblk0 0x3e0000 0x20000 0x200 16\n")
open(f"{d}/fw-env-config-octal", "wb").write(bytes([3]) + b"env.img 0100 1000\n")
open(f"{d}/default-env", "wb").write(bytes([4]) + open(script, "rb").read())
EOF

# --- updater.toml: the shipped examples, and the docs' ---
cp "$root/testdata/device/updater.toml" "$corpus/updater_config/testdata-device.toml"
cp "$root/qemu/guest/updater.toml" "$corpus/updater_config/qemu-guest.toml"
python3 - "$root/docs/updater.md" "$corpus/updater_config" <<'EOF'
import re, sys
doc, d = open(sys.argv[1]).read(), sys.argv[2]
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", doc, re.S)):
    open(f"{d}/docs-{i}.toml", "w").write(block)
EOF
cat > "$corpus/updater_config/relative-uboot.toml" <<'EOF'
product = "fuzz-device"
state_dir = "state"
device_id_file = "device-id"
[slots.A]
rootfs = "slot-a.rootfs"
[slots.B]
rootfs = "slot-b.rootfs"
[bootloader]
backend = "uboot"
fw_env_config = "fw_env.config"
default_env = "u-boot-initial-env"
[trust]
keys = ["vendor.pub"]
[repository]
url = "https://updates.example/"
root = "root.json"
ca_file = "ca.pem"
[daemon]
interval_secs = 0
max_backoff_secs = 10
EOF
cat > "$corpus/updater_config/relative-grub.toml" <<'EOF'
product = "fuzz-device"
state_dir = "./state/../state"
[slots.A]
rootfs = "slot-a.rootfs"
kernel = "slot-a.kernel"
[slots.B]
rootfs = "slot-b.rootfs"
kernel = "slot-b.kernel"
[bootloader]
backend = "grub"
grubenv = "grubenv"
[trust]
keys = ["vendor.pub", "./vendor.pub"]
threshold = 1
[health_check]
command = ["./health-check.sh", "--quick"]
EOF

# --- server: request targets and Range headers ---
i=0
for p in /timestamp.json /1.root.json /targets/fw.bundle /targets/sub/x.bin '/targets/fw%20bundle' \
  /latest.json /leak /leakdir/secret /.ota-repo/secret '/%2e%2e/secret' '/targets/..%2f..%2fsecret' \
  '/a?b=c' 'http://host/timestamp.json' '/%ff' '//etc/passwd' '/targets/'; do
  printf '%s' "$p" > "$corpus/server_path/path-$i"; i=$((i + 1))
done
i=0
for r in 'bytes=0-99' 'bytes=100-' 'bytes=-50' 'bytes=5000-6000' 'bytes=0-0,5-9' 'items=1-2' \
  'bytes= 10 - 20 ' 'bytes=18446744073709551615-' 'bytes=-0'; do
  printf '1000\nRange: %s\n' "$r" > "$corpus/server_range/range-$i"; i=$((i + 1))
done
printf '0\nRange: bytes=0-\n' > "$corpus/server_range/empty-file"
printf '4096\nRange: bytes=100-200\nIf-Range: "2a-0-1000"\n' > "$corpus/server_range/if-range-etag"
printf '4096\nRange: bytes=100-200\nIf-Range: Thu, 01 Jan 2026 00:00:00 GMT\nIf-None-Match: W/"x", *\n' > "$corpus/server_range/conditional"
printf '4096\nIf-Modified-Since: Thu, 01 Jan 2026 00:00:00 GMT\n' > "$corpus/server_range/ims"

du -sh "$corpus" "$fuzz/fixtures"
for d in "$corpus"/*/; do printf '%-18s %s files\n' "$(basename "$d")" "$(ls "$d" | wc -l)"; done
