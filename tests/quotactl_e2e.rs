//! The real `quotactl` against the real sidecar: every command, tables and `--json`, one-line
//! errors with exit status 1; and the admin listener's token check seen from a plain gRPC
//! client.

mod harness;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use harness::sidecar::{channel, wait_serving, Sidecar};
use harness::RedisServer;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::pb::{
    self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient,
    usage_events_client::UsageEventsClient,
};

const TOKEN: &str = "quotactl-e2e-token";
/// quotactl bounds its own calls (3 s connect, 10 s per call); this bounds the process.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// What one quotactl run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "{self:?}");
        assert!(self.stderr.is_empty(), "{self:?}");
        self.stdout
    }

    /// Asserts success and parses stdout as one JSON document.
    fn json(self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// Asserts exit status `exit` (as `quotactl --help` lists them) with exactly one
    /// `quotactl: ...` line on stderr and nothing on stdout; returns that line.
    fn failure(self, exit: i32) -> String {
        assert_eq!(self.code, Some(exit), "{self:?}");
        assert!(self.stdout.is_empty(), "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {self:?}");
        let line = lines[0];
        assert!(line.starts_with("quotactl: "), "{line}");
        // Operators get a sentence, not a debug dump of the status.
        for dump in ["Status {", "metadata", "MetadataMap", "source:", "{ code"] {
            assert!(!line.contains(dump), "{line}");
        }
        line.to_string()
    }
}

/// Runs quotactl against `worker` and `admin` (through `QUOTA_TARGET` and
/// `QUOTA_ADMIN_TARGET`, as an operator's shell would), with `token` as `QUOTA_ADMIN_TOKEN`.
fn quotactl(worker: SocketAddr, admin: SocketAddr, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quotactl"));
    command
        .args(args)
        .env("QUOTA_TARGET", format!("http://{worker}"))
        .env("QUOTA_ADMIN_TARGET", format!("http://{admin}"))
        .env_remove("QUOTA_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("QUOTA_ADMIN_TOKEN", token);
    }
    let mut child = command.spawn().expect("run quotactl");
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for quotactl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("quotactl {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A sidecar with its admin listener, and quotactl pointed at it.
struct Ctl {
    sidecar: Sidecar,
}

impl Ctl {
    async fn start(store: &str) -> Ctl {
        let sidecar = Sidecar::start(store, Some(TOKEN));
        wait_serving(sidecar.worker).await;
        Ctl { sidecar }
    }

    /// quotactl with the right token.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(Some(TOKEN), args)
    }

    fn run_with(&self, token: Option<&str>, args: &[&str]) -> Run {
        quotactl(self.sidecar.worker, self.sidecar.admin(), token, args)
    }
}

/// An RFC 3339 time `days` from now, whole seconds.
fn days_from_now(days: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    at.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The table row (a line of stdout) that starts with `first_cell`, split into cells.
fn row<'a>(table: &'a str, first_cell: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first_cell))
        .unwrap_or_else(|| panic!("no row {first_cell} in:\n{table}"))
}

