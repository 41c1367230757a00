//! The CI pipelines shipped in contrib/ci/ (GitLab CI and GitHub Actions, printed in full in
//! docs/signing-in-ci.md) work as written: their shell steps are taken from the YAML files and
//! run in a clean project directory with the variables each CI system would set — the GitLab
//! keys as File-type variables (a path in the variable), the GitHub ones as secret text — and
//! with secrets only in the jobs that declare the release environment. The GitLab pipeline
//! publishes release 2.0.0 and the GitHub one 2.1.0 into the same bucket (object storage is a
//! directory behind a stand-in `aws` that logs every upload); a device installs both from it.
//! Checked too: the upload order (bundles, targets, snapshot, root, timestamp last), the cache
//! policies, and that the docs carry the files verbatim.

#![allow(clippy::unwrap_used)]

use ota_test_support::{bin, image, Server, SimDevice};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

const BUCKET: &str = "s3://acme-updates";

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/ci")
        .join(name)
}

fn yaml(name: &str) -> Yaml {
    let text = fs::read_to_string(contrib(name)).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A vendor's firmware project, its keys, and the bucket its repository lives in.
struct Project {
    dir: PathBuf,
    keys: PathBuf,
    s3: PathBuf,
}

impl Project {
    fn new(top: &Path) -> Self {
        let project = Project {
            dir: top.join("project"),
            keys: top.join("secrets"),
            s3: top.join("s3"),
        };
        fs::create_dir_all(project.dir.join("keys")).unwrap();
        fs::create_dir_all(project.dir.join("ci")).unwrap();
        fs::create_dir_all(project.s3.join("acme-updates")).unwrap();
        for role in ["release", "root", "targets", "snapshot", "timestamp"] {
            let key = project.key(role);
            run_ok(Command::new(bin("ota-sign")).args(["keygen", "-o", &key]));
        }
        fs::copy(
            format!("{}.pub", project.key("release")),
            project.dir.join("keys/release.pub"),
        )
        .unwrap();
        fs::copy(contrib("upload-s3.sh"), project.dir.join("ci/upload-s3.sh")).unwrap();
        let git = |args: &[&str]| {
            run_ok(
                Command::new("git")
                    .args(args)
                    .current_dir(&project.dir)
                    .env("GIT_AUTHOR_NAME", "ci")
                    .env("GIT_AUTHOR_EMAIL", "ci@example.com")
                    .env("GIT_COMMITTER_NAME", "ci")
                    .env("GIT_COMMITTER_EMAIL", "ci@example.com"),
            )
        };
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "firmware"]);
        project.bootstrap_repository();
        project
    }

    fn key(&self, role: &str) -> String {
        self.keys.join(format!("{role}.key")).display().to_string()
    }

    /// Once, offline: `repo init` and the first upload, through the shipped upload script.
    fn bootstrap_repository(&self) {
        let repo = self.keys.join("repo");
        let repo_arg = repo.display().to_string();
        let (root, targets, snapshot, timestamp) = (
            self.key("root"),
            self.key("targets"),
            self.key("snapshot"),
            self.key("timestamp"),
        );
        run_ok(Command::new(bin("ota-sign")).args([
            "repo",
            "init",
            "--repo",
            &repo_arg,
            "--root-key",
            &root,
            "--targets-key",
            &targets,
            "--snapshot-key",
            &snapshot,
            "--timestamp-key",
            &timestamp,
        ]));
        let upload = contrib("upload-s3.sh");
        run_ok(&mut self.shell(
            &format!("sh {} {repo_arg} {BUCKET}", upload.display()),
            &BTreeMap::new(),
        ));
    }

    fn bucket(&self) -> PathBuf {
        self.s3.join("acme-updates")
    }

    fn uploads(&self) -> Vec<String> {
        fs::read_to_string(self.s3.join("uploads.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The rootfs the (skipped) build job would have made.
    fn build(&self, version: &str) {
        fs::create_dir_all(self.dir.join("build")).unwrap();
        fs::write(
            self.dir.join("build/rootfs.ext4"),
            image(&format!("GOOD {version}"), 200_000, 9),
        )
        .unwrap();
    }

    /// `bash -eo pipefail -c SCRIPT` in the project, with nothing from our environment but PATH
    /// (the stand-in aws first, then ota-sign's directory) and `env`.
    fn shell(&self, script: &str, env: &BTreeMap<String, String>) -> Command {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ci");
        let ota = bin("ota-sign").parent().unwrap().to_owned();
        let path = format!(
            "{}:{}:{}",
            tools.display(),
            ota.display(),
            std::env::var("PATH").unwrap()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.parent().unwrap())
            .env("FAKE_S3_ROOT", &self.s3)
            .env("FAKE_S3_LOG", self.s3.join("uploads.log"))
            .envs(env);
        cmd
    }
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn hash_strings(value: &Yaml) -> BTreeMap<String, String> {
    value
        .as_hash()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect()
}

/// Runs the GitLab pipeline for `tag`: every job but the build, in stage order.
fn run_gitlab(project: &Project, tag: &str) {
    let doc = yaml("gitlab-ci.yml");
    let mut env = hash_strings(&doc["variables"]);
    env.extend(
        [
            ("CI", "true"),
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_TAG", tag),
        ]
        .map(|(k, v)| (k.into(), v.into())),
    );
    env.insert("CI_PROJECT_DIR".into(), project.dir.display().to_string());
    // File-type variables: GitLab writes each value to a file and puts its path in the variable.
    let mut secrets = BTreeMap::new();
    for (name, role) in [
        ("OTA_SIGNING_KEY", "release"),
        ("OTA_TARGETS_KEY", "targets"),
        ("OTA_SNAPSHOT_KEY", "snapshot"),
        ("OTA_TIMESTAMP_KEY", "timestamp"),
    ] {
        let file = project
            .dir
            .parent()
            .unwrap()
            .join(format!("gitlab-file-var-{name}"));
        fs::copy(project.key(role), &file).unwrap();
        secrets.insert(name.to_owned(), file.display().to_string());
    }
    secrets.insert("OTA_BUCKET".into(), BUCKET.into());
    let mut ran = Vec::new();
    for stage in strings(&doc["stages"]) {
        for (name, job) in doc.as_hash().unwrap() {
            let (Some(name), Some(_)) = (name.as_str(), job.as_hash()) else {
                continue;
            };
            if job["stage"].as_str() != Some(stage.as_str()) || stage == "build" {
                continue;
            }
            let rules = format!("{:?}", job["rules"]);
            assert!(rules.contains("CI_COMMIT_TAG"), "{name}: runs on tags only");
            let mut job_env = env.clone();
            if job["environment"]["name"].as_str() == Some("release") {
                job_env.extend(secrets.clone());
            }
            let script = strings(&job["script"]).join("\n");
            assert!(!script.is_empty(), "{name} has a script");
            run_ok(&mut project.shell(&script, &job_env));
            ran.push(name.to_owned());
        }
    }
    assert_eq!(ran, ["sign-bundle", "verify-bundle", "publish-release"]);
}

/// Runs the GitHub Actions workflow for `tag`: every job in order, every `run` step but the
/// build (`uses` steps — checkout, artifacts — are what the shared directory already gives).
fn run_github(project: &Project, tag: &str) {
    let doc = yaml("github-release.yml");
    let secrets: BTreeMap<String, String> = [
        ("OTA_SIGNING_KEY", "release"),
        ("OTA_TARGETS_KEY", "targets"),
        ("OTA_SNAPSHOT_KEY", "snapshot"),
        ("OTA_TIMESTAMP_KEY", "timestamp"),
    ]
    .into_iter()
    .map(|(name, role)| {
        (
            name.to_owned(),
            fs::read_to_string(project.key(role)).unwrap(),
        )
    })
    .chain([
        ("AWS_ACCESS_KEY_ID".to_owned(), "AKIATEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
    ])
    .collect();
    let vars = BTreeMap::from([("OTA_BUCKET".to_owned(), BUCKET.to_owned())]);
    let expand = |value: &str| -> String {
        let inner = value
            .trim()
            .strip_prefix("${{")
            .and_then(|v| v.strip_suffix("}}"))
            .map(str::trim);
        match inner.and_then(|e| e.split_once('.')) {
            Some(("secrets", name)) => secrets.get(name).cloned().unwrap_or_default(),
            Some(("vars", name)) => vars[name].clone(),
            Some(other) => panic!("unexpected expression {other:?}"),
            None => value.to_owned(),
        }
    };
    let mut ran = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for (name, job) in doc["jobs"].as_hash().unwrap() {
        let name = name.as_str().unwrap();
        for need in strings(&job["needs"])
            .into_iter()
            .chain(job["needs"].as_str().map(String::from))
        {
            assert!(
                done.contains(&need),
                "{name} needs {need}, which has not run"
            );
        }
        let with_secrets = job["environment"].as_str() == Some("release");
        for step in job["steps"].as_vec().unwrap() {
            let Some(script) = step["run"].as_str() else {
                continue;
            };
            if step["name"].as_str() == Some("Build images") {
                continue;
            }
            let mut env = BTreeMap::from([
                ("CI".to_owned(), "true".to_owned()),
                ("GITHUB_ACTIONS".to_owned(), "true".to_owned()),
                ("GITHUB_REF_NAME".to_owned(), tag.to_owned()),
            ]);
            env.extend(hash_strings(&doc["env"]));
            for (key, value) in hash_strings(&step["env"]) {
                assert!(
                    with_secrets || !value.contains("secrets."),
                    "{name}: a secret outside the release environment"
                );
                env.insert(key, expand(&value));
            }
            run_ok(&mut project.shell(script, &env));
            ran.push(name.to_owned());
        }
        done.push(name.to_owned());
    }
    assert_eq!(ran, ["sign", "verify", "publish"]);
}

/// Checks the uploads since `from`: bundles, targets, snapshots, roots, timestamp last, with
/// their cache policies.
fn check_upload_order(uploads: &[String]) {
    let rank = |key: &str| -> u8 {
        let name = key.rsplit('/').next().unwrap();
        match () {
            _ if key.contains("/targets/") => 0,
            _ if name.ends_with(".snapshot.json") => 2,
            _ if name.ends_with("root.json") => 3,
            _ if name == "timestamp.json" => 4,
            _ => 1,
        }
    };
    let ranks: Vec<u8> = uploads
        .iter()
        .map(|line| rank(line.split('\t').next().unwrap()))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "upload order {uploads:#?}"
    );
    assert_eq!(ranks.last(), Some(&4), "timestamp.json last: {uploads:#?}");
    for line in uploads {
        let fields: Vec<&str> = line.split('\t').collect();
        let policy = match rank(fields[0]) {
            4 => "public, max-age=10, must-revalidate",
            3 if fields[0].ends_with("/root.json") => "public, max-age=60, must-revalidate",
            _ => "public, max-age=31536000, immutable",
        };
        assert_eq!(fields[2], policy, "{line}");
    }
}

#[test]
fn the_shipped_pipelines_sign_verify_and_publish_what_devices_install() {
    let dir = tempfile::tempdir().unwrap();
    let project = Project::new(dir.path());
    let before = project.uploads().len();
    project.build("2.0.0");
    run_gitlab(&project, "v2.0.0");
    let uploads = project.uploads()[before..].to_vec();
    assert!(
        uploads
            .iter()
            .any(|u| u.contains("/targets/") && u.contains("acme-router-2.0.0.bundle")),
        "{uploads:#?}"
    );
    check_upload_order(&uploads);
    let published: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(project.dir.join("out/publish.json")).unwrap())
            .unwrap();
    assert!(published.is_object(), "{published}");

    // A device trusting the release key and the repository's first root installs it.
    let server = Server::start(&project.bucket(), &["--access-log", "off"]);
    let device = SimDevice::new(
        &dir.path().join("device"),
        &project.dir.join("keys/release.pub"),
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    let root = dir.path().join("secrets/repo/metadata/1.root.json");
    let section = device.repository_section(&server.base, &root);
    device.write_config(&section);
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);
    for (version, slot) in [("2.0.0", "B"), ("2.1.0", "A")] {
        if version == "2.1.0" {
            // The next release comes from the GitHub workflow, into the same bucket.
            let before = project.uploads().len();
            project.build(version);
            run_github(&project, "v2.1.0");
            check_upload_order(&project.uploads()[before..]);
        }
        let check = device.json(&["check", "--json"]);
        assert_eq!(check["update"]["version"], version, "{check}");
        device.ok(&["install"]);
        device.ok(&["simulate-boot"]);
        device.ok(&["boot", "--no-reboot"]);
        assert_eq!(device.json(&["status", "--json"])["booted"], slot);
    }
}

#[test]
fn the_docs_carry_the_shipped_pipelines_verbatim() {
    let docs =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/signing-in-ci.md"))
            .unwrap();
    for name in ["gitlab-ci.yml", "github-release.yml", "upload-s3.sh"] {
        let text = fs::read_to_string(contrib(name)).unwrap();
        assert!(
            docs.contains(text.trim_end()),
            "docs/signing-in-ci.md does not carry contrib/ci/{name} as it is"
        );
    }
}
