//! promfed's image as `make image` builds it (`scripts/image.sh`, the archive
//! `target/promfed-image.tar` or `PROMFED_IMAGE`): its config read back by skopeo and held
//! equal to the Dockerfile's, its one layer listed, and the image run by runc with the limits
//! the Deployment sets.
//!
//! Tools: skopeo, umoci, runc (Debian's, from scripts/test-deps.sh), readelf; runc needs root.
//! The archive itself comes from `make image`, which `make test` runs first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::manifests::{parse_one, strings};
use crate::support::{current_test, root, skip};

/// The archive, or a skip (a failure under `PROMFED_REQUIRE_TOOLS`) when it was not built.
fn archive() -> Option<PathBuf> {
    let path = std::env::var_os("PROMFED_IMAGE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/promfed-image.tar"));
    if path.is_file() {
        Some(path)
    } else {
        skip(
            &current_test(),
            &format!("the image archive {} (make image)", path.display()),
        )
    }
}

/// A Debian tool on PATH, or a skip.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.or_else(|| skip(&current_test(), name))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The instructions of the Dockerfile's final stage, continuation lines joined, comments
/// dropped: (INSTRUCTION, rest of the line).
fn final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut lines = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if cur.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                lines.push(std::mem::take(&mut cur).trim().to_string());
            }
        }
    }
    let mut stage = Vec::new();
    for line in lines {
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let word = word.to_ascii_uppercase();
        if word == "FROM" {
            stage.clear();
        }
        stage.push((word, rest.trim().to_string()));
    }
    stage
}

fn instruction<'a>(stage: &'a [(String, String)], word: &str) -> &'a str {
    let found = stage.iter().rev().find(|(w, _)| w == word);
    &found
        .unwrap_or_else(|| panic!("no {word} in the Dockerfile's final stage"))
        .1
}

fn exec_form(stage: &[(String, String)], word: &str) -> Vec<String> {
    serde_json::from_str(instruction(stage, word))
        .unwrap_or_else(|e| panic!("{word} is not in exec form: {e}"))
}

/// The LABEL pairs of the final stage (`key="value"`, as the Dockerfile writes them).
fn dockerfile_labels(stage: &[(String, String)]) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    for (_, rest) in stage.iter().filter(|(w, _)| w == "LABEL") {
        let mut rest = rest.as_str();
        while let Some((key, tail)) = rest.trim_start().split_once('=') {
            let tail = tail.strip_prefix('"').expect("LABEL values are quoted");
            let (value, tail) = tail.split_once('"').expect("closing quote");
            labels.push((key.trim().to_string(), value.to_string()));
            rest = tail;
        }
    }
    labels
}

