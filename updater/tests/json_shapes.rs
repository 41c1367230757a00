//! One machine interface: every command of `ota-sign`, `ota-update` and `ota-server` takes
//! `--json`, and what it prints has one documented shape, a JSON Schema in `docs/json/`
//! (`BINARY.COMMAND.schema.json`; `error.schema.json` for the error object every failing
//! `--json` command prints). The scenario below runs every command for real (keys, bundles, a
//! TUF repository with a rollout, a served repository, a device that checks, installs, boots,
//! commits, rolls back, holds) and checks each output by parsing it against its schema — not by
//! comparing strings. Commands whose output is a stream of JSON lines (`install` from the
//! repository, `daemon`, `serve`) mark their schema `"x-ota-output": "lines"`: every line must
//! match. A command listed by `--help` without a schema fails the test.
//!
//! `OTA_BLESS_JSON_SCHEMAS=1` writes a draft schema (types and required keys of the output
//! seen) for commands that have none; it never overwrites one.

#![allow(clippy::unwrap_used)]

use ota_test_support::{bin, image, Repo, SimDevice};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json")
}

/// Checks `value` against the subset of JSON Schema the files use: `type` (a name or a list),
/// `properties`, `required`, `additionalProperties` (false or a schema for the other keys),
/// `items`, `enum`, `anyOf`, `minimum`.
fn check(value: &Value, schema: &Value, at: &str) -> Result<(), String> {
    if let Some(options) = schema["anyOf"].as_array() {
        if !options.iter().any(|s| check(value, s, at).is_ok()) {
            return Err(format!("{at}: {value} matches none of anyOf"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let type_name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty()
        && !types
            .iter()
            .any(|t| *t == type_name || (*t == "number" && type_name == "integer"))
    {
        return Err(format!("{at}: {type_name} where the schema says {types:?}"));
    }
    if let Value::Object(object) = value {
        for key in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(key) {
                return Err(format!("{at}: no required key {key:?} in {value}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => check(item, sub, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{at}: key {key:?} is not in the schema"))
                }
                None if schema["additionalProperties"].is_object() => check(
                    item,
                    &schema["additionalProperties"],
                    &format!("{at}.{key}"),
                )?,
                None => {}
            }
        }
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} is below the minimum {min}"));
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item, item_schema, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// A draft schema for `value`: its types, every key required, nulls left untyped.
fn draft(value: &Value) -> Value {
    match value {
        Value::Null => json!({}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "integer"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(items) => match items.first() {
            Some(first) => json!({"type": "array", "items": draft(first)}),
            None => json!({"type": "array"}),
        },
        Value::Object(object) => {
            let properties: Map<String, Value> =
                object.iter().map(|(k, v)| (k.clone(), draft(v))).collect();
            json!({"type": "object", "required": object.keys().collect::<Vec<_>>(), "properties": properties})
        }
    }
}

/// A draft for a stream of event lines: one alternative per `event` value seen.
fn draft_events(values: &[Value]) -> Value {
    let mut by_event: BTreeMap<String, Value> = BTreeMap::new();
    for value in values {
        let event = value["event"].as_str().unwrap_or("").to_owned();
        by_event.entry(event.clone()).or_insert_with(|| {
            let mut d = draft(value);
            d["properties"]["event"] = json!({"enum": [event]});
            d
        });
    }
    json!({"type": "object", "required": ["event"], "anyOf": by_event.into_values().collect::<Vec<_>>()})
}

/// Outputs seen, per command (`ota-sign.repo-add`), each a list of JSON values.
#[derive(Default)]
struct Seen(BTreeMap<String, Vec<Value>>);

impl Seen {
    fn record(&mut self, command: &str, stdout: &str) {
        // One value (pretty-printed ones span lines), else one value per line.
        let values: Vec<Value> = match serde_json::from_str(stdout) {
            Ok(value) => vec![value],
            Err(_) => stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {l}"))
                })
                .collect(),
        };
        assert!(!values.is_empty(), "{command} printed nothing");
        self.0.entry(command.to_owned()).or_default().extend(values);
    }
}

fn key_of(binary: &str, args: &[&str]) -> String {
    let words: Vec<&str> = args
        .iter()
        .copied()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let command = match (binary, words.as_slice()) {
        ("ota-sign", [group @ ("repo" | "rollout" | "fleet" | "key"), sub, ..]) => {
            format!("{group}-{sub}")
        }
        ("ota-update", ["tuf", ..]) => {
            let sub = args
                .iter()
                .find(|a| ["init", "refresh", "download"].contains(a))
                .unwrap();
            format!("tuf-{sub}")
        }
        (_, [command, ..]) => command.to_string(),
        _ => panic!("no command in {args:?}"),
    };
    format!("{binary}.{command}")
}

struct Run {
    seen: Seen,
    dir: PathBuf,
}

impl Run {
    fn sign(&mut self, args: &[&str]) -> Value {
        let out = Command::new(bin("ota-sign"))
            .args(args)
            .arg("--json")
            .current_dir(&self.dir)
            .env_remove("CI")
            .env_remove("OTA_SIGNING_KEY")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        self.finish("ota-sign", args, out)
    }

    fn device(&mut self, device: &SimDevice, args: &[&str]) -> Value {
        let out = Command::new(bin("ota-update"))
            .arg("--config")
            .arg(device.config())
            .args(args)
            .arg("--json")
            .env_remove("CI")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        self.finish("ota-update", args, out)
    }

    fn finish(&mut self, binary: &str, args: &[&str], out: std::process::Output) -> Value {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{binary} {args:?}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = key_of(binary, args);
        self.seen.record(&key, &stdout);
        self.seen.0[&key].last().unwrap().clone()
    }

    /// A failing command: its `{"error": ...}` line.
    fn fails(&mut self, binary: &str, args: &[&str]) {
        let out = Command::new(bin(binary))
            .args(args)
            .arg("--json")
            .current_dir(&self.dir)
            .env_remove("CI")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{binary} {args:?} should fail");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        self.seen
            .record("error", stdout.lines().last().unwrap_or(""));
        let error: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(
            error["error"]["exit_code"],
            out.status.code().unwrap(),
            "{error}"
        );
    }
}

/// `ota-server serve --json`: its JSON log lines on stderr; returns the server and its URL.
fn serve_json(run: &mut Run, repo: &str) -> (std::process::Child, String) {
    let mut child = Command::new(bin("ota-server"))
        .args([
            "serve",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
            "--repo",
            repo,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    run.seen.record("ota-server.serve", &line);
    let url = serde_json::from_str::<Value>(&line).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    (child, url)
}

/// Every command of the three binaries, from their `--help` (hidden ones are not listed).
fn commands() -> Vec<String> {
    let list = |binary: &str, args: &[&str]| -> Vec<String> {
        let help = Command::new(bin(binary))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&help.stdout).into_owned();
        text.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .filter(|c| c != "help")
            .collect()
    };
    let mut all = Vec::new();
    for binary in ["ota-sign", "ota-update", "ota-server"] {
        for command in list(binary, &[]) {
            let subs = list(binary, &[&command]);
            if subs.is_empty() {
                all.push(format!("{binary}.{command}"));
            }
            all.extend(subs.into_iter().map(|s| format!("{binary}.{command}-{s}")));
        }
    }
    all
}

#[test]
fn every_command_prints_json_of_its_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = Run {
        seen: Seen::default(),
        dir: tmp.path().to_owned(),
    };
    scenario(&mut run, tmp.path());

    let bless = std::env::var_os("OTA_BLESS_JSON_SCHEMAS").is_some();
    let mut missing = Vec::new();
    for command in commands().into_iter().chain(["error".to_owned()]) {
        let path = schema_dir().join(format!("{command}.schema.json"));
        let Some(values) = run.seen.0.get(&command) else {
            missing.push(format!("{command}: not run by the scenario"));
            continue;
        };
        if !path.exists() {
            if bless {
                let lines = values.len() > 1 || values[0].get("event").is_some();
                let mut schema = if lines {
                    draft_events(values)
                } else {
                    draft(&values[0])
                };
                schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
                schema["title"] = json!(command.replacen('.', " ", 1));
                if lines {
                    schema["x-ota-output"] = json!("lines");
                }
                fs::write(&path, serde_json::to_string_pretty(&schema).unwrap() + "\n").unwrap();
            } else {
                missing.push(format!("{command}: no schema {}", path.display()));
            }
            continue;
        }
        let schema: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        for value in values {
            if let Err(e) = check(value, &schema, &command) {
                panic!("{command} does not match {}: {e}", path.display());
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

fn scenario(run: &mut Run, dir: &Path) {
    // Keys, a bundle, the repository (ota-sign).
    let vendor = Repo::with_keys(&dir.join("vendor"), &["rollout"]);
    run.sign(&["keygen", "-o", "extra.key"]);
    run.sign(&["key", "public", "--key", "extra.key"]);
    let root = vendor.root_dir();
    let k = |role: &str| vendor.key(role);
    let (rk, tk, sk, tsk) = (k("root"), k("targets"), k("snapshot"), k("timestamp"));
    run.sign(&[
        "repo",
        "init",
        "--repo",
        &root,
        "--root-key",
        &rk,
        "--targets-key",
        &tk,
        "--snapshot-key",
        &sk,
        "--timestamp-key",
        &tsk,
    ]);
    let rootfs = dir.join("rootfs");
    fs::write(&rootfs, image("GOOD 2.0.0", 200_000, 2)).unwrap();
    let image_spec = format!("rootfs={}", rootfs.display());
    let bundle = dir.join("acme-router-2.0.0.bundle");
    let bundle_arg = bundle.display().to_string();
    let bundle_key = k("bundle");
    run.sign(&[
        "bundle",
        "--product",
        "acme-router",
        "--version",
        "2.0.0",
        "--image",
        &image_spec,
        "--key",
        &bundle_key,
        "-o",
        &bundle_arg,
        "--progress",
        "none",
    ]);
    let bundle_pub = format!("{bundle_key}.pub");
    run.sign(&[
        "verify",
        "--trusted",
        &bundle_pub,
        &bundle_arg,
        "--progress",
        "none",
    ]);
    run.sign(&["inspect", "--trusted", &bundle_pub, &bundle_arg]);
    run.sign(&[
        "repo",
        "add",
        "--repo",
        &root,
        "--trusted",
        &bundle_pub,
        &bundle_arg,
    ]);
    run.sign(&[
        "repo",
        "add",
        "--repo",
        &root,
        "--trusted",
        &bundle_pub,
        "--name",
        "spare.bundle",
        &bundle_arg,
    ]);
    run.sign(&["repo", "remove", "--repo", &root, "spare.bundle"]);
    run.sign(&[
        "repo",
        "delegate",
        "--repo",
        &root,
        "--name",
        "nas",
        "--paths",
        "acme-nas/*",
        "--key",
        "extra.key.pub",
    ]);
    run.sign(&[
        "repo", "publish", "--repo", &root, "--key", &tk, "--key", &sk, "--key", &tsk,
    ]);
    run.sign(&["repo", "refresh-timestamp", "--repo", &root, "--key", &tsk]);
    run.sign(&["repo", "list", "--repo", &root]);
    run.sign(&["repo", "doctor", "--repo", &root]);
    let rollout_pub = format!("{}.pub", k("rollout"));
    let rollout_key = k("rollout");
    run.sign(&[
        "rollout",
        "init",
        "--repo",
        &root,
        "--rollout-key",
        &rollout_pub,
        "--key",
        &tk,
        "--key",
        &sk,
        "--key",
        &tsk,
    ]);
    let release = [
        "--repo",
        root.as_str(),
        "--product",
        "acme-router",
        "--version",
        "2.0.0",
        "--key",
        rollout_key.as_str(),
        "--key",
        sk.as_str(),
        "--key",
        tsk.as_str(),
    ];
    run.sign(&[&["rollout", "start"], &release[..], &["--waves", "0s=100%"]].concat());
    run.sign(&[&["rollout", "pause"], &release[..]].concat());
    run.sign(&[&["rollout", "resume"], &release[..]].concat());
    run.sign(&["rollout", "status", "--repo", &root]);
    run.fails(
        "ota-sign",
        &["verify", "--trusted", "extra.key.pub", &bundle_arg],
    );

    // Served (ota-server --json), then a device (ota-update).
    let (mut server, url) = serve_json(run, &root);
    let device = SimDevice::new(
        &dir.join("device"),
        Path::new(&bundle_pub),
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    let section = device.repository_section(&url, &vendor.initial_root());
    device.write_config(&format!(
        "{section}\n[daemon]\ninterval_secs = 1\njitter_secs = 0\n"
    ));
    run.device(&device, &["init-bootloader", "--force"]);
    device.ok(&["simulate-boot"]);
    run.device(&device, &["boot", "--no-reboot"]);
    run.device(&device, &["check"]);
    run.device(&device, &["hold"]);
    run.device(&device, &["daemon", "--rounds", "1"]);
    run.device(&device, &["release-hold"]);
    run.device(&device, &["install"]);
    device.ok(&["simulate-boot"]);
    run.device(&device, &["boot", "--no-reboot"]);
    run.device(&device, &["commit"]);
    run.device(&device, &["status"]);
    run.device(&device, &["rollback"]);
    run.device(
        &device,
        &[
            "install",
            &bundle_arg,
            "--allow-downgrade",
            "--progress",
            "none",
        ],
    );
    run.fails(
        "ota-update",
        &[
            "--config",
            device.config().to_str().unwrap(),
            "install",
            "/nonexistent.bundle",
        ],
    );
    let cache = dir.join("tuf-cache");
    fs::create_dir_all(&cache).unwrap();
    let meta_url = format!("{url}/metadata");
    let tuf = [
        "tuf",
        "--metadata-dir",
        cache.to_str().unwrap(),
        "--metadata-url",
        meta_url.as_str(),
    ];
    let initial_root = vendor.initial_root().display().to_string();
    run.device(
        &device,
        &[&tuf[..], &["init", initial_root.as_str()]].concat(),
    );
    run.device(&device, &[&tuf[..], &["refresh"]].concat());
    let targets_url = format!("{url}/targets");
    let target_dir = dir.join("downloads");
    fs::create_dir_all(&target_dir).unwrap();
    run.device(
        &device,
        &[
            &tuf[..],
            &[
                "--target-base-url",
                targets_url.as_str(),
                "--target-dir",
                target_dir.to_str().unwrap(),
                "--target-name",
                "acme-router-2.0.0.bundle",
                "download",
            ],
        ]
        .concat(),
    );
    run.sign(&[&["rollout", "pull"], &release[..]].concat());
    let _ = server.kill();
    let _ = server.wait();

    // Key rotation last (it replaces the root the device trusts) and the fleet report.
    run.sign(&["keygen", "-o", "root2.key"]);
    run.sign(&[
        "repo",
        "rotate",
        "--repo",
        &root,
        "--root-key",
        "root2.key",
        "--key",
        &rk,
        "--key",
        "root2.key",
    ]);
    let log = dir.join("access.log");
    fs::write(&log, "10.0.0.1 - - [25/Nov/2026:07:41:00 +0000] \"GET /metadata/timestamp.json HTTP/1.1\" 304 0 \"-\" \"ota-update/0.1.0 (acme-router; 1.0.0; stable)\"\n").unwrap();
    run.sign(&["fleet", "report", "--access-log", log.to_str().unwrap()]);
}
