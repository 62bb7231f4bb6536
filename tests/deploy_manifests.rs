//! The files in `deploy/` are valid and agree with the binary they deploy: every Kubernetes
//! manifest parses as YAML; the sidecar containers' flags and environment variables are the
//! binary's own and parse as its command line; gRPC probes reach a plaintext health listener
//! on the pod IP (liveness on `liveness`, readiness on `""`); the files the flags name are
//! mounted; Services target declared ports; the grace period covers the preStop pause and the
//! drain; the catalog ConfigMap is `deploy/catalog.toml` byte for byte; the Redis config loads
//! in a real Redis 7 with AOF `always`; and the Dockerfile builds both binaries into a non-root
//! image.

mod harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Deserialize;
use serde_norway::Value;

use harness::certs::TestPki;
use harness::free_port;
use quota_sidecar::config::{Config, ADMIN_TOKEN_ENV};
use quota_sidecar::ledger::Catalog;
use quota_sidecar::server::{DRAIN_TIMEOUT, LIVENESS_SERVICE};

/// Image name that marks a container as the sidecar.
const SIDECAR_IMAGE: &str = "quota-sidecar";
/// The catalog ConfigMap's name and key.
const CATALOG_CONFIG_MAP: &str = "quota-catalog";
const CATALOG_KEY: &str = "catalog.toml";
/// How long the Redis started from the deploy config may take to answer.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML document of every file in `deploy/k8s/`, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .expect("deploy/k8s exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

/// The pod spec of a workload (Deployment, StatefulSet, DaemonSet, Job) or of a Pod.
fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Pod" => Some(&doc["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
            Some(&doc["spec"]["template"]["spec"])
        }
        _ => None,
    }
}

/// One sidecar container, with where it was found.
struct SidecarContainer<'a> {
    place: String,
    pod: &'a Value,
    container: &'a Value,
}

impl SidecarContainer<'_> {
    fn args(&self) -> Vec<String> {
        strings(&self.container["args"])
    }

    /// The command line as the binary's parser reads it.
    fn config(&self) -> Config {
        let argv = std::iter::once("quota-sidecar".to_string()).chain(self.args());
        Config::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{}: args do not parse: {e}", self.place))
    }

    /// Names of the environment variables it sets.
    fn env_names(&self) -> Vec<String> {
        seq(&self.container["env"])
            .iter()
            .map(|e| e["name"].as_str().expect("env name").to_string())
            .collect()
    }

    /// Mount paths of its volumes, by volume name.
    fn mounts(&self) -> Vec<(String, String)> {
        seq(&self.container["volumeMounts"])
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["mountPath"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// Every sidecar container (also native sidecars among the init containers).
fn sidecars(docs: &[(String, Value)]) -> Vec<SidecarContainer<'_>> {
    let mut found = Vec::new();
    for (file, doc) in docs {
        let Some(pod) = pod_spec(doc) else { continue };
        for list in ["containers", "initContainers"] {
            for container in seq(&pod[list]) {
                let image = container["image"].as_str().unwrap_or_default();
                if image.contains(SIDECAR_IMAGE) {
                    found.push(SidecarContainer {
                        place: format!(
                            "{file} {}/{}",
                            doc["metadata"]["name"].as_str().unwrap_or("?"),
                            container["name"].as_str().unwrap_or("?")
                        ),
                        pod,
                        container,
                    });
                }
            }
        }
    }
    found
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    seq(value)
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The binary's `--help`.
fn binary_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_quota-sidecar"))
        .arg("--help")
        .output()
        .expect("run quota-sidecar --help");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_manifest_parses_and_names_its_kind() {
    let docs = manifests();
    let files: Vec<&str> = docs.iter().map(|(f, _)| f.as_str()).collect();
    for expected in ["catalog-configmap.yaml", "central.yaml", "worker-pod.yaml"] {
        assert!(files.contains(&expected), "{expected} missing: {files:?}");
    }
    for (file, doc) in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].as_str().is_some(), "{file}: no {field}");
        }
        assert!(
            doc["metadata"]["name"].as_str().is_some(),
            "{file}: no name"
        );
    }
    assert!(
        sidecars(&docs).len() >= 2,
        "a worker pod and the central service"
    );
}

#[test]
fn sidecar_flags_and_environment_are_the_binarys_own() {
    let docs = manifests();
    let help = binary_help();
    for sidecar in sidecars(&docs) {
        for arg in sidecar.args() {
            let flag = arg.split('=').next().unwrap();
            assert!(flag.starts_with("--"), "{}: {arg}", sidecar.place);
            assert!(
                help.contains(&format!("{flag} <")),
                "{}: {flag} is not a flag of the binary",
                sidecar.place
            );
        }
        // Values, ranges and flags that need each other, as the binary checks them.
        sidecar.config();
        for name in sidecar.env_names() {
            assert!(
                name == ADMIN_TOKEN_ENV || help.contains(&format!("[env: {name}=")),
                "{}: {name} is not read by the binary",
                sidecar.place
            );
        }
    }
}