/// The archive unpacked into a fresh folder: an OCI layout.
fn layout(archive: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path()));
    dir
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    layout.join("blobs").join(alg).join(hex)
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn archive_config_is_the_dockerfiles_with_the_release_labels() {
    let Some(archive) = archive() else { return };
    let Some(skopeo) = tool("skopeo") else { return };
    let tag = env!("CARGO_PKG_VERSION");
    // skopeo, as `skopeo copy` to a registry will read it (docs/install.md).
    let config: Value = serde_json::from_str(&run(Command::new(&skopeo)
        .arg("inspect")
        .arg("--config")
        .arg(format!("oci-archive:{}:{tag}", archive.display()))))
    .unwrap();
    let c = &config["config"];
    let stage = final_stage();
    assert_eq!(strings(&c["Entrypoint"]), exec_form(&stage, "ENTRYPOINT"));
    assert_eq!(strings(&c["Cmd"]), exec_form(&stage, "CMD"));
    assert_eq!(c["User"], instruction(&stage, "USER"));
    assert_eq!(c["User"], "65532:65532");
    // The Deployment runs the image as it is (no command, the same args, the same user).
    let deployment = parse_one(&root().join("deploy/base/deployment.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(strings(&c["Cmd"]), strings(&pod["containers"][0]["args"]));
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let ports: BTreeSet<String> = c["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let want: BTreeSet<String> = instruction(&stage, "EXPOSE")
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    assert_eq!(ports, want);
    assert!(
        c.get("Env").is_none_or(Value::is_null),
        "no environment: {}",
        c["Env"]
    );
    let labels = &c["Labels"];
    for (key, value) in dockerfile_labels(&stage) {
        assert_eq!(labels[&key], json!(value), "label {key}");
    }
    assert_eq!(labels["org.opencontainers.image.version"], tag);
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        env!("CARGO_PKG_REPOSITORY")
    );
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
}

#[test]
fn the_one_layer_holds_the_static_binary_and_no_shell() {
    let Some(archive) = archive() else { return };
    let Some(readelf) = tool("readelf") else {
        return;
    };
    let dir = layout(&archive);
    let index = json_file(&dir.path().join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION")
    );
    let manifest = json_file(&blob(dir.path(), entry["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = blob(dir.path(), layers[0]["digest"].as_str().unwrap());
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let listing = run(Command::new("tar").arg("-tvzf").arg(&layer));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg("--no-same-owner"));
    let names: BTreeSet<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().nth(5).unwrap().trim_end_matches('/'))
        .map(|n| n.trim_start_matches("./").trim_start_matches('/'))
        .filter(|n| !n.is_empty() && *n != ".")
        .collect();
    let want: BTreeSet<&str> = [
        "LICENSE",
        "etc",
        "etc/group",
        "etc/passwd",
        "promfed",
        "tmp",
    ]
    .into();
    assert_eq!(names, want, "{listing}");
    // Every file root's, the binary not writable by the user the image runs as.
    for line in listing.lines() {
        assert!(line.split_whitespace().nth(1) == Some("0/0"), "{line}");
    }
    let binary = rootfs.join("promfed");
    let headers = run(Command::new(&readelf).arg("-l").arg(&binary));
    assert!(!headers.contains("INTERP"), "a dynamic binary: {headers}");
    let dynamic = run(Command::new(&readelf).arg("-d").arg(&binary));
    assert!(
        !dynamic.contains("(NEEDED)"),
        "it needs libraries: {dynamic}"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    assert_eq!(
        std::fs::read(rootfs.join("LICENSE")).unwrap(),
        std::fs::read(root().join("LICENSE")).unwrap()
    );
}

#[test]
fn runc_runs_the_image_as_65532_on_a_read_only_root_without_capabilities() {
    let Some(archive) = archive() else { return };
    let Some(umoci) = tool("umoci") else { return };
    let Some(runc) = tool("runc") else { return };
    if run(Command::new("id").arg("-u")).trim() != "0" {
        skip::<()>(&current_test(), "root (runc runs the image)");
        return;
    }
    let dir = layout(&archive);
    let bundle = dir.path().join("bundle");
    // umoci writes the runtime config from the image's: user, entrypoint + cmd, workdir.
    run(Command::new(&umoci)
        .arg("unpack")
        .arg("--image")
        .arg(format!(
            "{}:{}",
            dir.path().display(),
            env!("CARGO_PKG_VERSION")
        ))
        .arg(&bundle));
    let spec_path = bundle.join("config.json");
    let mut spec = json_file(&spec_path);
    let process = &mut spec["process"];
    assert_eq!(process["user"]["uid"], 65532);
    assert_eq!(process["user"]["gid"], 65532);
    assert_eq!(strings(&process["args"])[..2], ["/promfed", "serve"]);
    // The Deployment's limits: read-only root, no capabilities, no privilege gain; and a
    // command that needs no mounted files: the engine on its embedded example.
    process["args"] = json!(["/promfed", "render", "--example"]);
    process["terminal"] = json!(false);
    process["noNewPrivileges"] = json!(true);
    process["capabilities"] = json!({});
    spec["root"]["readonly"] = json!(true);
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let id = format!("promfed-image-test-{}", std::process::id());
    let out = Command::new(&runc)
        .arg("--root")
        .arg(dir.path().join("runc-state"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runc run: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("target_label: cluster"), "{stdout}");
}

#[test]
fn two_builds_of_one_binary_and_commit_are_the_same_archive() {
    let Some(archive) = archive() else { return };
    if tool("umoci").is_none() {
        return;
    }
    // The archive's own binary, packed twice more: byte for byte the same (fixed times and
    // owners in the layer, the commit's time in the config), so a rebuild can be checked.
    let dir = layout(&archive);
    let index = json_file(&dir.path().join("index.json"));
    let manifest = json_file(&blob(
        dir.path(),
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let layer = blob(
        dir.path(),
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(dir.path())
        .arg("promfed"));
    let outs: Vec<Vec<u8>> = ["a.tar", "b.tar"]
        .iter()
        .map(|name| {
            let out = dir.path().join(name);
            run(Command::new(root().join("scripts/image.sh"))
                .arg(&out)
                .env("PROMFED_IMAGE_BIN", dir.path().join("promfed")));
            std::fs::read(out).unwrap()
        })
        .collect();
    assert!(outs[0] == outs[1], "two builds differ");
}

#[test]
fn skopeo_copies_the_archive_as_docs_install_md_pushes_it() {
    let Some(archive) = archive() else { return };
    let Some(skopeo) = tool("skopeo") else { return };
    // The push of docs/install.md with a folder for the registry: skopeo reads every blob of
    // the archive and checks it against its digest on the way.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy");
    run(Command::new(&skopeo)
        .arg("copy")
        .arg(format!(
            "oci-archive:{}:{}",
            archive.display(),
            env!("CARGO_PKG_VERSION")
        ))
        .arg(format!("dir:{}", dest.display())));
    let manifest = json_file(&dest.join("manifest.json"));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let unpacked = layout(&archive);
    let index = json_file(&unpacked.path().join("index.json"));
    let original = json_file(&blob(
        unpacked.path(),
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    assert_eq!(manifest["layers"], original["layers"]);
    assert_eq!(manifest["config"]["digest"], original["config"]["digest"]);
}
