#!/usr/bin/env python3
"""bench/fleet.py -- the moving parts of bench/fleet.sh (read that first).

    fleet.py image MARKER KIB SEED OUT     a firmware-like image (MARKER first: the health check)
    fleet.py proxy PORT TARGET_PORT LOG    a counting TCP proxy: one line per connection
    fleet.py drive OUT                     the fleet and the timeline (settings from the env)
    fleet.py analyse OUT DATE COMMAND RESULTS_MD RESULTS_CSV SVG

`drive` writes OUT/devices.json, OUT/control.jsonl (rollout commands and when the server made
them visible) and OUT/events.jsonl (every ota-update run); `analyse` reads those, the access
log and the proxy log. Standard library only.
"""
import hashlib
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

FULL = 10_000  # basis points
PRODUCT, CHANNEL, NEW, OLD = "acme-router", "stable", "2.0.0", "1.0.0"


# ----------------------------------------------------------------------------- shared helpers

def env_int(name):
    return int(os.environ[name])


def bucket(device_id, version=NEW):
    """ota_core::rollout::bucket: SHA-256 over length-prefixed parts, first 8 bytes."""
    h = hashlib.sha256()
    for part in ("ota-rollout-v1", device_id, PRODUCT, CHANNEL, version):
        data = part.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return int.from_bytes(h.digest()[:8], "big")


def eligible(place, share_bp):
    return place * FULL < min(share_bp, FULL) << 64


def bucket_bp(place):
    return min((place * FULL) >> 64, FULL)


def parse_waves(spec):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    waves = []
    for point in spec.split(","):
        offset, share = point.split("=")
        whole, _, frac = share.rstrip("%").partition(".")
        waves.append((int(offset[:-1]) * units[offset[-1]], int(whole) * 100 + int((frac + "00")[:2])))
    return waves


def share_at(waves, elapsed):
    """ota_core::rollout::share_at (elapsed in whole seconds)."""
    if elapsed < 0:
        return 0
    prev_off, prev_bp = 0, 0
    for off, bp in waves:
        if elapsed < off:
            return prev_bp + (bp - min(prev_bp, bp)) * (elapsed - prev_off) // max(off - prev_off, 1)
        prev_off, prev_bp = off, bp
    return prev_bp


def offered_share(entry, now):
    """RolloutEntry::share_now: the schedule's share while active, 0 while paused or pulled."""
    if entry is None or entry["state"] != "active":
        return 0
    return share_at(entry["waves"], int(now) - entry["start"])


def reached_share(entry, now):
    """The share the schedule has reached (frozen while paused, 0 once pulled): where the
    fleet should stand."""
    if entry is None or entry["state"] == "pulled":
        return 0
    if entry["state"] == "paused":
        return share_at(entry["waves"], entry["paused_at"] - entry["start"])
    return share_at(entry["waves"], int(now) - entry["start"])


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- image, proxy

def cmd_image(marker, kib, seed, out):
    """Like ota-test-support's `image`: the marker, then letters from a xorshift32 generator."""
    n = int(kib) * 1024
    x = (int(seed) * 2_654_435_761 | 1) & 0xFFFFFFFF
    data = bytearray(marker.encode())
    while len(data) < n:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        data.append(ord("a") + x % 11)
    Path(out).write_bytes(bytes(data[:n]))


def cmd_proxy(port, target_port, log):
    """Forwards each connection to the server; when both directions are closed, appends
    `TIME UP DOWN` (bytes from and to the client) to LOG."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port)))
    srv.listen(128)
    lock = threading.Lock()

    def pump(a, b, counts, key, done):
        n = 0
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                n += len(data)
                b.sendall(data)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        counts[key] = n
        if done.acquire(blocking=False):
            return  # the other direction writes the line
        with lock, open(log, "a") as f:
            f.write(f"{time.time():.3f} {counts['up']} {counts['down']}\n")

    while True:
        client, _ = srv.accept()
        upstream = socket.create_connection(("127.0.0.1", int(target_port)))
        counts, done = {}, threading.Semaphore(1)
        threading.Thread(target=pump, args=(client, upstream, counts, "up", done), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, counts, "down", done), daemon=True).start()


# ----------------------------------------------------------------------------- the fleet

class Device:
    def __init__(self, out, index, sampled):
        self.index = index
        self.id = f"bench-device-{index:04d}"
        self.dir = Path(out) / "devices" / self.id
        self.config = self.dir / "updater.toml"
        self.sampled = sampled
        self.bucket = bucket(self.id)

    def run(self, *args):
        t0 = time.time()
        p = subprocess.run([os.environ["BIN"] + "/ota-update", "--config", str(self.config), *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr, t0, time.time()

    def create(self, out, url):
        self.dir.mkdir(parents=True)
        image = (Path(out) / f"rootfs-{OLD}.img").read_bytes()
        slot = 2 * len(image)
        (self.dir / "slot-a.rootfs").write_bytes(image + bytes(slot - len(image)))
        (self.dir / "slot-b.rootfs").write_bytes(bytes(slot))
        (self.dir / "vendor.pub").write_bytes((Path(out) / "keys/bundle.key.pub").read_bytes())
        (self.dir / "root.json").write_bytes((Path(out) / "repo/metadata/1.root.json").read_bytes())
        self.config.write_text(f"""device_id = "{self.id}"