#[test]
fn grpc_probes_reach_a_plaintext_listener_on_the_pod_ip() {
    let docs = manifests();
    for sidecar in sidecars(&docs) {
        let place = &sidecar.place;
        let config = sidecar.config();
        let mut listeners = vec![
            ("worker", config.listen),
            ("metrics", config.metrics_listen),
        ];
        if sidecar.env_names().iter().any(|n| n == ADMIN_TOKEN_ENV) {
            listeners.push(("admin", config.admin_listen));
        }
        if let Some(addr) = config.health_listen {
            listeners.push(("health", addr));
        }
        let probe_names = ["startupProbe", "livenessProbe", "readinessProbe"];
        for name in probe_names {
            let probe = &sidecar.container[name];
            assert!(!probe.is_null(), "{place}: no {name}");
            let grpc = &probe["grpc"];
            let port = grpc["port"]
                .as_u64()
                .unwrap_or_else(|| panic!("{place}: {name} is not a gRPC probe on a port"));
            let (listener, addr) = listeners
                .iter()
                .find(|(l, addr)| *l != "metrics" && u64::from(addr.port()) == port)
                .unwrap_or_else(|| panic!("{place}: {name} port {port} is no gRPC listener"));
            assert!(
                !is_loopback(addr),
                "{place}: {name} probes {listener} on {addr}, which the kubelet cannot reach"
            );
            // Probes speak no TLS: with TLS on, only the health listener answers them.
            if config.tls_cert.is_some() {
                assert_eq!(*listener, "health", "{place}: {name} on a TLS listener");
            }
            let service = grpc["service"].as_str().unwrap_or_default();
            let expected = if name == "readinessProbe" {
                ""
            } else {
                LIVENESS_SERVICE
            };
            assert_eq!(service, expected, "{place}: {name} service");
        }
        // Declared ports are listeners the pod IP can reach.
        for port in seq(&sidecar.container["ports"]) {
            let number = port["containerPort"].as_u64().unwrap();
            let listener = listeners
                .iter()
                .find(|(_, addr)| u64::from(addr.port()) == number)
                .unwrap_or_else(|| panic!("{place}: containerPort {number} is no listener"));
            assert!(
                !is_loopback(&listener.1),
                "{place}: {number} is on loopback"
            );
        }
        // The worker API of a worker pod's sidecar stays on loopback.
        if sidecar.container["restartPolicy"].as_str() == Some("Always") {
            assert!(
                is_loopback(&config.listen),
                "{place}: worker API off loopback"
            );
        }
    }
}

#[test]
fn files_named_by_flags_are_mounted_and_the_drain_fits_the_grace_period() {
    let docs = manifests();
    for sidecar in sidecars(&docs) {
        let place = &sidecar.place;
        let config = sidecar.config();
        let mounts = sidecar.mounts();
        let files: Vec<(&str, &Path)> = [
            ("--catalog", config.catalog.as_deref()),
            ("--tls-cert", config.tls_cert.as_deref()),
            ("--tls-key", config.tls_key.as_deref()),
            ("--admin-client-ca", config.admin_client_ca.as_deref()),
            ("--redis-ca", config.redis_ca.as_deref()),
        ]
        .into_iter()
        .filter_map(|(flag, path)| path.map(|p| (flag, p)))
        .collect();
        for (flag, path) in files {
            let mounted = mounts
                .iter()
                .any(|(_, mount)| path.parent() == Some(Path::new(mount)));
            assert!(
                mounted,
                "{place}: {flag} {} is in no volume",
                path.display()
            );
        }

        // The catalog comes from the catalog ConfigMap, under its key.
        let catalog = config.catalog.expect("--catalog");
        let (volume, _) = mounts
            .iter()
            .find(|(_, mount)| catalog.parent() == Some(Path::new(mount)))
            .unwrap();
        let source = seq(&sidecar.pod["volumes"])
            .iter()
            .find(|v| v["name"].as_str() == Some(volume))
            .unwrap_or_else(|| panic!("{place}: volume {volume} not declared"));
        assert_eq!(
            source["configMap"]["name"].as_str(),
            Some(CATALOG_CONFIG_MAP),
            "{place}"
        );
        assert_eq!(catalog.file_name().unwrap(), CATALOG_KEY, "{place}");

        let grace = sidecar.pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let pause = sidecar.container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            Duration::from_secs(grace) > Duration::from_secs(pause) + DRAIN_TIMEOUT,
            "{place}: grace period {grace} s is shorter than the preStop pause and the drain"
        );
    }
}