#[tokio::test]
async fn every_command_in_tables_and_json() {
    let ctl = Ctl::start("memory").await;
    let a = "acct-ctl";

    // set-plan: started, then a replay of the same request id changes nothing.
    let set = ctl
        .run(&[
            "set-plan",
            a,
            "hollywood",
            "--request-id",
            "plan-1",
            "--json",
        ])
        .json();
    assert_eq!(set["change"], "started", "{set}");
    assert_eq!(set["replayed"], false);
    assert_eq!(set["balance"]["plan"], "hollywood");
    assert_eq!(set["balance"]["allowance_total"], 5_000);
    assert!(set["balance"]["cycle_start"].is_string(), "{set}");
    let replay = ctl
        .run(&["set-plan", a, "hollywood", "--request-id", "plan-1"])
        .ok();
    assert!(
        replay.starts_with("started (replayed: nothing changed)"),
        "{replay}"
    );

    // grant: an expiring promotional grant and a purchased one (the default source).
    let expires = days_from_now(30);
    let promo = ctl
        .run(&[
            "grant",
            a,
            "promo-1",
            "300",
            "--source",
            "promotional",
            "--expires",
            &expires,
            "--json",
        ])
        .json();
    assert_eq!(promo["grant"]["grant_id"], "promo-1");
    assert_eq!(promo["grant"]["source"], "promotional");
    assert_eq!(promo["grant"]["units_granted"], 300);
    assert_eq!(promo["grant"]["expires_at"], expires.as_str());
    assert_eq!(promo["balance"]["credits_available"], 300);
    let pack = ctl.run(&["grant", a, "pack-1", "200"]).ok();
    assert!(pack.starts_with("grant pack-1: 200 units\n"), "{pack}");
    assert!(pack.contains("credits    500 available, 0 held"), "{pack}");

    // balance: a table and JSON from the worker listener.
    let table = ctl.run(&["balance", a]).ok();
    assert!(table.contains("plan       hollywood\n"), "{table}");
    assert!(
        table.contains("allowance  5000 available = 5000 total - 0 used - 0 held"),
        "{table}"
    );
    let b = ctl.run(&["--json", "balance", a]).json();
    assert_eq!(
        (
            &b["allowance_available"],
            &b["credits_available"],
            &b["open_holds"]
        ),
        (&Value::from(5_000), &Value::from(500), &Value::from(0))
    );

    // reserve: a 5 s video on `pro` costs 5 x 20 units, from the allowance.
    let reserved = ctl
        .run(&[
            "reserve", a, "gen-1", "video", "5", "--model", "pro", "--json",
        ])
        .json();
    let hold = &reserved["hold"];
    assert_eq!(
        (
            &hold["generation_id"],
            &hold["kind"],
            &hold["model"],
            &hold["state"]
        ),
        (
            &Value::from("gen-1"),
            &Value::from("video"),
            &Value::from("pro"),
            &Value::from("held")
        )
    );
    assert_eq!(
        (
            &hold["cost_units"],
            &hold["from_allowance"],
            &hold["from_credits"]
        ),
        (&Value::from(100), &Value::from(100), &Value::from(0))
    );
    assert_eq!(reserved["balance"]["allowance_held"], 100);

    // account: grants in burn order (expiring first) and the open hold.
    let table = ctl.run(&["account", a]).ok();
    assert_eq!(
        row(&table, "promo-1")[..5],
        ["promo-1", "promotional", "300", "300", "0"],
        "{table}"
    );
    assert_eq!(
        row(&table, "pack-1")[..6],
        ["pack-1", "purchased", "200", "200", "0", "never"]
    );
    assert!(
        table.find("promo-1").unwrap() < table.find("pack-1").unwrap(),
        "burn order: {table}"
    );
    assert_eq!(
        row(&table, "gen-1")[..7],
        ["gen-1", "video", "pro", "5", "100", "100", "0"],
        "{table}"
    );
    let account = ctl.run(&["account", a, "--json"]).json();
    assert_eq!(account["balance"]["open_holds"], 1);
    let grants: Vec<&str> = account["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    assert_eq!(grants, ["promo-1", "pack-1"]);
    assert_eq!(account["holds"].as_array().unwrap().len(), 1);
    assert_eq!(account["holds"][0]["generation_id"], "gen-1");
    assert_eq!(account["holds"][0]["cost_units"], 100);

    // settle for less: 3 of 5 seconds are charged, the rest goes back; a retry replays.
    let settled = ctl
        .run(&["settle", a, "gen-1", "--actual-quantity", "3", "--json"])
        .json();
    assert_eq!(
        (&settled["charged_units"], &settled["returned_units"]),
        (&Value::from(60), &Value::from(40))
    );
    assert_eq!(settled["hold"]["state"], "settled");
    assert_eq!(settled["replayed"], false);
    let again = ctl.run(&["settle", a, "gen-1"]).ok();
    assert!(
        again.starts_with("charged 60 units, returned 40 (replayed: nothing changed)"),
        "{again}"
    );

    // release: everything goes back, whatever the reason.
    let table = ctl
        .run(&["reserve", a, "gen-2", "character-image", "2"])
        .ok();
    assert!(
        table.starts_with("hold gen-2 (held): 8 units = 8 allowance + 0 credits"),
        "{table}"
    );
    let released = ctl
        .run(&[
            "release",
            a,
            "gen-2",
            "--reason",
            "content-filtered",
            "--json",
        ])
        .json();
    assert_eq!(released["returned_units"], 8);
    assert_eq!(released["hold"]["state"], "released");
    let again = ctl.run(&["release", a, "gen-2"]).ok();
    assert!(
        again.starts_with("returned 8 units (replayed: nothing changed)"),
        "{again}"
    );

    // revoke: takes what is left of the grant.
    let revoked = ctl.run(&["revoke", a, "pack-1", "--json"]).json();
    assert_eq!(revoked["revoked_units"], 200);
    assert_eq!(revoked["balance"]["credits_available"], 300);
    let table = ctl.run(&["revoke", a, "promo-1"]).ok();
    assert!(table.starts_with("revoked 300 units\n"), "{table}");

    let b = ctl.run(&["balance", a, "--json"]).json();
    assert_eq!(
        (
            &b["allowance_used"],
            &b["allowance_held"],
            &b["allowance_available"],
            &b["credits_available"],
            &b["open_holds"]
        ),
        (
            &Value::from(60),
            &Value::from(0),
            &Value::from(4_940),
            &Value::from(0),
            &Value::from(0)
        )
    );
}

#[tokio::test]
async fn quote_answers_and_denials_exit_0_and_change_nothing() {
    let ctl = Ctl::start("memory").await;
    let a = "acct-quote";
    ctl.run(&["set-plan", a, "microbudget"]).ok();
    ctl.run(&["grant", a, "pack-1", "500"]).ok();

    // Allowed: a 5 s video costs 50 units, all from the allowance.
    let q = ctl.run(&["quote", a, "video", "5", "--json"]).json();
    assert_eq!(
        (
            &q["cost_units"],
            &q["from_allowance"],
            &q["from_credits"],
            &q["allowed"],
            &q["denial"],
            &q["denial_message"]
        ),
        (
            &Value::from(50),
            &Value::from(50),
            &Value::from(0),
            &Value::from(true),
            &Value::Null,
            &Value::from("")
        ),
        "{q}"
    );
    assert_eq!(q["balance"]["allowance_available"], 1_000);
    let table = ctl.run(&["quote", a, "character-image", "2"]).ok();
    assert!(
        table.starts_with("allowed: 8 units = 8 allowance + 0 credits\n\naccount    acct-quote\n"),
        "{table}"
    );

    // Denied by the plan: an answer, not a failure, with the message Reserve would give.
    let denied = ctl
        .run(&["quote", a, "video", "5", "--model", "pro", "--json"])
        .json();
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["denial"], "model_not_in_plan", "{denied}");
    assert_eq!(denied["cost_units"], 100, "{denied}");
    let reserve = ctl
        .run(&["reserve", a, "gen-pro", "video", "5", "--model", "pro"])
        .failure(3);
    assert_eq!(
        reserve,
        format!(
            "quotactl: not allowed by the plan: {} [PLAN_DENIED]",
            denied["denial_message"].as_str().unwrap()
        )
    );
    let table = ctl.run(&["quote", a, "video", "6"]).ok();
    assert!(table.starts_with("denied (video_too_long): "), "{table}");

    // Short of funds: the split says how far the funds go.
    let table = ctl
        .run(&["quote", "acct-quote-empty", "character-image", "1"])
        .ok();
    assert!(
        table.starts_with(
            "denied (insufficient_funds): not enough funds: generation costs 4 units, account \
             has 0 available\ncost 4 units; the account covers 0 from the allowance + 0 from \
             credits\n"
        ),
        "{table}"
    );

    // No quote held or charged anything.
    let b = ctl.run(&["balance", a, "--json"]).json();
    assert_eq!(
        (
            &b["allowance_available"],
            &b["credits_available"],
            &b["open_holds"]
        ),
        (&Value::from(1_000), &Value::from(500), &Value::from(0))
    );

    // A call that fails is still a failure.
    let line = ctl.run(&["quote", "acct{1}", "video", "5"]).failure(2);
    assert!(
        line.starts_with("quotactl: invalid request: account_id: "),
        "{line}"
    );
}

