//! The files in `deploy/` are valid and agree with the binaries they deploy: every kustomize
//! overlay renders with `kubectl kustomize` into objects in the `quota` namespace whose
//! selectors, ports and references match; the sidecar containers' flags and environment
//! variables are the binary's own and parse as its command line; gRPC probes reach a
//! plaintext health listener on the pod IP (liveness on `liveness`, readiness on `""`); the
//! files the flags name are mounted; Services, monitors and network policies name declared
//! ports; the grace period covers the preStop pause and the drain; the catalog ConfigMap is
//! `deploy/catalog.toml` byte for byte under a content-hashed name, so a changed catalog rolls
//! the pods; quota-billing's Deployment uses its real flags and its migration Job migrates a
//! real database; the alert rules pass `promtool check rules` and their `promtool test rules`
//! unit tests; alerts and dashboard name only metrics the code exports; the Redis config loads
//! in a real Redis 7 with AOF `always`; and the Dockerfile builds both images non-root.
//!
//! `kubectl` and `promtool` come from Debian's `kubectl` and `prometheus` packages, which
//! `.ci/run` installs. Where one is missing the tests that need it pass with a note, except
//! under `CI=true`, where they fail.

mod harness;

use std::collections::BTreeSet;
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

/// Image name that marks a container as the sidecar, and as quota-billing.
const SIDECAR_IMAGE: &str = "quota-sidecar";
const BILLING_IMAGE: &str = "quota-billing";
/// The catalog ConfigMap's name (before kustomize appends the content hash) and key.
const CATALOG_CONFIG_MAP: &str = "quota-catalog";
const CATALOG_KEY: &str = "catalog.toml";
/// The namespace every overlay deploys into.
const NAMESPACE: &str = "quota";
/// The overlays under `deploy/overlays/`, and the kinds each must render.
const OVERLAYS: [(&str, &[&str]); 2] = [
    (
        "worker-sidecar",
        &[
            "Namespace",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "PodMonitor",
            "PrometheusRule",
        ],
    ),
    (
        "central",
        &[
            "Namespace",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
            "PrometheusRule",
            "Job",
        ],
    ),
];
/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 1] = ["Namespace"];
/// How long the Redis started from the deploy config may take to answer.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `kubectl kustomize`, `promtool` or `quota-billing migrate` may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Whether `tool --version`-like `probe` runs. When it does not: `false` with a note, or a
/// failure under CI, where `.ci/run` should have installed it.
fn tool_available(tool: &str, probe: &[&str], package: &str) -> bool {
    let ran = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ran {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing under CI: .ci/run installs Debian's {package} package"
        );
        eprintln!("{tool} is not installed (Debian package {package}): not checked here");
    }
    ran
}

fn kubectl_available() -> bool {
    tool_available("kubectl", &["version", "--client"], "kubectl")
}

fn promtool_available() -> bool {
    tool_available("promtool", &["--version"], "prometheus")
}