#[test]
fn services_target_ports_their_pods_declare() {
    let docs = manifests();
    for (file, service) in docs.iter().filter(|(_, d)| d["kind"] == "Service") {
        let selector = service["spec"]["selector"].as_mapping().expect("selector");
        let pods: Vec<&Value> = docs
            .iter()
            .filter_map(|(_, d)| {
                let labels = if d["kind"] == "Pod" {
                    &d["metadata"]["labels"]
                } else {
                    &d["spec"]["template"]["metadata"]["labels"]
                };
                let matches = selector
                    .iter()
                    .all(|(k, v)| &labels[k.as_str().unwrap()] == v);
                (matches && pod_spec(d).is_some()).then(|| pod_spec(d).unwrap())
            })
            .collect();
        assert!(!pods.is_empty(), "{file}: the Service selects no pod");
        let declared: Vec<&Value> = pods
            .iter()
            .flat_map(|pod| {
                seq(&pod["containers"])
                    .iter()
                    .chain(seq(&pod["initContainers"]))
            })
            .flat_map(|c| seq(&c["ports"]))
            .collect();
        for port in seq(&service["spec"]["ports"]) {
            let target = &port["targetPort"];
            let found = declared.iter().any(|p| match target.as_str() {
                Some(name) => p["name"].as_str() == Some(name),
                None => p["containerPort"] == *target,
            });
            assert!(found, "{file}: targetPort {target:?} is not declared");
        }
    }
}

#[test]
fn catalog_config_map_is_deploy_catalog_toml() {
    let docs = manifests();
    let (_, config_map) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "ConfigMap" && d["metadata"]["name"] == CATALOG_CONFIG_MAP)
        .expect("the catalog ConfigMap");
    let in_config_map = config_map["data"][CATALOG_KEY]
        .as_str()
        .expect("the catalog key");
    let file = std::fs::read_to_string(deploy_dir().join("catalog.toml")).unwrap();
    assert_eq!(
        in_config_map, file,
        "the ConfigMap differs from deploy/catalog.toml"
    );
    Catalog::from_toml_str(in_config_map).expect("the catalog loads");
}

/// Kills the Redis started from the deploy config, also when an assertion fails.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn redis_conf_loads_in_redis_with_aof_always() {
    let text = std::fs::read_to_string(deploy_dir().join("redis/redis.conf")).unwrap();
    let pki = TestPki::new("redis test CA");
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // Only paths and the port change; every other line is loaded as written.
    let replaced: Vec<String> = text
        .lines()
        .map(|line| {
            let key = line.split_whitespace().next().unwrap_or_default();
            match key {
                "dir" => format!("dir {}", data.path().display()),
                "tls-port" => format!("tls-port {port}"),
                "tls-cert-file" => format!("tls-cert-file {}", pki.server_cert_path()),
                "tls-key-file" => format!("tls-key-file {}", pki.server_key_path()),
                "tls-ca-cert-file" => format!("tls-ca-cert-file {}", pki.ca_path()),
                "bind" => "bind 127.0.0.1".to_string(),
                _ => line.to_string(),
            }
        })
        .collect();
    let conf = data.path().join("redis.conf");
    std::fs::write(&conf, replaced.join("\n")).unwrap();
    let _redis = Killed(
        Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs"),
    );
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls"])
            .args(["--cacert", &pki.ca_path()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let deadline = Instant::now() + REDIS_START_TIMEOUT;
    while cli(&["PING"]) != "PONG" {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start with the config"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (key, expected) in [
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("no-appendfsync-on-rewrite", "no"),
        ("maxmemory-policy", "noeviction"),
        ("port", "0"),
    ] {
        assert_eq!(
            cli(&["CONFIG", "GET", key]),
            format!("{key}\n{expected}"),
            "{key}"
        );
    }
}

#[test]
fn dockerfile_builds_both_binaries_into_a_non_root_image() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: a build and a runtime stage");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid = user.split(':').next().unwrap().trim();
    assert!(uid != "root" && uid != "0", "runs as {user}");
    for bin in ["--bin quota-sidecar", "--bin quotactl"] {
        assert!(text.contains(bin), "builds {bin}");
    }
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/bin/quotactl.rs")
        .exists());
    // The catalog baked into the image is the one the binary compiles in.
    assert!(text.contains("COPY deploy/catalog.toml /etc/quota-sidecar/catalog.toml"));
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/quota-sidecar\"]"));
}