product = "{PRODUCT}"
state_dir = "state"
factory_version = "{OLD}"
reboot_command = ["true"]

[slots.A]
rootfs = "slot-a.rootfs"

[slots.B]
rootfs = "slot-b.rootfs"

[bootloader]
backend = "file"
path = "bootloader.json"

[trust]
keys = ["vendor.pub"]

[health_check]
command = ["sh", "-c", "head -c 4 \\"$OTA_SLOT_ROOTFS\\" | grep -q GOOD"]

[repository]
url = "{url}"
root = "root.json"
""")
        return self.power_cycle()

    def power_cycle(self):
        """The simulated bootloader picks a slot, `boot` commits a healthy one; returns the
        booted version."""
        for args in (("simulate-boot",), ("boot", "--no-reboot")):
            rc, _, err, _, _ = self.run(*args)
            if rc != 0:
                raise RuntimeError(f"{self.id}: ota-update {args}: rc {rc}: {err}")
        rc, out, err, _, _ = self.run("status", "--json")
        if rc != 0:
            raise RuntimeError(f"{self.id}: status: {err}")
        status = json.loads(out)
        slot = next(s for s in status["slots"] if s["name"] == status["booted"])
        return (slot.get("record") or {}).get("version")


class Recorder:
    def __init__(self, path):
        self.f = open(path, "w")
        self.lock = threading.Lock()

    def __call__(self, **event):
        with self.lock:
            self.f.write(json.dumps(event) + "\n")

    def close(self):
        self.f.close()


def poll(dev, record):
    """One daemon round: check; install when offered; power cycle after an install."""
    rc, out, err, t0, t1 = dev.run("check", "--json")
    event = {"dev": dev.index, "kind": "check", "t0": t0, "t1": t1, "rc": rc}
    update = None
    if rc == 0:
        report = json.loads(out)
        update = (report.get("update") or {}).get("version")
        rollout = report.get("rollout") or {}
        event.update(update=update, booted=report.get("booted_version"),
                     state=rollout.get("state"), release=rollout.get("version"),
                     eligible=rollout.get("eligible"), bucket_bp=rollout.get("bucket_bp"),
                     share_now_bp=rollout.get("share_now_bp"),
                     downgrade=bool((report.get("update") or {}).get("authorised_downgrade")))
    else:
        event["err"] = err.strip()[-300:]
    record(**event)
    if update is None:
        return
    rc, out, err, t0, t1 = dev.run("install", "--json")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    last = lines[-1] if lines else {}
    changed = rc == 0 and (last.get("event") != "up_to_date" or last.get("reboot_pending"))
    record(dev=dev.index, kind="install", t0=t0, t1=t1, rc=rc, offered=update, changed=bool(changed),
           err=err.strip()[-300:] if rc else None)
    if changed:
        version = dev.power_cycle()
        record(dev=dev.index, kind="boot", t1=time.time(), version=version)


def device_loop(dev, record, stop, interval, jitter):
    rnd = random.Random(dev.index)
    if stop.wait(rnd.uniform(0, interval + jitter)):
        return
    while not stop.is_set():
        try:
            poll(dev, record)
        except Exception as e:  # a bench keeps going; the analysis counts failed rounds
            record(dev=dev.index, kind="error", t1=time.time(), err=repr(e)[-300:])
        stop.wait(interval + rnd.uniform(0, jitter))


def newest(metadata, role):
    versions = [int(p.name.split(".")[0]) for p in metadata.glob(f"*.{role}.json")]
    return max(versions)


def rollout_entry(repo):
    """The newest signed rollout entry of 2.0.0 and the rollout metadata version."""
    metadata = Path(repo) / "metadata"
    version = newest(metadata, "rollout")
    signed = json.loads((metadata / f"{version}.rollout.json").read_text())["signed"]
    custom = signed["targets"][f"rollout/{PRODUCT}/{CHANNEL}/{NEW}"]["custom"]
    waves = [(w["offset_secs"], w["share_bp"]) for w in custom["waves"]]
    return version, {"state": custom["state"], "start": custom["start"], "waves": waves,
                     "paused_at": custom.get("paused_at")}


def served_rollout_version(repo):
    """The rollout metadata version that the served timestamp leads to."""
    metadata = Path(repo) / "metadata"
    try:
        ts = json.loads((metadata / "timestamp.json").read_text())["signed"]
        snap_version = ts["meta"]["snapshot.json"]["version"]
        snap = json.loads((metadata / f"{snap_version}.snapshot.json").read_text())["signed"]
        return snap["meta"]["rollout.json"]["version"]
    except (OSError, KeyError, ValueError):
        return None


def control(out, action, *extra):
    """`ota-sign rollout ACTION` with the rollout key only (the server's online keys publish
    it); returns when the served timestamp leads to the new rollout metadata."""
    repo = Path(out) / "repo"
    t_issue = time.time()
    subprocess.run([os.environ["BIN"] + "/ota-sign", "rollout", action, "--repo", str(repo),
                    "--product", PRODUCT, "--version", NEW, "--key", f"{out}/keys/rollout.key", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    t_done = time.time()
    version, entry = rollout_entry(repo)
    while (served_rollout_version(repo) or 0) < version:
        time.sleep(0.02)
    return {"action": action, "t_issue": t_issue, "t_done": t_done, "t_visible": time.time(),
            "rollout_version": version, "entry": entry}


def cmd_drive(out):
    fleet, sample = env_int("FLEET"), env_int("SAMPLE")
    interval, jitter = env_int("INTERVAL"), env_int("JITTER")
    url, proxy = os.environ["SERVER_URL"], f"http://127.0.0.1:{os.environ['PROXY_PORT']}"
    devices = [Device(out, i, i < sample) for i in range(fleet)]
    t = time.time()
    with ThreadPoolExecutor(env_int("WORKERS")) as pool:
        booted = list(pool.map(lambda d: d.create(out, proxy if d.sampled else url), devices))
    assert booted == [OLD] * fleet, booted
    print(f"fleet: {fleet} devices created and booted in {time.time() - t:.0f} s", file=sys.stderr)
    Path(out, "devices.json").write_text(json.dumps(
        [{"index": d.index, "id": d.id, "bucket": str(d.bucket), "sampled": d.sampled} for d in devices]))
    controls = [dict(action="gate", t_issue=0, t_done=0, t_visible=0,
                     rollout_version=rollout_entry(Path(out) / "repo")[0],
                     entry=rollout_entry(Path(out) / "repo")[1])]
    record, stop = Recorder(Path(out) / "events.jsonl"), threading.Event()
    w0 = time.time()
    threads = [threading.Thread(target=device_loop, args=(d, record, stop, interval, jitter)) for d in devices]
    for th in threads:
        th.start()
    time.sleep(max(0.0, w0 + env_int("WARMUP") - time.time()))
    controls.append(control(out, "start", "--waves", os.environ["WAVES"]))
    t0 = controls[-1]["entry"]["start"]
    print(f"rollout started at {t0} ({os.environ['WAVES']})", file=sys.stderr)
    for action, at in (("pause", "PAUSE_AT"), ("resume", "RESUME_AT"), ("pull", "PULL_AT")):
        time.sleep(max(0.0, t0 + env_int(at) - time.time()))
        controls.append(control(out, action))
        print(f"T0+{time.time() - t0:.0f} s: {action}", file=sys.stderr)
    time.sleep(max(0.0, t0 + env_int("END_AT") - time.time()))
    stop.set()
    for th in threads:
        th.join()
    t_end = time.time()
    record.close()
    with open(Path(out) / "control.jsonl", "w") as f:
        for c in controls:
            f.write(json.dumps(c) + "\n")
    settings = {k: os.environ[k] for k in ("FLEET", "INTERVAL", "JITTER", "SAMPLE", "WARMUP", "WAVES",
                                           "PAUSE_AT", "RESUME_AT", "PULL_AT", "END_AT", "IMAGE_KIB")}
    Path(out, "run.json").write_text(json.dumps({"w0": w0, "t0": t0, "t_end": t_end, "settings": settings}))

# ----------------------------------------------------------------------------- analysis

class Run:
    """What `drive` recorded, and the schedule as functions of time."""

    def __init__(self, out):
        self.out = Path(out)
        meta = json.loads((self.out / "run.json").read_text())
        self.w0, self.t0, self.t_end = meta["w0"], meta["t0"], meta["t_end"]
        self.settings = {k: (v if k == "WAVES" else int(v)) for k, v in meta["settings"].items()}
        self.devices = json.loads((self.out / "devices.json").read_text())
        for d in self.devices:
            d["bucket"] = int(d["bucket"])
        self.n = len(self.devices)
        self.controls = read_jsonl(self.out / "control.jsonl")
        self.control = {c["action"]: c for c in self.controls}
        events = read_jsonl(self.out / "events.jsonl")
        self.checks = sorted((e for e in events if e["kind"] == "check"), key=lambda e: e["t0"])
        self.installs = [e for e in events if e["kind"] == "install"]
        self.boots = sorted((e for e in events if e["kind"] == "boot"), key=lambda e: e["t1"])
        self.failures = [e for e in events if e["kind"] == "error" or e.get("rc")]
        # What a device polling at t is offered, on a 0.1 s grid (state as served at t).
        self.grid = [self.w0 + i / 10 for i in range(int((self.t_end - self.w0) * 10) + 1)]
        self.offered_grid = [self.offered(t) for t in self.grid]
        periods = []
        for d in self.devices:
            t = [c["t0"] for c in self.checks if c["dev"] == d["index"]]
            periods += [b - a for a, b in zip(t, t[1:])]
        self.period = statistics.mean(periods)

    def entry_at(self, t, key):
        entry = None
        for c in self.controls:
            if c[key] <= t:
                entry = c["entry"]
        return entry

    def offered(self, t):
        return offered_share(self.entry_at(t, "t_visible"), t)

    def reached(self, t):
        return reached_share(self.entry_at(t, "t_done"), t)

    def offered_between(self, a, b):
        lo = max(0, int((a - self.w0) * 10))
        hi = min(len(self.grid) - 1, int((b - self.w0) * 10) + 1)
        return self.offered_grid[lo:hi + 1] or [0]

    def last_check_before(self, dev, t):
        found = None
        for c in self.checks:
            if c["t0"] > t:
                break
            if c["dev"] == dev:
                found = c
        return found

    def rel(self, t):
        return t - self.t0


def timeline(run):
    """One row per second from the warm-up to the end: schedule, this fleet's eligible share
    (its buckets under the schedule), and the measured share on the new release."""
    rows, boots, version = [], list(run.boots), {d["index"]: OLD for d in run.devices}
    for t in range(-run.settings["WARMUP"], int(run.t_end - run.t0) + 1):
        now = run.t0 + t
        while boots and boots[0]["t1"] <= now:
            b = boots.pop(0)
            version[b["dev"]] = b["version"]
        reached = run.reached(now)
        rows.append({
            "t_s": t,
            "schedule_pct": reached / 100,
            "eligible_pct": 100 * sum(eligible(d["bucket"], reached) for d in run.devices) / run.n,
            "on_new_pct": 100 * sum(v == NEW for v in version.values()) / run.n,
            "offered_pct": run.offered(now) / 100,
        })
    return rows


def schedule_checks(run):
    """Installs of the new release outside the schedule, and the devices' own decisions
    compared with this script's arithmetic."""
    buckets = {d["index"]: d["bucket"] for d in run.devices}
    outside, installs_new = [], 0
    for inst in run.installs:
        if inst["offered"] != NEW or not inst["changed"]:
            continue
        installs_new += 1
        check = run.last_check_before(inst["dev"], inst["t0"])
        shares = run.offered_between(check["t0"] - 1, check["t1"] + 1)
        if not any(eligible(buckets[inst["dev"]], s) for s in shares):
            outside.append({"dev": inst["dev"], "t_s": round(run.rel(inst["t0"]), 1)})
    bucket_mismatch = share_mismatch = decisions = 0
    for c in run.checks:
        if c.get("release") != NEW or c.get("bucket_bp") is None or c.get("booted") != OLD:
            continue
        decisions += 1
        bucket_mismatch += c["bucket_bp"] != bucket_bp(buckets[c["dev"]])
        share_mismatch += c["share_now_bp"] not in set(run.offered_between(c["t0"] - 1, c["t1"] + 1))
    return {"installs_new": installs_new, "outside": outside, "decisions": decisions,
            "bucket_mismatch": bucket_mismatch, "share_mismatch": share_mismatch}