#[tokio::test]
async fn reserve_batch_holds_all_or_none() {
    let ctl = Ctl::start("memory").await;
    let a = "acct-batch";
    ctl.run(&["set-plan", a, "microbudget"]).ok();

    // Two items, one with a `:` in its generation id and an explicit model.
    let held = ctl
        .run(&[
            "reserve-batch",
            a,
            "--item",
            "shot-1:video:5",
            "--item",
            "scene:2:character-image:2:standard",
            "--ttl-seconds",
            "600",
            "--json",
        ])
        .json();
    assert_eq!(held["replayed"], false, "{held}");
    let holds = held["holds"].as_array().unwrap();
    let summary: Vec<(&str, &str, u64, &str)> = holds
        .iter()
        .map(|h| {
            (
                h["generation_id"].as_str().unwrap(),
                h["kind"].as_str().unwrap(),
                h["cost_units"].as_u64().unwrap(),
                h["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("shot-1", "video", 50, "held"),
            ("scene:2", "character_image", 8, "held")
        ]
    );
    assert_eq!(held["balance"]["allowance_held"], 58);
    assert_eq!(held["balance"]["open_holds"], 2);

    // The same batch again replays it.
    let table = ctl
        .run(&[
            "reserve-batch",
            a,
            "--item",
            "shot-1:video:5",
            "--item",
            "scene:2:character-image:2:standard",
        ])
        .ok();
    assert!(
        table.starts_with(
            "held 2 generations: 58 units = 58 allowance + 0 credits (replayed: nothing changed)\n"
        ),
        "{table}"
    );
    assert_eq!(
        row(&table, "scene:2")[..7],
        ["scene:2", "character_image", "standard", "2", "8", "8", "0"],
        "{table}"
    );

    // One item the plan does not allow: the batch fails naming it, and holds nothing.
    ctl.run(&["settle", a, "shot-1"]).ok();
    ctl.run(&["release", a, "scene:2"]).ok();
    let line = ctl
        .run(&[
            "reserve-batch",
            a,
            "--item",
            "x1:first-frame:1",
            "--item",
            "x2:video:5:pro",
        ])
        .failure(3);
    assert!(
        line.starts_with("quotactl: not allowed by the plan: item 1 (generation `x2`): "),
        "{line}"
    );
    let b = ctl.run(&["balance", a, "--json"]).json();
    assert_eq!(
        (&b["open_holds"], &b["allowance_held"]),
        (&Value::from(0), &Value::from(0))
    );
    let line = ctl.run(&["settle", a, "x1"]).failure(4);
    assert!(line.starts_with("quotactl: not found: "), "{line}");

    // An item that is not GEN:KIND:QUANTITY[:MODEL] never reaches the sidecar.
    let run = ctl.run(&["reserve-batch", a, "--item", "x3:sound:1"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("`sound` is not a kind"), "{run:?}");
}

#[tokio::test]
async fn refunds_go_back_to_the_allowance_and_as_credits() {
    let ctl = Ctl::start("memory").await;

    // Charged from the allowance in the current cycle: it goes back to the allowance.
    let a = "acct-refund";
    ctl.run(&["set-plan", a, "microbudget"]).ok();
    ctl.run(&["reserve", a, "gen-1", "video", "5"]).ok();
    ctl.run(&["settle", a, "gen-1"]).ok();
    let r = ctl
        .run(&[
            "refund",
            a,
            "gen-1",
            "r1",
            "--units",
            "20",
            "--reason",
            "artifacts in frames 3-5",
            "--json",
        ])
        .json();
    assert_eq!(
        (
            &r["refunded_units"],
            &r["to_allowance"],
            &r["to_credits"],
            &r["grant_id"],
            &r["replayed"]
        ),
        (
            &Value::from(20),
            &Value::from(20),
            &Value::from(0),
            &Value::from(""),
            &Value::from(false)
        ),
        "{r}"
    );
    assert_eq!(r["balance"]["allowance_used"], 30, "{r}");

    // Charged from credits: it comes back as a promotional grant named after the refund.
    let c = "acct-refund-credits";
    // The grant's name is a digest of the generation, its hold's creation time and the refund.
    let grant_of = |table: &str| -> String {
        let at = table.find("(grant refund:").expect("a refund grant") + "(grant ".len();
        table[at..at + "refund:".len() + 40].to_string()
    };
    ctl.run(&["grant", c, "pack-1", "100"]).ok();
    ctl.run(&["reserve", c, "gen-1", "video", "5"]).ok();
    ctl.run(&["settle", c, "gen-1"]).ok();
    let table = ctl.run(&["refund", c, "gen-1", "r1", "--units", "20"]).ok();
    let r1_grant = grant_of(&table);
    assert!(
        table.starts_with(&format!(
            "refunded 20 units: 0 to the allowance, 20 as credits (grant {r1_grant})\n\n"
        )),
        "{table}"
    );
    assert!(table.contains("credits    70 available, 0 held"), "{table}");
    // Units 0: all that is left. A retry of a refund id replays it.
    let table = ctl.run(&["refund", c, "gen-1", "r2"]).ok();
    let r2_grant = grant_of(&table);
    assert_ne!(r1_grant, r2_grant);
    assert!(
        table.starts_with(&format!(
            "refunded 30 units: 0 to the allowance, 30 as credits (grant {r2_grant})\n"
        )),
        "{table}"
    );
    let table = ctl.run(&["refund", c, "gen-1", "r1", "--units", "20"]).ok();
    assert!(
        table.starts_with(&format!(
            "refunded 20 units: 0 to the allowance, 20 as credits (grant {r1_grant}) \
                 (replayed: nothing changed)\n"
        )),
        "{table}"
    );
    let account = ctl.run(&["account", c]).ok();
    assert_eq!(
        row(&account, &r2_grant)[..5],
        [r2_grant.as_str(), "promotional", "30", "30", "0"],
        "{account}"
    );

    // Refusals: more than is left (the message says how much is), and a hold not settled.
    let line = ctl
        .run(&["refund", a, "gen-1", "r2", "--units", "31"])
        .failure(5);
    assert_eq!(
        line,
        "quotactl: not possible now: cannot refund 31 units of generation `gen-1`: 30 of its \
         charge are left to refund [REFUND_ABOVE_CHARGE]"
    );
    ctl.run(&["reserve", a, "gen-2", "first-frame", "1"]).ok();
    let line = ctl.run(&["refund", a, "gen-2", "r3"]).failure(5);
    assert!(
        line.starts_with("quotactl: not possible now: cannot refund generation `gen-2`: "),
        "{line}"
    );
    let line = ctl.run_with(None, &["refund", a, "gen-1", "r4"]).failure(2);
    assert!(line.contains("QUOTA_ADMIN_TOKEN is not set"), "{line}");
    let b = ctl.run(&["balance", a, "--json"]).json();
    assert_eq!(b["allowance_used"], 30, "the refusals changed nothing: {b}");
}

#[tokio::test]
async fn errors_are_one_line_with_an_exit_status_per_kind() {
    let ctl = Ctl::start("memory").await;
    let a = "acct-ctl-errors";

    let line = ctl
        .run_with(Some("not-the-token"), &["account", a])
        .failure(3);
    assert!(
        line.starts_with("quotactl: the admin listener refused the token"),
        "{line}"
    );
    assert!(
        !line.contains("not-the-token"),
        "never echo a token: {line}"
    );
    let line = ctl
        .run_with(None, &["grant", a, "pack-1", "100"])
        .failure(2);
    assert_eq!(
        line,
        "quotactl: QUOTA_ADMIN_TOKEN is not set: admin commands need the sidecar's admin token"
    );
    // Neither attempt reached the account.
    let b = ctl.run(&["balance", a, "--json"]).json();
    assert_eq!(
        (&b["plan"], &b["credits_available"]),
        (&Value::from("none"), &Value::from(0))
    );

    // Refusals by the sidecar are explained, each in one line.
    let line = ctl
        .run(&["reserve", a, "gen-1", "character-image", "1"])
        .failure(3);
    assert_eq!(
        line,
        "quotactl: not enough funds: generation costs 4 units, account has 0 available \
         [INSUFFICIENT_FUNDS]"
    );
    let line = ctl
        .run(&["reserve", a, "gen-1", "video", "5", "--model", "cinema"])
        .failure(3);
    assert!(
        line.starts_with("quotactl: not allowed by the plan: "),
        "{line}"
    );
    assert!(
        line.contains("hollywood"),
        "names the plan that allows it: {line}"
    );
    let line = ctl.run(&["settle", a, "gen-unknown"]).failure(4);
    assert!(line.starts_with("quotactl: not found: "), "{line}");
    assert!(line.ends_with(" [HOLD_NOT_FOUND]"), "{line}");
    let line = ctl.run(&["revoke", a, "no-such-grant"]).failure(4);
    assert!(line.ends_with(" [GRANT_NOT_FOUND]"), "{line}");
    // One grant id with other terms is a conflict.
    ctl.run(&["grant", a, "pack-2", "10"]).ok();
    let line = ctl.run(&["grant", a, "pack-2", "11"]).failure(5);
    assert!(line.starts_with("quotactl: already exists: "), "{line}");
    assert!(line.ends_with(" [GRANT_CONFLICT]"), "{line}");
    ctl.run(&["revoke", a, "pack-2"]).ok();
    let line = ctl.run(&["set-plan", a, "platinum"]).failure(2);
    assert!(line.ends_with(" [INVALID_ARGUMENT]"), "{line}");
    assert!(
        line.starts_with("quotactl: invalid request: plan: "),
        "{line}"
    );
    let line = ctl
        .run(&["grant", a, "pack-1", "10", "--expires", "next week"])
        .failure(2);
    assert!(line.contains("RFC 3339"), "{line}");

    // Nothing listening: one line naming the address.
    let nobody = SocketAddr::from(([127, 0, 0, 1], harness::free_port()));
    let line = quotactl(nobody, nobody, Some(TOKEN), &["balance", a]).failure(6);
    assert!(
        line.starts_with(&format!(
            "quotactl: cannot reach the sidecar at http://{nobody}"
        )),
        "{line}"
    );
    let line = quotactl(nobody, nobody, Some(TOKEN), &["account", a]).failure(6);
    assert!(line.contains(&nobody.to_string()), "{line}");
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Every admin and events RPC once, with `token`; the status of each (OK as `Code::Ok`).
async fn admin_calls(ch: Channel, token: Option<&str>) -> Vec<(&'static str, Code)> {
    let a = "acct-auth";
    let mut admin = QuotaAdminClient::new(ch.clone());
    let mut events = UsageEventsClient::new(ch);
    let code = |r: Result<(), Status>| r.err().map_or(Code::Ok, |s| s.code());
    vec![
        (
            "SetPlan",
            code(
                admin
                    .set_plan(with_token(
                        pb::SetPlanRequest {
                            request_id: "plan-1".into(),
                            account_id: a.into(),
                            plan: "hollywood".into(),
                            cycle_anchor: None,
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "GrantCredits",
            code(
                admin
                    .grant_credits(with_token(
                        pb::GrantCreditsRequest {
                            account_id: a.into(),
                            grant_id: "pack-1".into(),
                            units: 10,
                            source: pb::CreditSource::Purchased as i32,
                            expires_at: None,
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "RevokeCredits",
            code(
                admin
                    .revoke_credits(with_token(
                        pb::RevokeCreditsRequest {
                            account_id: a.into(),
                            grant_id: "pack-1".into(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "GetAccount",
            code(
                admin
                    .get_account(with_token(
                        pb::GetAccountRequest {
                            account_id: a.into(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "Ack",
            code(
                events
                    .ack(with_token(
                        pb::AckRequest {
                            group: "billing".into(),
                            ack_ids: vec![],
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListGroups",
            code(
                events
                    .list_groups(with_token(pb::ListGroupsRequest {}, token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "DeleteGroup",
            code(
                events
                    .delete_group(with_token(
                        pb::DeleteGroupRequest {
                            group: "nobody".into(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
    ]
}

#[tokio::test]
async fn catalog_as_a_table_and_json_from_targets_without_a_scheme() {
    let ctl = Ctl::start("memory").await;
    // `host:port` as grpcurl takes it, given as flags over the environment's URLs.
    let worker = ctl.sidecar.worker.to_string();
    let admin = ctl.sidecar.admin().to_string();
    assert!(!worker.contains("://"));

    let table = ctl.run(&["--target", &worker, "catalog"]).ok();
    let version = Catalog::builtin().version().to_string();
    assert!(
        table.starts_with(&format!("catalog version {version}\n")),
        "{table}"
    );
    assert_eq!(
        row(&table, "none"),
        ["none", "$0.00", "0", "standard", "1", "5"],
        "{table}"
    );
    assert_eq!(
        row(&table, "independent"),
        ["independent", "$25.00", "2500", "standard,pro", "4", "10"],
        "{table}"
    );
    assert_eq!(
        row(&table, "hollywood"),
        [
            "hollywood",
            "$50.00",
            "5000",
            "standard,pro,cinema",
            "8",
            "20"
        ],
        "{table}"
    );
    let prices: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() == 4 && (cells[3] == "image" || cells[3] == "second"))
        .collect();
    assert_eq!(prices.len(), 12, "{table}");
    assert!(
        prices.contains(&vec!["video", "cinema", "40", "second"]),
        "{table}"
    );
    assert!(
        prices.contains(&vec!["first_frame", "pro", "4", "image"]),
        "{table}"
    );
    assert!(
        table.ends_with("\nusage alerts at 80%, 100% of a cycle's allowance\n"),
        "{table}"
    );

    let json = ctl.run(&["--target", &worker, "catalog", "--json"]).json();
    assert_eq!(json["version"], version.as_str());
    assert_eq!(
        json["alert_thresholds_percent"],
        serde_json::json!([80, 100])
    );
    let plans = json["plans"].as_array().unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["none", "microbudget", "independent", "hollywood"]);
    assert_eq!(
        plans[1],
        serde_json::json!({
            "id": "microbudget",
            "price_cents": 1000,
            "allowance_units": 1000,
            "models": ["standard"],
            "max_open_holds": 2,
            "max_video_seconds": 5,
        })
    );
    let prices = json["prices"].as_array().unwrap();
    assert_eq!(prices.len(), 12, "{json}");
    assert!(
        prices
            .contains(&serde_json::json!({"kind": "video", "model": "pro", "units_per_item": 20})),
        "{json}"
    );

    // The admin listener by `host:port` too.
    let set = ctl
        .run(&[
            "--admin-target",
            &admin,
            "set-plan",
            "acct-noscheme",
            "microbudget",
            "--json",
        ])
        .json();
    assert_eq!(set["change"], "started", "{set}");
    // A target that is neither is still one line.
    let bad = ctl.run(&["--target", "not a target", "catalog"]).failure(2);
    assert!(bad.contains("not a target"), "{bad}");
}

#[tokio::test]
async fn admin_api_needs_the_token_and_stays_off_the_worker_listener() {
    let ctl = Ctl::start("memory").await;
    let admin = channel(ctl.sidecar.admin()).await;
    let worker = channel(ctl.sidecar.worker).await;

    for token in [None, Some("wrong-token"), Some("")] {
        for (rpc, code) in admin_calls(admin.clone(), token).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with {token:?}");
        }
    }
    // The refused calls changed nothing.
    let account = QuotaAdminClient::new(admin.clone())
        .get_account(with_token(
            pb::GetAccountRequest {
                account_id: "acct-auth".into(),
            },
            Some(TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.balance.unwrap().plan, "none");
    assert!(account.grants.is_empty());

    // The worker listener does not serve the admin or events API, token or not.
    for token in [None, Some(TOKEN)] {
        for (rpc, code) in admin_calls(worker.clone(), token).await {
            assert_eq!(code, Code::Unimplemented, "{rpc} on the worker listener");
        }
    }
    // And the admin listener does not serve the worker API.
    let status = QuotaClient::new(admin.clone())
        .get_balance(with_token(
            pb::GetBalanceRequest {
                account_id: "acct-auth".into(),
            },
            Some(TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // With the token, the admin RPCs go through (events may not be served yet).
    let calls = admin_calls(admin, Some(TOKEN)).await;
    for (rpc, code) in &calls[..4] {
        assert_eq!(*code, Code::Ok, "{rpc}");
    }
    assert_ne!(calls[4].1, Code::Unauthenticated, "Ack with the token");
    for (rpc, code) in &calls[5..] {
        assert_eq!(*code, Code::Ok, "{rpc}");
    }
}

/// `events groups`, `events groups delete`, an ephemeral `events tail`, and `--ack` refused
/// where others read (quota-billing's group, an existing group) unless `--force`, on `store`.
async fn event_groups_through_quotactl(store: &str) {
    let ctl = Ctl::start(store).await;
    let a = "acct-groups";
    for i in 0..3 {
        ctl.run(&[
            "grant",
            a,
            &format!("pack-{i}"),
            "10",
            "--source",
            "purchased",
        ])
        .ok();
    }
    // A durable group: the sidecar hands it all three, quotactl prints and acks two.
    let tail = ctl.run(&["events", "tail", "--group", "audit", "--max", "2", "--ack"]);
    assert_eq!(tail.ok().lines().count(), 3, "a header and two events");

    // Ephemeral without --group: every event, and its group is gone once the stream ends.
    let tail = ctl.run(&["events", "tail", "--max", "3", "--json"]).ok();
    assert_eq!(tail.lines().count(), 3, "{tail}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let groups = loop {
        let groups = ctl.run(&["events", "groups", "--json"]).json();
        if groups.as_array().unwrap().len() == 1 {
            break groups;
        }
        assert!(Instant::now() < deadline, "ephemeral group left: {groups}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let audit = &groups[0];
    assert_eq!(audit["name"], "audit");
    assert_eq!((&audit["pending"], &audit["lag"]), (&1.into(), &0.into()));
    assert!(audit["oldest_unacked_ack_id"].is_string(), "{audit}");
    assert!(audit["oldest_unacked_age_ms"].as_u64().unwrap() < 60_000);
    let table = ctl.run(&["events", "groups"]).ok();
    let cells = row(&table, "audit");
    assert_eq!((cells[1], cells[3]), ("1", "0"), "{table}");
    assert!(cells[2].ends_with('s'), "an age: {table}");

    // --ack means a durable group's acks: without --group it is refused.
    let refused = ctl.run(&["events", "tail", "--ack"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("--group"), "{refused:?}");

    // The group exists now: acking in it again takes events from whoever reads it.
    let line = ctl
        .run(&["events", "tail", "--group", "audit", "--max", "1", "--ack"])
        .failure(5);
    assert!(line.contains("refusing to ack in `audit`"), "{line}");
    assert!(line.contains("1 pending, 0 not delivered yet"), "{line}");
    assert!(line.contains("--force"), "{line}");

    let deleted = ctl.run(&["events", "groups", "delete", "audit"]).ok();
    assert!(deleted.contains("audit"), "{deleted}");
    assert_eq!(ctl.run(&["events", "groups"]).ok(), "(none)\n");
    let line = ctl.run(&["events", "groups", "delete", "audit"]).failure(4);
    assert!(line.contains("no consumer group `audit`"), "{line}");

    // quota-billing's group is refused even before it exists, and nothing is created...
    let line = ctl
        .run(&[
            "events", "tail", "--group", "billing", "--max", "1", "--ack",
        ])
        .failure(5);
    assert!(line.contains("quota-billing's group"), "{line}");
    assert_eq!(ctl.run(&["events", "groups"]).ok(), "(none)\n");
    // ...unless forced; --force means nothing without --ack.
    let forced = ctl
        .run(&[
            "events", "tail", "--group", "billing", "--max", "1", "--ack", "--force",
        ])
        .ok();
    assert_eq!(
        forced.lines().count(),
        2,
        "a header and one event: {forced}"
    );
    let refused = ctl.run(&["events", "tail", "--group", "billing", "--force"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("--ack"), "{refused:?}");
    // Forced in a group that exists too (another consumer name: it takes what the group has
    // not been handed yet).
    ctl.run(&["grant", a, "pack-3", "10", "--source", "purchased"])
        .ok();
    let forced = ctl
        .run(&[
            "events", "tail", "--group", "billing", "--max", "1", "--ack", "--force",
        ])
        .ok();
    assert_eq!(
        forced.lines().count(),
        2,
        "a header and one event: {forced}"
    );
    ctl.run(&["events", "groups", "delete", "billing"]).ok();
}

#[tokio::test]
async fn event_groups_through_quotactl_on_memory() {
    event_groups_through_quotactl("memory").await;
}

#[tokio::test]
async fn event_groups_through_quotactl_on_redis() {
    let redis = RedisServer::start();
    event_groups_through_quotactl(&redis.url()).await;
}

/// The value of the `name{group="<group>"}` sample on a metrics page, if there is one.
fn group_sample(page: &str, name: &str, group: &str) -> Option<f64> {
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

/// A group whose reader went away shows its lag and oldest unacked age on the `/metrics` of
/// any sidecar of the store, not only the one it read through.
#[tokio::test]
async fn group_lag_is_on_every_sidecar_s_metrics() {
    let redis = RedisServer::start();
    let first = Ctl::start(&redis.url()).await;
    let a = "acct-lag";
    for i in 0..3 {
        first
            .run(&[
                "grant",
                a,
                &format!("pack-{i}"),
                "10",
                "--source",
                "purchased",
            ])
            .ok();
    }
    // Handed all three, acks two, goes away; two more events arrive for nobody.
    first
        .run(&["events", "tail", "--group", "audit", "--max", "2", "--ack"])
        .ok();
    for i in 3..5 {
        first
            .run(&[
                "grant",
                a,
                &format!("pack-{i}"),
                "10",
                "--source",
                "purchased",
            ])
            .ok();
    }
    // A second sidecar samples at start.
    let second = Ctl::start(&redis.url()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let page = loop {
        let (_, page) = harness::http::http_get(second.sidecar.metrics(), "/metrics").await;
        if page.contains("quota_events_group_lag{") {
            break page;
        }
        assert!(Instant::now() < deadline, "no lag sample: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        group_sample(&page, "quota_events_group_lag", "audit"),
        Some(2.0),
        "{page}"
    );
    let age = group_sample(&page, "quota_events_group_oldest_unacked_seconds", "audit");
    assert!(age.is_some_and(|age| (0.0..60.0).contains(&age)), "{page}");
}

#[tokio::test]
async fn quotactl_on_redis_and_through_an_outage() {
    let mut redis = RedisServer::start();
    let ctl = Ctl::start(&redis.url()).await;
    let a = "acct-ctl-redis";
    ctl.run(&["set-plan", a, "independent", "--request-id", "plan-1"])
        .ok();
    ctl.run(&["grant", a, "pack-1", "50", "--source", "purchased"])
        .ok();
    ctl.run(&["reserve", a, "gen-1", "first-frame", "3", "--model", "pro"])
        .ok();
    let account = ctl.run(&["account", a, "--json"]).json();
    assert_eq!(account["balance"]["plan"], "independent");
    assert_eq!(account["balance"]["allowance_held"], 12);
    assert_eq!(account["grants"][0]["units_remaining"], 50);
    assert_eq!(account["holds"][0]["cost_units"], 12);

    // Redis gone: the sidecar answers, and quotactl says what is wrong in one line.
    redis.stop();
    let line = ctl.run(&["balance", a]).failure(6);
    assert!(line.contains("store"), "{line}");
    assert!(
        !line.contains("cannot reach the sidecar"),
        "the sidecar is up: {line}"
    );
}

/// `--help` lists the exit statuses; arguments have help text; `--model` names where its
/// values come from and the built-in ones.
#[test]
fn help_lists_exit_statuses_and_argument_values() {
    let help = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_quotactl"))
            .args(args)
            .output()
            .expect("run quotactl");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let top = help(&["--help"]);
    for line in [
        "  2  usage:",
        "  3  denied:",
        "  4  not found:",
        "  5  conflict:",
        "  6  unavailable:",
    ] {
        assert!(top.contains(line), "{line:?} missing from:\n{top}");
    }
    let reserve = help(&["reserve", "--help"]);
    assert!(reserve.contains("<ACCOUNT>        Account id"), "{reserve}");
    assert!(
        reserve.contains("<GENERATION_ID>  Id of the generation"),
        "{reserve}"
    );
    assert!(reserve.contains("`quotactl catalog`"), "{reserve}");
    assert!(reserve.contains("cinema, pro, standard"), "{reserve}");
    let set_plan = help(&["set-plan", "--help"]);
    assert!(set_plan.contains("microbudget"), "{set_plan}");
    // Every positional argument of every command says what it is.
    for command in [
        "balance", "account", "set-plan", "grant", "revoke", "reserve", "quote", "settle",
        "release", "refund",
    ] {
        // `-h`: the short form, one line per argument.
        let text = help(&[command, "-h"]);
        let arguments = text
            .split("Arguments:\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .unwrap_or_else(|| panic!("{command} has arguments:\n{text}"));
        for line in arguments.lines() {
            let described = line.trim_start().split_once('>').map(|(_, d)| d.trim());
            assert!(
                described.is_some_and(|d| !d.is_empty()),
                "{command}: argument without help: {line:?}"
            );
        }
    }
}