/// Runs `command`, bounded; its stdout, after checking it succeeded.
fn run_tool(command: &mut Command) -> String {
    let out = harness::process::output_within(command, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The YAML documents of `text`.
fn documents(text: &str, place: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{place} is not valid YAML: {e}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// What `kubectl kustomize` renders for the kustomization in `dir`.
fn render_dir(dir: &Path) -> Vec<Value> {
    let text = run_tool(Command::new("kubectl").arg("kustomize").arg(dir));
    documents(&text, &dir.display().to_string())
}

/// Every object every overlay renders, each with its overlay's name; `None` without kubectl.
fn manifests() -> Option<Vec<(String, Value)>> {
    if !kubectl_available() {
        return None;
    }
    let mut docs = Vec::new();
    for (overlay, _) in OVERLAYS {
        for doc in render_dir(&deploy_dir().join("overlays").join(overlay)) {
            docs.push((overlay.to_string(), doc));
        }
    }
    Some(docs)
}

/// The objects of one overlay.
fn of_overlay<'a>(docs: &'a [(String, Value)], overlay: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(o, _)| o == overlay)
        .map(|(_, d)| d)
        .collect()
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
fn every_overlay_renders_its_kinds_into_the_namespace() {
    let Some(docs) = manifests() else { return };
    for (overlay, kinds) in OVERLAYS {
        let objects = of_overlay(&docs, overlay);
        let rendered: BTreeSet<&str> = objects.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in kinds {
            assert!(
                rendered.contains(kind),
                "{overlay}: no {kind} in {rendered:?}"
            );
        }
        for doc in objects {
            let kind = doc["kind"].as_str().expect("a kind");
            let name = doc["metadata"]["name"].as_str().expect("a name");
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{overlay} {kind}/{name}"
            );
            if CLUSTER_SCOPED.contains(&kind) {
                assert_eq!(name, NAMESPACE, "{overlay}: the namespace object");
            } else {
                assert_eq!(
                    doc["metadata"]["namespace"].as_str(),
                    Some(NAMESPACE),
                    "{overlay} {kind}/{name}: namespace"
                );
            }
        }
    }
    assert!(
        sidecars(&docs).len() >= 2,
        "a worker pod and the central service"
    );
}

#[test]
fn sidecar_flags_and_environment_are_the_binarys_own() {
    let Some(docs) = manifests() else { return };
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
    let Some(docs) = manifests() else { return };
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
    let Some(docs) = manifests() else { return };
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
            Some(catalog_config_map(&docs).as_str()),
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

/// Whether `selector` (a `matchLabels` map, or a selector with one) selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let match_labels = if selector["matchLabels"].is_mapping() {
        &selector["matchLabels"]
    } else {
        selector
    };
    let Some(wanted) = match_labels.as_mapping() else {
        return false;
    };
    !wanted.is_empty()
        && wanted
            .iter()
            .all(|(k, v)| &labels[k.as_str().expect("a label key")] == v)
}

/// Pod labels and pod spec of every workload of `objects`.
fn pods<'a>(objects: &[&'a Value]) -> Vec<(&'a Value, &'a Value, &'a Value)> {
    objects
        .iter()
        .filter_map(|d| {
            let spec = pod_spec(d)?;
            let labels = if d["kind"] == "Pod" {
                &d["metadata"]["labels"]
            } else {
                &d["spec"]["template"]["metadata"]["labels"]
            };
            Some((*d, labels, spec))
        })
        .collect()
}

/// Every container port a pod spec declares.
fn declared_ports(pod: &Value) -> Vec<&Value> {
    seq(&pod["containers"])
        .iter()
        .chain(seq(&pod["initContainers"]))
        .flat_map(|c| seq(&c["ports"]))
        .collect()
}

/// Whether `port` (a name or a number) is one of `declared`.
fn names_a_port(port: &Value, declared: &[&Value]) -> bool {
    declared.iter().any(|p| match port.as_str() {
        Some(name) => p["name"].as_str() == Some(name),
        None => p["containerPort"] == *port,
    })
}

fn named<'a>(objects: &[&'a Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|d| d["kind"] == kind)
        .copied()
        .collect()
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("?")
}

/// The rendered catalog ConfigMap's name (the same in every overlay: one base).
fn catalog_config_map(docs: &[(String, Value)]) -> String {
    let names: BTreeSet<&str> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "ConfigMap" && d["data"][CATALOG_KEY].is_string())
        .map(name_of)
        .collect();
    assert_eq!(names.len(), 1, "one catalog ConfigMap: {names:?}");
    names.into_iter().next().unwrap().to_string()
}

#[test]
fn services_target_ports_their_pods_declare() {
    let Some(docs) = manifests() else { return };
    for (overlay, _) in OVERLAYS {
        let objects = of_overlay(&docs, overlay);
        for service in named(&objects, "Service") {
            let selected: Vec<_> = pods(&objects)
                .into_iter()
                .filter(|(_, labels, _)| selects(&service["spec"]["selector"], labels))
                .collect();
            let place = format!("{overlay} Service/{}", name_of(service));
            assert!(!selected.is_empty(), "{place}: selects no pod");
            for port in seq(&service["spec"]["ports"]) {
                for (workload, _, pod) in &selected {
                    assert!(
                        names_a_port(&port["targetPort"], &declared_ports(pod)),
                        "{place}: targetPort {:?} is not declared by {}",
                        port["targetPort"],
                        name_of(workload)
                    );
                }
            }
        }
    }
}