def offered_delays(run):
    """For each device that installed the new release: how long it had been offered it (time
    eligible, pauses excluded) when its install started, in seconds."""
    delays, never = [], 0
    first_install = {}
    for inst in sorted(run.installs, key=lambda e: e["t0"]):
        if inst["offered"] == NEW and inst["changed"]:
            first_install.setdefault(inst["dev"], inst["t0"])
    for d in run.devices:
        end = first_install.get(d["index"], run.control["pull"]["t_done"])
        offered = sum(0.1 for t, s in zip(run.grid, run.offered_grid)
                      if t < end and eligible(d["bucket"], s))
        if d["index"] in first_install:
            delays.append(offered)
        elif offered > 0:
            never += 1
    return delays, never


def reactions(run):
    """Seconds from each rollout command to every device having seen it (a check that reports
    the new state), and for the pull, to every device running the new release being back."""
    out = {}
    for action, state in (("pause", "paused"), ("resume", "active"), ("pull", "pulled")):
        c = run.control[action]
        seen = {}
        for chk in run.checks:
            if chk["t0"] >= c["t_done"] and chk.get("state") == state:
                seen.setdefault(chk["dev"], chk["t1"] - c["t_done"])
        times = sorted(seen.values())
        out[action] = {"publish_s": c["t_visible"] - c["t_done"], "devices": len(times),
                       "first_s": times[0] if times else None,
                       "median_s": statistics.median(times) if times else None,
                       "last_s": times[-1] if times else None}
    pull = run.control["pull"]["t_done"]
    version, back = {d["index"]: OLD for d in run.devices}, []
    for b in run.boots:
        if b["t1"] <= pull:
            version[b["dev"]] = b["version"]
    on_new = {i for i, v in version.items() if v == NEW}
    for b in run.boots:
        if b["t1"] > pull and b["dev"] in on_new and b["version"] == OLD:
            back.append(b["t1"] - pull)
            on_new.discard(b["dev"])
    out["pull"].update(on_new_at_pull=len(back) + len(on_new), back_last_s=max(back, default=None),
                       back_median_s=statistics.median(back) if back else None,
                       still_on_new=len(on_new))
    pause, resume = run.control["pause"], run.control["resume"]
    out["pause"]["installs_after"] = sum(
        1 for i in run.installs
        if i["offered"] == NEW and i["changed"] and pause["t_done"] <= i["t0"] < resume["t_done"])
    return out



