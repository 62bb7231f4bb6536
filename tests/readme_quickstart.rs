//! The README's quickstart, run as written: the shell blocks marked `<!-- quickstart: run -->`
//! (and `<!-- quickstart: run with postgres -->`, when PostgreSQL is there), in order, in one
//! `bash` with `set -euo pipefail`, from the repository root, against a fresh Redis of its own.
//! It must exit 0 and leave no process running; with the billing step, the statement billing
//! wrote must match what the ledger charged.
//!
//! What the test changes, and only this:
//! - the line `cargo build --release --bins` is dropped and `target/release/` names the
//!   directory of the binaries this test was built with (cargo builds them for it; a second,
//!   release build would take minutes);
//! - the listeners and targets are set through the environment the binaries read
//!   (`QUOTA_LISTEN`, `QUOTA_ADMIN_LISTEN`, `QUOTA_METRICS_LISTEN`, `QUOTA_TARGET`,
//!   `QUOTA_ADMIN_TARGET`, `QUOTA_SIDECAR_URL`, `QUOTA_BILLING_LISTEN`) to free loopback
//!   ports, so it never meets a sidecar already running on the defaults; the blocks must
//!   therefore name no address of their own (checked);
//! - `QUOTA_STORE` names a `redis-server` this test starts, so that the ledger outlives the
//!   sidecar the last block stops and can be compared with billing's statement;
//! - the billing step's role and database `billing` get a name of their own, dropped after.
//!
//! The billing step runs when PostgreSQL on 127.0.0.1:5432 accepts `postgres` without a
//! password, and under `CI=true` (where `.ci/run` sets it up) it must.

mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::free_port;
use harness::process::output_within;
use harness::process_group::output_of_group_within;

/// The whole quickstart; installing the Python client's dependencies from PyPI dominates on a
/// fresh machine (the rest takes a few seconds).
const QUICKSTART_LIMIT: Duration = Duration::from_secs(600);
/// One psql call on loopback.
const PSQL_LIMIT: Duration = Duration::from_secs(30);

const MARK_RUN: &str = "<!-- quickstart: run -->";
const MARK_RUN_WITH_POSTGRES: &str = "<!-- quickstart: run with postgres -->";

/// A shell block of the quickstart, in README order.
struct Block {
    needs_postgres: bool,
    text: String,
}

/// The ```sh blocks that directly follow a quickstart marker.
fn quickstart_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let needs_postgres = match line.trim() {
            MARK_RUN => false,
            MARK_RUN_WITH_POSTGRES => true,
            _ => continue,
        };
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "a quickstart marker must be followed by a ```sh block"
        );
        let mut text = String::new();
        loop {
            let line = lines.next().expect("the quickstart block ends with ```");
            if line.trim() == "```" {
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        blocks.push(Block {
            needs_postgres,
            text,
        });
    }
    blocks
}

/// `text` with `from` replaced, which must occur in it.
fn replace_required(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the quickstart no longer has `{from}`");
    text.replace(from, to)
}

fn psql(sql: &[&str]) -> std::process::Output {
    let mut command = Command::new("psql");
    command.args(["-h", "127.0.0.1", "-U", "postgres", "-w", "-X", "-Atq"]);
    for statement in sql {
        command.args(["-c", statement]);
    }
    output_within(&mut command, PSQL_LIMIT)
}

/// Whether the billing step can run here; under CI it must.
fn postgres_trusts_loopback() -> bool {
    let available = Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && psql(&["SELECT 1"]).status.success();
    assert!(
        available || std::env::var("CI").as_deref() != Ok("true"),
        "the quickstart's billing step needs PostgreSQL on 127.0.0.1:5432 accepting `postgres` \
         without a password; .ci/run sets it up"
    );
    available
}

/// Billing's statement of `acct-1` (in the database of `role`) is complete and bills what the
/// ledger in the Redis at `redis_url` charged: Σ net allowance and credit units of its usage
/// lines equal the account's lifetime charges (the quickstart stays within one cycle).
fn statement_matches_the_ledger(redis_url: &str, role: &str) {
    let postgres = format!("postgres://{role}:change-me@127.0.0.1:5432/{role}");
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_quota-billing"))
            .args(["statement", "--postgres", &postgres, "acct-1", "--json"])
            .env_remove("QUOTA_BILLING_POSTGRES")
            .env_remove("QUOTA_CATALOG"),
        PSQL_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "statement: {out:?}");
    let statement: serde_json::Value = serde_json::from_str(&stdout).expect("statement JSON");
    assert_eq!(statement["complete"], true, "{statement}");
    let sum = |field: &str| -> i64 {
        statement["usage"]
            .as_array()
            .expect("usage lines")
            .iter()
            .map(|u| u[field].as_i64().expect(field))
            .sum()
    };
    let billed = (sum("net_allowance_units"), sum("net_credit_units"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let charged = runtime.block_on(async {
        let catalog = std::sync::Arc::new(quota_sidecar::ledger::Catalog::builtin());
        let store = quota_sidecar::store::redis::RedisStore::connect(
            redis_url,
            catalog,
            Duration::from_secs(2),
        )
        .await
        .expect("connect to the quickstart's Redis");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        use quota_sidecar::store::Store;
        store
            .account("acct-1", now_ms)
            .await
            .expect("the ledger's account")
            .lifetime_charged
    });
    assert!(charged.allowance_units + charged.credit_units > 0);
    assert_eq!(
        billed,
        (charged.allowance_units as i64, charged.credit_units as i64),
        "billing's statement against the ledger: {statement}"
    );
}

/// The billing step's role and database, dropped (database first) when the test ends.
struct BillingRole {
    name: String,
}

impl Drop for BillingRole {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = psql(&[
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            &format!("DROP ROLE IF EXISTS {name}"),
        ]);
    }
}