#[test]
fn selectors_budgets_policies_and_monitors_match_the_pods() {
    let Some(docs) = manifests() else { return };
    for (overlay, _) in OVERLAYS {
        let objects = of_overlay(&docs, overlay);
        let all_pods = pods(&objects);
        for (workload, labels, pod) in &all_pods {
            let place = format!(
                "{overlay} {}/{}",
                workload["kind"].as_str().unwrap(),
                name_of(workload)
            );
            if workload["kind"] != "Job" {
                assert!(
                    selects(&workload["spec"]["selector"], labels),
                    "{place}: its selector misses its own pods"
                );
            }
            for spread in seq(&pod["topologySpreadConstraints"]) {
                assert!(
                    selects(&spread["labelSelector"], labels),
                    "{place}: a topology spread that counts other pods"
                );
            }
            // Every long-running workload is behind a NetworkPolicy and scraped.
            if workload["kind"] == "Deployment" {
                assert!(
                    named(&objects, "NetworkPolicy")
                        .iter()
                        .any(|p| selects(&p["spec"]["podSelector"], labels)),
                    "{place}: no NetworkPolicy"
                );
                let by_pod_monitor = named(&objects, "PodMonitor")
                    .iter()
                    .any(|m| selects(&m["spec"]["selector"], labels));
                let by_service_monitor = named(&objects, "Service").iter().any(|svc| {
                    selects(&svc["spec"]["selector"], labels)
                        && named(&objects, "ServiceMonitor")
                            .iter()
                            .any(|m| selects(&m["spec"]["selector"], &svc["metadata"]["labels"]))
                });
                assert!(by_pod_monitor || by_service_monitor, "{place}: not scraped");
            }
        }
        let selected = |selector: &Value| -> Vec<&Value> {
            all_pods
                .iter()
                .filter(|(_, labels, _)| selects(selector, labels))
                .map(|(_, _, pod)| *pod)
                .collect()
        };
        for budget in named(&objects, "PodDisruptionBudget") {
            assert!(
                !selected(&budget["spec"]["selector"]).is_empty(),
                "{overlay} PodDisruptionBudget/{}: selects no pod",
                name_of(budget)
            );
        }
        for policy in named(&objects, "NetworkPolicy") {
            let place = format!("{overlay} NetworkPolicy/{}", name_of(policy));
            let targets = selected(&policy["spec"]["podSelector"]);
            assert!(!targets.is_empty(), "{place}: selects no pod");
            assert!(
                strings(&policy["spec"]["policyTypes"]).contains(&"Ingress".to_string()),
                "{place}"
            );
            for rule in seq(&policy["spec"]["ingress"]) {
                // No rule open to every peer, and each names ports the pods declare.
                assert!(
                    !seq(&rule["from"]).is_empty(),
                    "{place}: a rule open to all"
                );
                let ports = seq(&rule["ports"]);
                assert!(!ports.is_empty(), "{place}: a rule for every port");
                for port in ports {
                    for pod in &targets {
                        assert!(
                            names_a_port(&port["port"], &declared_ports(pod)),
                            "{place}: port {:?} is not declared",
                            port["port"]
                        );
                    }
                    // Probes come from the node, always let through: the health port
                    // needs no peer.
                    assert_ne!(port["port"].as_str(), Some("health"), "{place}");
                }
            }
        }
        for monitor in named(&objects, "PodMonitor") {
            let place = format!("{overlay} PodMonitor/{}", name_of(monitor));
            let targets = selected(&monitor["spec"]["selector"]);
            assert!(!targets.is_empty(), "{place}: selects no pod");
            for endpoint in seq(&monitor["spec"]["podMetricsEndpoints"]) {
                for pod in &targets {
                    assert!(
                        names_a_port(&endpoint["port"], &declared_ports(pod)),
                        "{place}"
                    );
                }
            }
        }
        for monitor in named(&objects, "ServiceMonitor") {
            let place = format!("{overlay} ServiceMonitor/{}", name_of(monitor));
            let services: Vec<&Value> = named(&objects, "Service")
                .into_iter()
                .filter(|s| selects(&monitor["spec"]["selector"], &s["metadata"]["labels"]))
                .collect();
            assert!(!services.is_empty(), "{place}: selects no Service");
            for endpoint in seq(&monitor["spec"]["endpoints"]) {
                for service in &services {
                    assert!(
                        seq(&service["spec"]["ports"])
                            .iter()
                            .any(|p| p["name"] == endpoint["port"]),
                        "{place}: {} has no port {:?}",
                        name_of(service),
                        endpoint["port"]
                    );
                }
            }
        }
    }
}