def access_log(path):
    """(time, target, status, body bytes, user agent) of each line of ota-server's log."""
    pattern = re.compile(r'^\S+ \S+ \S+ \[([^\]]+)\] "\S+ (\S+) [^"]*" (\d{3}) (\d+|-)(?: "[^"]*" "([^"]*)")?')
    lines = []
    with open(path, errors="replace") as f:
        for line in f:
            m = pattern.match(line)
            if m:
                t = datetime.strptime(m[1], "%d/%b/%Y:%H:%M:%S %z").timestamp()
                lines.append((t, m[2], int(m[3]), 0 if m[4] == "-" else int(m[4]), m[5] or ""))
    return lines


def kind_of(target):
    name = target.rsplit("/", 1)[-1]
    if target.startswith("/targets/"):
        return "bundle"
    for kind in ("root", "timestamp", "snapshot", "targets", "rollout"):
        if name.endswith(f"{kind}.json"):
            return kind
    return "other"


def traffic(run):
    """Requests and bytes: per no-update poll in the warm-up (access log for the whole fleet,
    wire bytes through the proxy for the sampled devices), and over the whole run."""
    lines = [l for l in access_log(run.out / "access.log") if l[4].startswith("ota-update/")]
    # The warm-up after every device's first poll, before the rollout starts: no-update polls.
    a = math.ceil(run.w0 + run.settings["INTERVAL"] + run.settings["JITTER"] + 1)
    b = math.floor(run.control["start"]["t_issue"])
    polls = [c for c in run.checks if a <= c["t0"] < b]
    in_window = [l for l in lines if a <= l[0] < b]
    sampled = {d["index"] for d in run.devices if d["sampled"]}
    proxy = [tuple(map(float, l.split())) for l in open(run.out / "proxy.log")]
    wire = [(up, down) for t, up, down in proxy if a <= t < b]
    first = sorted(proxy)[:len(sampled)]
    by_kind = {}
    for _, target, status, size, _ in lines:
        k = by_kind.setdefault((kind_of(target), status), [0, 0])
        k[0] += 1
        k[1] += size
    network_runs = len(run.checks) + len(run.installs)
    return {
        "window_s": b - a,
        "polls": len(polls), "requests": len(in_window),
        "requests_per_poll": len(in_window) / max(len(polls), 1),
        "body_bytes_per_poll": sum(l[3] for l in in_window) / max(len(polls), 1),
        "sampled_polls": sum(1 for c in polls if c["dev"] in sampled),
        "connections": len(wire),
        "wire_up": statistics.mean(w[0] for w in wire) if wire else None,
        "wire_down": statistics.mean(w[1] for w in wire) if wire else None,
        "wire_max": max((w[0] + w[1] for w in wire), default=None),
        "first_up": statistics.mean(f[1] for f in first), "first_down": statistics.mean(f[2] for f in first),
        "total_requests": len(lines), "total_body": sum(l[3] for l in lines),
        "checks": len(run.checks), "installs": len(run.installs), "network_runs": network_runs,
        "by_kind": {f"{k} {st}": v for (k, st), v in sorted(by_kind.items())},
    }