#[test]
fn the_quickstart_runs_as_written_and_ends_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let blocks = quickstart_blocks(&readme);
    assert!(
        blocks.iter().filter(|b| !b.needs_postgres).count() >= 2
            && blocks.iter().any(|b| b.needs_postgres),
        "README.md marks its quickstart blocks with `{MARK_RUN}` and the billing step with \
         `{MARK_RUN_WITH_POSTGRES}`"
    );
    for block in &blocks {
        for default_port in ["50051", "50052", "9464", "9465"] {
            assert!(
                !block.text.contains(default_port),
                "a quickstart block names port {default_port}; the binaries' defaults (and \
                 the environment this test sets) must do:\n{}",
                block.text
            );
        }
    }

    let with_postgres = postgres_trusts_loopback();
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let role = BillingRole {
        name: format!("quickstart_{}_{ms}", std::process::id()),
    };
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_quota-sidecar"))
        .parent()
        .expect("the binaries' directory")
        .display()
        .to_string();

    let mut script = String::from("set -euo pipefail\n");
    for block in &blocks {
        if block.needs_postgres && !with_postgres {
            eprintln!("skipping the quickstart's billing step: no PostgreSQL trusting loopback");
            continue;
        }
        let mut text = block.text.clone();
        if block.needs_postgres {
            let name = &role.name;
            text = replace_required(
                &text,
                "CREATE ROLE billing LOGIN",
                &format!("CREATE ROLE {name} LOGIN"),
            );
            text = replace_required(
                &text,
                "CREATE DATABASE billing OWNER billing",
                &format!("CREATE DATABASE {name} OWNER {name}"),
            );
            text = replace_required(
                &text,
                "postgres://billing:change-me@127.0.0.1:5432/billing",
                &format!("postgres://{name}:change-me@127.0.0.1:5432/{name}"),
            );
        }
        script.push_str(&text);
    }
    let script = replace_required(&script, "cargo build --release --bins\n", "");
    let script = replace_required(&script, "target/release/", &format!("{bin_dir}/"));

    let (worker, admin, metrics, billing) = (free_port(), free_port(), free_port(), free_port());
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&script).current_dir(root);
    // Nothing of the caller's configuration: the quickstart runs on the defaults.
    for (key, _) in std::env::vars() {
        if key.starts_with("QUOTA_") || key.starts_with("OTEL_") {
            bash.env_remove(key);
        }
    }
    let redis = harness::RedisServer::start();
    bash.env("QUOTA_STORE", redis.url())
        .env("QUOTA_LISTEN", format!("127.0.0.1:{worker}"))
        .env("QUOTA_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("QUOTA_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
        .env("QUOTA_TARGET", format!("http://127.0.0.1:{worker}"))
        .env("QUOTA_ADMIN_TARGET", format!("http://127.0.0.1:{admin}"))
        .env("QUOTA_SIDECAR_URL", format!("http://127.0.0.1:{worker}"))
        .env("QUOTA_BILLING_LISTEN", format!("127.0.0.1:{billing}"));

    let output = output_of_group_within(&mut bash, QUICKSTART_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the quickstart failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // Shown with --nocapture.
    println!("{stdout}");
    // It ends clean: the last account shown (after the Python worker) has no open hold.
    let last_open_holds = stdout.lines().rfind(|line| line.starts_with("open holds "));
    assert_eq!(
        last_open_holds,
        Some("open holds 0"),
        "the quickstart leaves holds open:\n{stdout}"
    );
    if with_postgres {
        assert!(
            stdout.contains("account acct-1  cycle"),
            "the billing step printed no statement for acct-1:\n{stdout}\n{stderr}"
        );
        statement_matches_the_ledger(&redis.url(), &role.name);
    }
    // The Python worker's hold was settled for the first frame's cost (2 units on standard).
    assert!(
        stdout.contains("job-7 charged 2 units"),
        "the Python worker did not settle its hold:\n{stdout}\n{stderr}"
    );
}