#[test]
fn quota_billing_may_reach_the_central_admin_listener() {
    let Some(docs) = manifests() else { return };
    let objects = of_overlay(&docs, "central");
    let all_pods = pods(&objects);
    let (_, billing_labels, _) = all_pods
        .iter()
        .find(|(w, _, _)| w["kind"] == "Deployment" && name_of(w) == "quota-billing")
        .expect("the quota-billing Deployment");
    let policy = named(&objects, "NetworkPolicy")
        .into_iter()
        .find(|p| name_of(p) == "quota-central")
        .expect("the central NetworkPolicy");
    let admitted = seq(&policy["spec"]["ingress"]).iter().any(|rule| {
        seq(&rule["ports"])
            .iter()
            .any(|p| p["port"] == "grpc-admin")
            && seq(&rule["from"]).iter().any(|peer| {
                peer["namespaceSelector"].is_null() && selects(&peer["podSelector"], billing_labels)
            })
    });
    assert!(admitted, "quota-billing is not let through to grpc-admin");
}

#[test]
fn catalog_config_map_is_deploy_catalog_toml_under_a_hashed_name() {
    let file = std::fs::read_to_string(deploy_dir().join("catalog.toml")).unwrap();
    // kustomize reads only files below the kustomization: the base keeps a copy.
    let copy = std::fs::read_to_string(deploy_dir().join("base/catalog.toml")).unwrap();
    assert_eq!(
        copy, file,
        "deploy/base/catalog.toml differs from deploy/catalog.toml"
    );
    let Some(docs) = manifests() else { return };
    let name = catalog_config_map(&docs);
    let hash = name
        .strip_prefix(&format!("{CATALOG_CONFIG_MAP}-"))
        .unwrap_or_else(|| panic!("{name}: not {CATALOG_CONFIG_MAP}-<hash>"));
    assert!(
        hash.len() >= 8 && hash.chars().all(|c| c.is_ascii_alphanumeric()),
        "{name}"
    );
    for (overlay, config_map) in docs.iter().filter(|(_, d)| name_of(d) == name) {
        let in_config_map = config_map["data"][CATALOG_KEY].as_str().expect("the key");
        assert_eq!(
            in_config_map, file,
            "{overlay}: the ConfigMap differs from the file"
        );
        Catalog::from_toml_str(in_config_map).expect("the catalog loads");
    }
}