def repo_sizes(run):
    metadata = run.out / "repo" / "metadata"
    sizes = {"timestamp.json": (metadata / "timestamp.json").stat().st_size}
    for role in ("root", "snapshot", "targets", "rollout"):
        sizes[f"N.{role}.json"] = (metadata / f"{newest(metadata, role)}.{role}.json").stat().st_size
    for v in (OLD, NEW):
        sizes[f"bundle {v}"] = (run.out / f"acme-router-{v}.bundle").stat().st_size
    return sizes



def svg_plot(run, rows, path, date):
    """Schedule, this fleet's eligible share and the measured share on the new release over
    time, with pause and pull marked; plain SVG."""
    w, h, left, right, top, bottom = 1000, 440, 60, 240, 40, 50
    t_min, t_max = rows[0]["t_s"], rows[-1]["t_s"]
    x = lambda t: left + (t - t_min) * (w - left - right) / (t_max - t_min)  # noqa: E731
    y = lambda pct: top + (100 - pct) * (h - top - bottom) / 100  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14">Rollout of {NEW} to {run.n} simulated devices: schedule vs measured '
           f'(bench/fleet.sh, {date})</text>']
    p, r = run.control["pause"], run.control["resume"]
    out.append(f'<rect x="{x(run.rel(p["t_done"])):.1f}" y="{top}" width="{x(run.rel(r["t_done"])) - x(run.rel(p["t_done"])):.1f}" '
               f'height="{h - top - bottom}" fill="#fdebd0"/>')
    for pct in range(0, 101, 25):
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(pct):.1f}" y2="{y(pct):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y(pct) + 4:.1f}" text-anchor="end">{pct}%</text>')
    for t in range(math.ceil(t_min / 30) * 30, t_max + 1, 30):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{h - bottom}" y2="{h - bottom + 5}" stroke="black"/>')
        out.append(f'<text x="{x(t):.1f}" y="{h - bottom + 18}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 10}" text-anchor="middle">seconds after rollout start '
               f'(poll every {run.settings["INTERVAL"]} s + 0..{run.settings["JITTER"]} s jitter)</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}" fill="none" stroke="black"/>')
    for action in ("start", "pause", "resume", "pull"):
        t = run.rel(run.control[action]["t_done"])
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{h - bottom}" stroke="#c0392b" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x(t) + 3:.1f}" y="{top + 14}" fill="#c0392b">{action}</text>')
    series = (("schedule_pct", "#2e86c1", 'stroke-dasharray="6 4" stroke-width="2"', "schedule (share reached)"),
              ("eligible_pct", "#888", 'stroke-width="1"', "eligible devices (buckets)"),
              ("on_new_pct", "#1e8449", 'stroke-width="2.5"', f"measured: devices on {NEW}"))
    for i, (key, colour, style, label) in enumerate(series):
        points = " ".join(f"{x(row['t_s']):.1f},{y(row[key]):.1f}" for row in rows)
        out.append(f'<polyline fill="none" stroke="{colour}" {style} points="{points}"/>')
        ly = top + 20 + 22 * i
        out.append(f'<line x1="{w - right + 12}" x2="{w - right + 40}" y1="{ly}" y2="{ly}" stroke="{colour}" {style}/>')
        out.append(f'<text x="{w - right + 46}" y="{ly + 4}">{label}</text>')
    ly = top + 20 + 22 * len(series)
    out.append(f'<rect x="{w - right + 12}" y="{ly - 6}" width="28" height="12" fill="#fdebd0"/>')
    out.append(f'<text x="{w - right + 46}" y="{ly + 4}">paused</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def fmt(seconds, period):
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s ({seconds / period:.2f} poll intervals)"


def cost_model(t, sizes):
    """1 M devices polling every 6 h: the arithmetic behind docs/fleet.md's cost model."""
    devices, polls_per_day = 1_000_000, 4
    if t["wire_up"] is None:
        raise SystemExit("no no-update poll went through the proxy: make WARMUP longer than INTERVAL + JITTER")
    wire = t["wire_up"] + t["wire_down"]
    head = 250  # a response head with validators and cache headers, about
    change = sizes["timestamp.json"] + sizes["N.snapshot.json"] + sizes["N.rollout.json"] + 3 * head
    release = change + sizes["N.targets.json"] + head
    return {
        "polls_per_s": devices * polls_per_day / 86_400,
        "requests_per_s": devices * polls_per_day / 86_400 * t["requests_per_poll"],
        "no_update_gb_day": devices * polls_per_day * wire / 1e9,
        "no_update_egress_gb_day": devices * polls_per_day * t["wire_down"] / 1e9,
        "rollout_change_gb": devices * change / 1e9,
        "release_metadata_gb": devices * release / 1e9,
        "release_full_tb": devices * 56_869_570 / 1e12,
        "release_delta_tb": devices * 3_265_189 / 1e12,
    }



def results_md(run, rows, sched, delays, never, react, t, sizes, cost, date, command, report):
    per = run.period
    q = sorted(delays)
    pct = lambda p: q[min(len(q) - 1, int(p * len(q)))] if q else None  # noqa: E731
    lines = [
        f"# Fleet rollout benchmark ({date})", "",
        "`bench/fleet.sh` on the 2-core development machine (shared): release binaries, ota-server with the",
        "online snapshot/timestamp keys (`--resign-interval 1`) and an access log on loopback, simulated",
        "devices (file bootloader, own state directory and `device_id`) driven by `bench/fleet.py` like the",
        "daemon: `ota-update check --json` every INTERVAL s + 0..JITTER s, `install` when offered, then",
        "`simulate-boot` + `boot` (commit). Rollout commands signed with the rollout key only; the server's",
        "online keys publish them. Times are seconds after the rollout start (T0). Bytes are HTTP bytes",
        "(heads and bodies) over plain HTTP on loopback: TCP/IP and TLS are not included.", "",
        "```sh", command, "```", "",
        f"Settings: {run.n} devices, poll every {run.settings['INTERVAL']} s + 0..{run.settings['JITTER']} s "
        f"(measured mean interval {per:.2f} s), waves `{run.settings['WAVES']}`, pause at T0+{run.settings['PAUSE_AT']} s, "
        f"resume at T0+{run.settings['RESUME_AT']} s, pull at T0+{run.settings['PULL_AT']} s, end at T0+{run.settings['END_AT']} s; "
        f"{run.settings['IMAGE_KIB']} KiB images ({sizes['bundle ' + NEW]} B bundle). Plot: "
        "[docs/fleet-rollout.svg](../docs/fleet-rollout.svg); every second: "
        f"[results-fleet-{date}.csv](results-fleet-{date}.csv).", "",
        "## Results", "",
        "| measure | value |", "|---|---|",
        f"| polls (checks) / installs / power cycles | {len(run.checks)} / {len(run.installs)} / {len(run.boots)} |",
        f"| failed ota-update runs | {len(run.failures)} |",
        f"| installs of {NEW} | {sched['installs_new']} |",
        f"| **installs outside the schedule** (bucket above the share served at the check, ±1 s) | **{len(sched['outside'])}** |",
        f"| device decisions checked against this script's bucket and share arithmetic | {sched['decisions']}: "
        f"{sched['bucket_mismatch']} bucket and {sched['share_mismatch']} share disagreements |",
        f"| time offered before installing, median / p90 / max | {fmt(pct(0.5), per)} / {fmt(pct(0.9), per)} / {fmt(q[-1] if q else None, per)} |",
        f"| devices offered {NEW} that never installed it | {never} |",
    ]
    for action in ("pause", "resume", "pull"):
        r = react[action]
        lines.append(f"| {action}: command to served timestamp (server re-signing) | {r['publish_s']:.2f} s |")
        lines.append(f"| {action}: command to the last device seeing it ({r['devices']} devices) | {fmt(r['last_s'], per)} "
                     f"(median {fmt(r['median_s'], per)}) |")
    lines += [
        f"| pause: installs of {NEW} started while paused | {react['pause']['installs_after']} |",
        f"| pull: devices on {NEW} at the pull / back on {OLD} at the end | {react['pull']['on_new_at_pull']} / "
        f"{react['pull']['on_new_at_pull'] - react['pull']['still_on_new']} |",
        f"| pull: command to the last device booted back on {OLD} | {fmt(react['pull']['back_last_s'], per)} "
        f"(median {fmt(react['pull']['back_median_s'], per)}) |",
        f"| no-update poll, whole fleet (access log, warm-up, {t['polls']} polls): requests | {t['requests_per_poll']:.2f} |",
        f"| no-update poll: response body bytes | {t['body_bytes_per_poll']:.1f} B |",
        f"| **no-update poll on the wire** (proxy, {t['connections']} connections of the {run.settings['SAMPLE']} sampled devices, "
        f"{t['sampled_polls']} polls) | {t['wire_up']:.0f} sent + {t['wire_down']:.0f} received = **{t['wire_up'] + t['wire_down']:.0f} B** "
        f"(max {t['wire_max']:.0f} B) |",
        f"| first check of a fresh device on the wire | {t['first_up']:.0f} + {t['first_down']:.0f} = {t['first_up'] + t['first_down']:.0f} B |",
        f"| whole run, per device: requests / body bytes | {t['total_requests'] / run.n:.1f} / {t['total_body'] / run.n:.0f} B |",
        f"| whole run, per poll: requests / body bytes | {t['total_requests'] / len(run.checks):.2f} / "
        f"{t['total_body'] / len(run.checks):.0f} B |", "",
        "Requests over the whole run by file and status (ota-update user agent):", "",
        "| file, status | requests | body bytes |", "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v[0]} | {v[1]} |" for k, v in t["by_kind"].items()]
    lines += ["", "Repository files at the end (bytes): " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ".", "",
              "Share of the fleet over time (every 15 s; % of devices):", "",
              "| T0+s | schedule | eligible devices | measured on " + NEW + " |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['t_s']} | {r['schedule_pct']:.1f} | {r['eligible_pct']:.1f} | {r['on_new_pct']:.1f} |"
              for r in rows if r["t_s"] % 15 == 0]
    lines += ["", "Cost model inputs for 1 M devices polling every 6 h (docs/fleet.md): "
              f"{cost['polls_per_s']:.1f} polls/s, {cost['requests_per_s']:.1f} requests/s, "
              f"{cost['no_update_gb_day']:.2f} GB/day of no-update polls on the wire "
              f"({cost['no_update_egress_gb_day']:.2f} GB/day received by devices), "
              f"{cost['rollout_change_gb']:.2f} GB per rollout command, {cost['release_metadata_gb']:.2f} GB of metadata per release.",
              "", "`ota-sign fleet report --bucket 1m` on the run's access log (all devices share 127.0.0.1: the device",
              "column shows the lower bound, one per release and agent):", "", "```", report.rstrip(), "```", ""]
    if sched["outside"]:
        lines += ["Installs outside the schedule: " + json.dumps(sched["outside"]), ""]
    return "\n".join(lines)


def cmd_analyse(out, date, command, md_path, csv_path, svg_path):
    run = Run(out)
    rows = timeline(run)
    sched = schedule_checks(run)
    delays, never = offered_delays(run)
    react = reactions(run)
    t = traffic(run)
    sizes = repo_sizes(run)
    cost = cost_model(t, sizes)
    report = (run.out / "fleet-report.txt").read_text()
    with open(csv_path, "w") as f:
        f.write("t_s,schedule_pct,eligible_pct,on_new_pct,offered_pct\n")
        for r in rows:
            f.write(f"{r['t_s']},{r['schedule_pct']:.2f},{r['eligible_pct']:.2f},{r['on_new_pct']:.2f},{r['offered_pct']:.2f}\n")
    svg_plot(run, rows, svg_path, date)
    md = results_md(run, rows, sched, delays, never, react, t, sizes, cost, date, command, report)
    Path(md_path).write_text(md)
    print(md[md.index("## Results"):md.index("Requests over the whole run")])
    print(json.dumps({"cost_model": cost}, indent=1))
    print(f"wrote {md_path}, {csv_path}, {svg_path}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"image": cmd_image, "proxy": cmd_proxy, "drive": cmd_drive, "analyse": cmd_analyse}[command](*args)