/// Copies the kustomize tree of `deploy/` (base and overlays) below `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The names of the ConfigMaps the pod templates of `objects` mount.
fn mounted_config_maps(objects: &[Value]) -> BTreeSet<String> {
    let refs: Vec<&Value> = objects.iter().collect();
    pods(&refs)
        .into_iter()
        .flat_map(|(_, _, pod)| seq(&pod["volumes"]))
        .filter_map(|v| v["configMap"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_changed_catalog_renames_its_config_map_and_changes_the_pod_templates() {
    if !kubectl_available() {
        return;
    }
    let tree = tempfile::tempdir().unwrap();
    for part in ["base", "overlays"] {
        copy_tree(&deploy_dir().join(part), &tree.path().join(part));
    }
    for (overlay, _) in OVERLAYS {
        let dir = tree.path().join("overlays").join(overlay);
        let before = render_dir(&dir);
        let catalog = tree.path().join("base").join(CATALOG_KEY);
        let original = std::fs::read_to_string(&catalog).unwrap();
        std::fs::write(
            &catalog,
            original.replace("price_cents = 2500", "price_cents = 2600"),
        )
        .unwrap();
        let after = render_dir(&dir);
        std::fs::write(&catalog, original).unwrap();

        let (old, new) = (mounted_config_maps(&before), mounted_config_maps(&after));
        assert_eq!(old.len(), 1, "{overlay}: {old:?}");
        assert_ne!(old, new, "{overlay}: the pods would keep the old catalog");
        let new_name = new.into_iter().next().unwrap();
        let rendered = after
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && name_of(d) == new_name)
            .unwrap_or_else(|| panic!("{overlay}: {new_name} is not rendered"));
        assert!(rendered["data"][CATALOG_KEY]
            .as_str()
            .unwrap()
            .contains("price_cents = 2600"));
    }
}

/// The quota-billing containers (long-running and the migration Job's), with their workload.
fn billing_containers(docs: &[(String, Value)]) -> Vec<(&Value, &Value, &Value)> {
    docs.iter()
        .filter_map(|(_, d)| Some((d, pod_spec(d)?)))
        .flat_map(|(d, pod)| {
            seq(&pod["containers"])
                .iter()
                .filter(|c| {
                    c["image"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(BILLING_IMAGE)
                })
                .map(move |c| (d, pod, c))
        })
        .collect()
}

/// `quota-billing <subcommand> --help`.
fn billing_help(subcommand: &str) -> String {
    run_tool(Command::new(env!("CARGO_BIN_EXE_quota-billing")).args([subcommand, "--help"]))
}

#[test]
fn quota_billing_runs_with_its_own_flags_probes_and_mounts() {
    let Some(docs) = manifests() else { return };
    let containers = billing_containers(&docs);
    assert!(
        containers.iter().any(|(d, _, _)| d["kind"] == "Deployment"),
        "a Deployment"
    );
    assert!(
        containers.iter().any(|(d, _, _)| d["kind"] == "Job"),
        "a migration Job"
    );
    for (workload, pod, container) in containers {
        let place = format!(
            "{}/{}",
            workload["kind"].as_str().unwrap(),
            name_of(workload)
        );
        let args = strings(&container["args"]);
        let subcommand = args.first().expect("a subcommand").clone();
        let help = billing_help(&subcommand);
        let mut flags = std::collections::BTreeMap::new();
        for arg in &args[1..] {
            let (flag, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
            assert!(
                help.contains(&format!("{flag} <")),
                "{place}: {flag} is not a flag of quota-billing {subcommand}"
            );
            flags.insert(flag.to_string(), value.to_string());
        }
        for env in seq(&container["env"]) {
            let name = env["name"].as_str().unwrap();
            assert!(
                name == ADMIN_TOKEN_ENV || help.contains(&format!("[env: {name}=")),
                "{place}: {name} is not read by quota-billing {subcommand}"
            );
            assert!(
                env["valueFrom"]["secretKeyRef"]["name"].is_string(),
                "{place}: {name}"
            );
        }
        let mounts: Vec<String> = seq(&container["volumeMounts"])
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap().to_string())
            .collect();
        for flag in ["--ca-cert", "--client-cert", "--client-key"] {
            if let Some(path) = flags.get(flag) {
                let dir = Path::new(path)
                    .parent()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(
                    mounts.contains(&dir),
                    "{place}: {flag} {path} is in no volume"
                );
            }
        }
        if subcommand == "run" {
            let listen: SocketAddr = flags["--listen"].parse().expect("--listen HOST:PORT");
            assert!(
                !listen.ip().is_loopback(),
                "{place}: the kubelet cannot reach {listen}"
            );
            let declared = declared_ports(pod);
            for probe in ["readinessProbe", "livenessProbe"] {
                let probe = &container[probe];
                let port = [&probe["httpGet"]["port"], &probe["tcpSocket"]["port"]]
                    .into_iter()
                    .find(|p| !p.is_null())
                    .unwrap_or_else(|| panic!("{place}: no probe port"));
                assert!(
                    names_a_port(port, &declared),
                    "{place}: probe port {port:?}"
                );
                let number = declared
                    .iter()
                    .find(|p| names_a_port(port, &[p]))
                    .map(|p| p["containerPort"].as_u64().unwrap());
                assert_eq!(number, Some(u64::from(listen.port())), "{place}");
            }
            assert_eq!(
                container["readinessProbe"]["httpGet"]["path"].as_str(),
                Some("/healthz"),
                "{place}"
            );
        }
    }
}

#[tokio::test]
async fn the_migration_job_migrates_a_database_and_can_run_again() {
    let Some(docs) = manifests() else { return };
    let (_, _, container) = billing_containers(&docs)
        .into_iter()
        .find(|(d, _, _)| d["kind"] == "Job")
        .expect("the migration Job");
    let args = strings(&container["args"]);
    let env: Vec<String> = seq(&container["env"])
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(env, ["QUOTA_BILLING_POSTGRES"], "the Job's environment");
    let db = harness::postgres::TestDatabase::create().await;
    for _ in 0..2 {
        run_tool(
            Command::new(env!("CARGO_BIN_EXE_quota-billing"))
                .args(&args)
                .env("QUOTA_BILLING_POSTGRES", db.url())
                .env_remove("QUOTA_BILLING_POSTGRES_CA"),
        );
    }
    let client = db.client().await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_name IN ('usage_events', 'cycle_usage', 'dead_letters')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 3, "the schema's tables");
}

/// The PrometheusRule's groups as a Prometheus rules file.
fn rules_file(docs: &[(String, Value)]) -> String {
    let rule = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut file = serde_norway::Mapping::new();
    file.insert("groups".into(), rule["spec"]["groups"].clone());
    serde_norway::to_string(&file).unwrap()
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(docs) = manifests() else { return };
    if !promtool_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules_file(&docs)).unwrap();
    let tests = "prometheus-rule.test.yaml";
    std::fs::copy(
        deploy_dir().join("base").join(tests),
        dir.path().join(tests),
    )
    .unwrap();
    let checked = run_tool(
        Command::new("promtool")
            .args(["check", "rules", "rules.yaml"])
            .current_dir(dir.path()),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_tool(
        Command::new("promtool")
            .args(["test", "rules", tests])
            .current_dir(dir.path()),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a unit test.
    let test_text = std::fs::read_to_string(dir.path().join(tests)).unwrap();
    let rules: Value = serde_norway::from_str(&rules_file(&docs)).unwrap();
    for group in seq(&rules["groups"]) {
        for rule in seq(&group["rules"]) {
            let alert = rule["alert"].as_str().expect("alerting rules only");
            assert!(
                rule["labels"]["severity"].is_string()
                    && rule["annotations"]["summary"].is_string(),
                "{alert}: severity and summary"
            );
            let tested = test_text.contains(&format!("alertname: {alert}\n"));
            // Alerts on other exporters' metrics alone are checked by promtool check only.
            let external_only = metric_names(rule["expr"].as_str().unwrap())
                .iter()
                .all(|m| EXTERNAL_METRICS.contains(&m.as_str()));
            assert!(tested || external_only, "{alert} has no promtool unit test");
        }
    }
}

/// Metrics of other exporters the alerts and dashboard use: Prometheus' own, kube-state-metrics,
/// redis_exporter, and the process metrics the metrics-process crate exports.
const EXTERNAL_METRICS: &[&str] = &[
    "up",
    "kube_pod_container_status_ready",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_last_terminated_reason",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

/// quota-billing's count of gaps in the event sequence, exported by the consumer's gap check,
/// which lands apart from these manifests (issue 19).
const EXPORTED_ELSEWHERE: &[&str] = &["quota_billing_sequence_gaps_total"];

/// PromQL words that are not metric names.
const PROMQL_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names in a PromQL expression (approximately: what is left once label matchers,
/// label lists, ranges, strings, functions and keywords are taken out).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let mut depth_braces = 0;
    let mut depth_brackets = 0;
    let mut in_string = None;
    for c in expr.chars() {
        match (in_string, c) {
            (Some(q), c) if c == q => in_string = None,
            (Some(_), _) => {}
            (None, '"') | (None, '\'') => in_string = Some(c),
            (None, '{') => depth_braces += 1,
            (None, '}') => depth_braces -= 1,
            (None, '[') => depth_brackets += 1,
            (None, ']') => depth_brackets -= 1,
            (None, c) if depth_braces == 0 && depth_brackets == 0 => cleaned.push(c),
            _ => {}
        }
    }
    // Words with the character after each; label lists after by, without, on, ignoring and
    // group_* are skipped to their closing parenthesis.
    let mut names = BTreeSet::new();
    let tokens: Vec<(String, char)> = {
        let mut tokens = Vec::new();
        let mut current = String::new();
        for c in cleaned.chars().chain([' ']) {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$' {
                current.push(c);
            } else {
                if !current.is_empty() {
                    tokens.push((std::mem::take(&mut current), c));
                }
                if !c.is_whitespace() {
                    tokens.push((String::new(), c));
                }
            }
        }
        tokens
    };
    let mut skip_list = false;
    for (word, next) in &tokens {
        if word.is_empty() {
            if *next == ')' {
                skip_list = false;
            }
            continue;
        }
        if skip_list {
            continue;
        }
        let lower = word.to_ascii_lowercase();
        let label_list = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        if label_list.contains(&lower.as_str()) {
            skip_list = true;
            continue;
        }
        let is_function = *next == '(';
        let is_number = word.chars().next().is_some_and(|c| c.is_ascii_digit());
        let is_variable = word.starts_with('$');
        if !(is_function || is_number || is_variable || PROMQL_WORDS.contains(&lower.as_str())) {
            names.insert(word.clone());
        }
    }
    names
}

/// Every string literal `"quota_…"` in the crate's sources.
fn exported_names() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, names);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("\"quota_").skip(1) {
                    if let Some(rest) = piece.split('"').next() {
                        names.insert(format!("quota_{rest}"));
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut names,
    );
    names
}

/// Whether the code exports `name` (histograms as `_bucket`, `_count`, `_sum` too).
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    exported.contains(name)
        || exported.contains(base)
        || EXTERNAL_METRICS.contains(&name)
        || EXPORTED_ELSEWHERE.contains(&name)
}

#[test]
fn metric_name_extraction_finds_names_not_labels_or_functions() {
    let names = metric_names(
        "max by (namespace, pod) (increase(a_total{kind=\"oom\", x=~'y|z'}[5m])) > 0 \
         and on (pod) histogram_quantile(0.99, sum by (le) (rate(b_bucket[$__rate_interval]))) \
         / (c > 0)",
    );
    let expected: BTreeSet<String> = ["a_total", "b_bucket", "c"].map(String::from).into();
    assert_eq!(names, expected);
}

#[test]
fn alerts_and_dashboard_name_only_metrics_the_code_exports() {
    let exported = exported_names();
    for name in [
        "quota_store_errors_total",
        "quota_build_info",
        "quota_billing_lag_seconds",
    ] {
        assert!(
            exported.contains(name),
            "{name} not found in src/: {exported:?}"
        );
    }
    let mut expressions = Vec::new();
    let rule_text =
        std::fs::read_to_string(deploy_dir().join("base/prometheus-rule.yaml")).unwrap();
    let rule: Value = serde_norway::from_str(&rule_text).unwrap();
    for group in seq(&rule["spec"]["groups"]) {
        for r in seq(&group["rules"]) {
            expressions.push((
                format!("alert {}", r["alert"].as_str().unwrap()),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push((
                format!("panel {}", panel["title"]),
                target["expr"].as_str().expect("an expression").to_string(),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (place, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr}");
        for name in names {
            assert!(
                is_exported(&name, &exported),
                "{place}: {name} is not exported"
            );
            seen.insert(name);
        }
    }
    // What the dashboard must show.
    for wanted in [
        "quota_rpc_requests_total",
        "quota_rpc_duration_seconds_bucket",
        "quota_reserve_denials_total",
        "quota_store_errors_total",
        "quota_events_group_lag",
        "quota_events_dropped_unacked_total",
        "quota_sweeper_expired_total",
        "quota_billing_lag_seconds",
    ] {
        assert!(seen.contains(wanted), "nothing shows {wanted}");
    }
}

/// The Grafana dashboard JSON.
fn dashboard() -> serde_json::Value {
    let path = deploy_dir().join("base/dashboards/quota-sidecar.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_delivered_as_a_config_map() {
    let dashboard = dashboard();
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let panels = dashboard["panels"].as_array().unwrap();
    let graphs: Vec<_> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(graphs.len() >= 10, "{} panels", graphs.len());
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for graph in graphs {
        assert_eq!(
            graph["datasource"]["uid"], "${datasource}",
            "{}",
            graph["title"]
        );
        assert!(
            !graph["targets"].as_array().unwrap().is_empty(),
            "{}",
            graph["title"]
        );
        for target in graph["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for variable in expr.split('$').skip(1) {
                let name: String = variable
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || variables.contains(&name.as_str()),
                    "{}: ${name} is no variable",
                    graph["title"]
                );
            }
        }
    }
    let Some(docs) = manifests() else { return };
    let file =
        std::fs::read_to_string(deploy_dir().join("base/dashboards/quota-sidecar.json")).unwrap();
    let config_map = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["quota-sidecar.json"].is_string())
        .expect("the dashboard ConfigMap");
    assert_eq!(
        config_map["data"]["quota-sidecar.json"].as_str(),
        Some(file.as_str())
    );
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
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

/// The stages of a Dockerfile: (name after `AS`, its lines).
fn stages(text: &str) -> Vec<(String, Vec<&str>)> {
    let mut stages: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if let Some(from) = line.strip_prefix("FROM ") {
            let name = from.split(" AS ").nth(1).unwrap_or_default().trim();
            stages.push((name.to_string(), Vec::new()));
        } else if let Some((_, lines)) = stages.last_mut() {
            lines.push(line);
        }
    }
    stages
}

#[test]
fn dockerfile_builds_both_images_non_root_with_the_sidecar_by_default() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let stages = stages(&text);
    assert!(stages.len() >= 3, "a build stage and two runtime stages");
    let build = stages
        .iter()
        .find(|(name, _)| name == "build")
        .expect("a build stage");
    let build_text = build.1.join("\n");
    for bin in [
        "--bin quota-sidecar",
        "--bin quotactl",
        "--bin quota-billing",
    ] {
        assert!(build_text.contains(bin), "builds {bin}");
    }
    // build.rs reads the revision from the environment: the context has no .git.
    assert!(build_text.contains("ARG QUOTA_GIT_REVISION"));
    assert!(build_text.contains("ENV QUOTA_GIT_REVISION="));
    for bin in ["quotactl", "quota-billing"] {
        assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("src/bin/{bin}.rs"))
            .exists());
    }
    // `docker build` without --target builds the last stage: the sidecar.
    let (last, _) = stages.last().unwrap();
    assert_eq!(last, SIDECAR_IMAGE, "the default target");
    for (target, entrypoint) in [
        (
            SIDECAR_IMAGE,
            "ENTRYPOINT [\"/usr/local/bin/quota-sidecar\"]",
        ),
        (
            BILLING_IMAGE,
            "ENTRYPOINT [\"/usr/local/bin/quota-billing\"]",
        ),
    ] {
        let (_, lines) = stages
            .iter()
            .find(|(name, _)| name == target)
            .unwrap_or_else(|| panic!("no stage {target}"));
        let user = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{target}: no USER line"));
        let uid = user.split(':').next().unwrap().trim();
        assert!(uid != "root" && uid != "0", "{target} runs as {user}");
        assert!(lines.contains(&entrypoint), "{target}: {entrypoint}");
    }
    // The catalog baked into the sidecar image is the one the binary compiles in.
    assert!(text.contains("COPY deploy/catalog.toml /etc/quota-sidecar/catalog.toml"));
}
