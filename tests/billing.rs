//! quota-billing against the machine's PostgreSQL: a redelivered event is counted once, a
//! broken one is dead-lettered without blocking the rest, and the binary takes a live
//! sidecar's stream in, reports its health and metrics, and stops gracefully. Events acked
//! elsewhere before billing read them are a gap its statements report (exit 3) until a
//! redelivery fills it; a database or sidecar that refuses the consumer for good stops it with
//! the server's own words.

mod harness;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use prost_types::Timestamp;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::Request;

use harness::billing::Billing;
use harness::http::http_get;
use harness::postgres::TestDatabase;
use harness::sidecar::{channel, wait_serving, Sidecar};
use quota_sidecar::billing::db::PgSettings;
use quota_sidecar::billing::writer::{BatchOutcome, Writer};
use quota_sidecar::pb;

const TOKEN: &str = "billing-test-token";
const T0: i64 = 1_768_435_200; // 2026-01-15T00:00:00Z

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: T0 + seconds,
        nanos: 0,
    })
}

fn draw(grant_id: &str, units: u64) -> pb::GrantDraw {
    pb::GrantDraw {
        grant_id: grant_id.into(),
        units,
    }
}

/// A hold event of account `a` for generation `g`.
fn hold(what: &str, g: &str, seq: u64) -> pb::UsageEvent {
    pb::UsageEvent {
        id: format!("a/{g}@1000:{what}"),
        r#type: format!("hold.{what}"),
        account_id: "a".into(),
        time: at(seq as i64),
        sequence: seq,
        generation_id: g.into(),
        kind: pb::GenerationKind::Video as i32,
        model: "pro".into(),
        cycle_start: at(0),
        ack_id: format!("1/{seq}-0"),
        ..Default::default()
    }
}

/// A day of one account, in the shapes the sidecar emits: plan, grants, holds settled,
/// released (units lost to an expired grant) and expired, a refund that went back to the
/// allowance, an upgrade, a renewal, a refund of the rest after it (a refund grant), a settle for
/// less whose remainder on a revoked grant was lost, and one event that makes no sense.
fn a_day() -> Vec<pb::UsageEvent> {
    let mut events = Vec::new();
    events.push(pb::UsageEvent {
        id: "a/r1@1000:started".into(),
        r#type: "plan.changed".into(),
        account_id: "a".into(),
        time: at(0),
        sequence: 1,
        plan: "microbudget".into(),
        cycle_start: at(0),
        ..Default::default()
    });
    for (seq, grant, source) in [(2, "promo", "promotional"), (3, "pack", "purchased")] {
        events.push(pb::UsageEvent {
            id: format!("a/{grant}@1000:granted"),
            r#type: "credits.granted".into(),
            account_id: "a".into(),
            time: at(seq),
            sequence: seq as u64,
            grant_id: grant.into(),
            units: 100,
            source: source.into(),
            expires_at: (grant == "promo").then(|| at(7).unwrap()),
            ..Default::default()
        });
    }
    // g1: 60 units, 40 from the allowance, 20 from credits.
    for (what, seq) in [("reserved", 4), ("settled", 5)] {
        events.push(pb::UsageEvent {
            units: 60,
            from_allowance: 40,
            from_credits: 20,
            grants: vec![draw("promo", 15), draw("pack", 5)],
            ..hold(what, "g1", seq)
        });
    }
    events.push(pb::UsageEvent {
        units: 30,
        from_credits: 30,
        grants: vec![draw("promo", 20), draw("pack", 10)],
        ..hold("reserved", "g2", 6)
    });
    // The promo grant expires with 65 unspent while g2 holds 20 of it...
    events.push(pb::UsageEvent {
        id: "a/promo@1000:expired".into(),
        r#type: "credits.expired".into(),
        account_id: "a".into(),
        time: at(7),
        sequence: 7,
        grant_id: "promo".into(),
        units: 65,
        source: "promotional".into(),
        expires_at: at(7),
        ..Default::default()
    });
    // ...so releasing g2 gives the 10 of pack back and loses those 20.
    events.push(pb::UsageEvent {
        units: 30,
        from_credits: 10,
        grants: vec![draw("pack", 10)],
        units_lost: 20,
        reason: "failed".into(),
        ..hold("released", "g2", 8)
    });
    // 25 of g1 refunded in its cycle: the allowance part first, back to the allowance.
    events.push(pb::UsageEvent {
        id: "a/g1@1000:refunded:rf1".into(),
        units: 25,
        from_allowance: 25,
        allowance_added: 25,
        refund_id: "rf1".into(),
        reason: "bad output".into(),
        ..hold("refunded", "g1", 9)
    });
    events.push(pb::UsageEvent {
        id: "a/r2@2000:upgraded".into(),
        r#type: "plan.upgraded".into(),
        account_id: "a".into(),
        time: at(10),
        sequence: 10,
        plan: "hollywood".into(),
        previous_plan: "microbudget".into(),
        cycle_start: at(0),
        prorated_charge_cents: 3_871,
        allowance_added: 3_871,
        ..Default::default()
    });
    events.push(pb::UsageEvent {
        units: 8,
        from_allowance: 8,
        ..hold("expired", "g3", 11)
    });
    // Settled without a kind: cannot be put under any usage line.
    events.push(pb::UsageEvent {
        kind: 0,
        units: 4,
        from_allowance: 4,
        ..hold("settled", "g9", 12)
    });
    events.push(pb::UsageEvent {
        id: "a:13000:renewed".into(),
        r#type: "cycle.renewed".into(),
        account_id: "a".into(),
        time: at(13),
        sequence: 13,
        plan: "hollywood".into(),
        cycle_start: at(13),
        allowance_added: 20_000,
        ..Default::default()
    });
    // The rest of g1 (35: 15 allowance, 20 credits) refunded once its cycle is over: all of it
    // as credits of a new grant, under g1's cycle.
    events.push(pb::UsageEvent {
        id: "a/g1@1000:refunded:rf2".into(),
        units: 35,
        from_allowance: 15,
        from_credits: 20,
        grant_id: "refund:g1:rf2".into(),
        grants: vec![draw("refund:g1:rf2", 35)],
        refund_id: "rf2".into(),
        reason: "bad output".into(),
        ..hold("refunded", "g1", 14)
    });
    events.push(pb::UsageEvent {
        id: "a/gift@1000:granted".into(),
        r#type: "credits.granted".into(),
        account_id: "a".into(),
        time: at(15),
        sequence: 15,
        grant_id: "gift".into(),
        units: 50,
        source: "promotional".into(),
        ..Default::default()
    });
    events.push(pb::UsageEvent {
        units: 30,
        from_credits: 30,
        grants: vec![draw("pack", 10), draw("gift", 20)],
        cycle_start: at(13),
        ..hold("reserved", "g5", 16)
    });
    events.push(pb::UsageEvent {
        id: "a/gift@1000:revoked".into(),
        r#type: "credits.revoked".into(),
        account_id: "a".into(),
        time: at(17),
        sequence: 17,
        grant_id: "gift".into(),
        units: 30,
        source: "promotional".into(),
        ..Default::default()
    });
    // g5 settles for 5 (from pack): pack's other 5 go back, gift's 20 are lost (revoked).
    events.push(pb::UsageEvent {
        units: 5,
        from_credits: 5,
        grants: vec![draw("pack", 5)],
        units_lost: 20,
        cycle_start: at(13),
        ..hold("settled", "g5", 18)
    });
    events
}

/// Everything the aggregates hold, as text rows, for comparing before and after.
async fn aggregates(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for query in [
        "SELECT account_id, cycle_start::text, kind, model, allowance_units, credit_units, \
         settled_count, refunded_allowance_units, refunded_credit_units, refund_count, \
         refund_allowance_restored_units, refund_credit_grant_units \
         FROM cycle_usage ORDER BY 1, 2, 3, 4",
        "SELECT account_id, grant_id, source, granted_units, drawn_units, returned_units, \
         expired_units, revoked_units, lost_units FROM credit_grants ORDER BY 1, 2",
        "SELECT event_id, charge_cents FROM upgrade_charges ORDER BY 1",
        "SELECT account_id, starting_plan, current_plan FROM account_cycles ORDER BY 1, cycle_start",
        "SELECT dead_letter_key, reason FROM dead_letters ORDER BY 1",
        "SELECT count(*) FROM usage_events",
    ] {
        for row in client.simple_query(query).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = row {
                let cells: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("")).collect();
                out.push(cells.join("|"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_is_counted_once_and_a_broken_event_is_dead_lettered() {
    let db = TestDatabase::create().await;
    let mut writer = Writer::connect(&PgSettings {
        url: db.url(),
        ca_file: None,
    })
    .await
    .expect("connect and migrate");
    let events = a_day();
    let first = writer.write_batch(&events).await.unwrap();
    assert_eq!(
        first,
        BatchOutcome {
            written: 17,
            duplicates: 0,
            dead_letters: 1,
            newest_event_at: first.newest_event_at,
            // 1 to 18 with none skipped (the dead letter counts as received).
            sequence_changes: vec![],
        }
    );
    let client = db.client().await;
    let after_first = aggregates(&client).await;

    // The whole batch again (crash before the ack), then part of it in another order (a
    // claim by another consumer): nothing moves.
    let again = writer.write_batch(&events).await.unwrap();
    assert_eq!(
        (again.written, again.duplicates, again.dead_letters),
        (0, 18, 0)
    );
    let mut part: Vec<_> = events[3..9].to_vec();
    part.reverse();
    let part_again = writer.write_batch(&part).await.unwrap();
    assert_eq!((part_again.written, part_again.duplicates), (0, 6));
    assert_eq!(aggregates(&client).await, after_first);

    // A second migration run on a fresh connection changes nothing either.
    drop(
        Writer::connect(&PgSettings {
            url: db.url(),
            ca_file: None,
        })
        .await
        .unwrap(),
    );
    assert_eq!(aggregates(&client).await, after_first);

    let expected = [
        // cycle_usage: g1 settled 40 + 20, refunded 25 + 15 of the allowance part and 20 of
        // the credits part; 25 went back to the allowance, 35 to a refund grant. g5 in the next
        // cycle.
        "a|2026-01-15 00:00:00+00|video|pro|40|20|1|40|20|2|25|35",
        "a|2026-01-15 00:00:13+00|video|pro|0|5|1|0|0|0|0|0",
        // credit_grants: gift revoked 30 with 20 held by g5, lost when g5 settled for less;
        // pack drawn 5 + 5, returned 10 by g2; promo drawn 15, expired 65, lost the 20 g2
        // held; the refund's new grant.
        "a|gift|promotional|50|0|0|0|30|20",
        "a|pack|purchased|100|10|10|0|0|0",
        "a|promo|promotional|100|15|0|65|0|20",
        "a|refund:g1:rf2|promotional|35|0|0|0|0|0",
        "a/r2@2000:upgraded|3871",
        "a|microbudget|hollywood",
        "a|hollywood|hollywood",
        "a/g9@1000:settled|hold.settled without a known kind",
        "17",
    ];
    assert_eq!(after_first, expected);
}

fn admin<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// The value of a sample in a Prometheus page; 0 when absent.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_a_live_stream_in_reports_health_and_stops_gracefully() {
    let db = TestDatabase::create().await;
    let sidecar = Sidecar::start("memory", Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let mut admin_client =
        pb::quota_admin_client::QuotaAdminClient::new(channel(sidecar.admin()).await);
    let mut worker = pb::quota_client::QuotaClient::new(channel(sidecar.worker).await);
    admin_client
        .set_plan(admin(pb::SetPlanRequest {
            request_id: "start".into(),
            account_id: "studio".into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        }))
        .await
        .unwrap();
    admin_client
        .grant_credits(admin(pb::GrantCreditsRequest {
            account_id: "studio".into(),
            grant_id: "pack".into(),
            units: 500,
            source: pb::CreditSource::Purchased as i32,
            expires_at: None,
        }))
        .await
        .unwrap();
    // 22 five-second standard videos (50 units each): 1,000 from the allowance, 100 from
    // credits; one more released.
    let reserver = worker.clone();
    let run = |n: usize| {
        let g = format!("v{n}");
        let mut worker = reserver.clone();
        async move {
            worker
                .reserve(pb::ReserveRequest {
                    account_id: "studio".into(),
                    generation_id: g.clone(),
                    kind: pb::GenerationKind::Video as i32,
                    model: "standard".into(),
                    quantity: 5,
                    ttl_seconds: 0,
                    labels: Default::default(),
                })
                .await
                .unwrap();
            g
        }
    };
    for n in 0..22 {
        let g = run(n).await;
        worker
            .settle(pb::SettleRequest {
                account_id: "studio".into(),
                generation_id: g,
                actual_quantity: None,
            })
            .await
            .unwrap();
    }
    let g = run(99).await;
    worker
        .release(pb::ReleaseRequest {
            account_id: "studio".into(),
            generation_id: g,
            reason: pb::ReleaseReason::Failed as i32,
        })
        .await
        .unwrap();

    // Targets without a scheme work as in quotactl.
    let target = sidecar.admin().to_string();
    let mut billing = Billing::start(&target, &db.url(), TOKEN, &["--batch-max-events", "7"]);
    let client = loop_until_schema(&db).await;
    // 1 plan + 1 grant + 23 reserved + 22 settled + 1 released + 2 usage.threshold (80 % and
    // 100 % of the 1,000-unit allowance).
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&client, "SELECT count(*) FROM usage_events").await < 50 {
        assert!(Instant::now() < deadline, "events not all written in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage = client
        .query_one(
            "SELECT sum(allowance_units)::bigint, sum(credit_units)::bigint, \
             sum(settled_count)::bigint FROM cycle_usage WHERE account_id = 'studio'",
            &[],
        )
        .await
        .unwrap();
    let (allowance, credits, settled): (i64, i64, i64) = (usage.get(0), usage.get(1), usage.get(2));
    let ledger = admin_client
        .get_account(admin(pb::GetAccountRequest {
            account_id: "studio".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (allowance as u64, credits as u64, settled),
        (
            ledger.lifetime_charged_allowance_units,
            ledger.lifetime_charged_credit_units,
            22
        )
    );
    assert_eq!((allowance, credits), (1_000, 100));
    let thresholds: Vec<i32> = client
        .query(
            "SELECT threshold_percent FROM usage_events WHERE event_type = 'usage.threshold' \
             ORDER BY threshold_percent",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(thresholds, [80, 100]);

    let (status, body) = http_get(billing.http, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let (status, page) = http_get(billing.http, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        sample(&page, "quota_billing_events_written_total"),
        50.0,
        "{page}"
    );
    assert!(
        sample(&page, "quota_billing_batches_total") >= 7.0,
        "{page}"
    );
    assert!(sample(&page, "quota_billing_last_commit_timestamp_seconds") > 1.7e9);
    assert!(page.contains("quota_billing_lag_seconds "), "{page}");

    // Everything acked: the group has nothing pending in the sidecar.
    let (_, sidecar_page) = http_get(sidecar.metrics(), "/metrics").await;
    let pending_line = sidecar_page
        .lines()
        .find(|l| l.starts_with("quota_events_pending{") && l.contains("group=\"billing\""));
    if let Some(line) = pending_line {
        assert!(line.ends_with(" 0"), "{line}");
    }

    let status = billing.terminate().await;
    assert!(status.success(), "exit after SIGTERM: {status:?}");

    // Events while it is down wait in the durable group and are taken in after a restart.
    worker
        .settle(pb::SettleRequest {
            account_id: "studio".into(),
            generation_id: run(100).await,
            actual_quantity: Some(2),
        })
        .await
        .unwrap();
    let _billing = Billing::start(&target, &db.url(), TOKEN, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&client, "SELECT count(*) FROM usage_events").await < 52 {
        assert!(
            Instant::now() < deadline,
            "events after the restart not written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let credits: i64 = client
        .query_one(
            "SELECT sum(credit_units)::bigint FROM cycle_usage WHERE account_id = 'studio'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(credits, 120, "2 seconds of video charged from credits");

    // Real refunds through the sidecar land in the statement: v0 whole (50 units of
    // allowance, back to this cycle's allowance), 30 of v21 (charged from credits: a refund
    // grant), and v21's refund again with the same id (a replay, no second event).
    let mut refund_grant_id = String::new();
    for (g, refund_id, units) in [
        ("v0", "r-v0", 0),
        ("v21", "r-v21", 30),
        ("v21", "r-v21", 30),
    ] {
        let refunded = admin_client
            .refund(admin(pb::RefundRequest {
                account_id: "studio".into(),
                generation_id: g.into(),
                refund_id: refund_id.into(),
                units,
                reason: "bad output".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        if g == "v21" {
            refund_grant_id = refunded.grant_id;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&client, "SELECT count(*) FROM usage_events").await < 54 {
        assert!(Instant::now() < deadline, "refunds not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s: serde_json::Value = serde_json::from_str(&billing_cli(&[
        "statement",
        "--postgres",
        &db.url(),
        "studio",
        "--json",
    ]))
    .unwrap();
    let line = &s["usage"][0];
    assert_eq!(
        (
            &line["kind"],
            &line["refund_count"],
            &line["refunded_allowance_units"],
            &line["refunded_credit_units"],
            &line["refund_allowance_restored_units"],
            &line["refund_credit_grant_units"],
        ),
        (
            &json!("video"),
            &json!(2),
            &json!(50),
            &json!(30),
            &json!(50),
            &json!(30)
        ),
        "{s}"
    );
    let refund_grant = s["credits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant_id"] == refund_grant_id.as_str())
        .unwrap_or_else(|| panic!("no refund grant: {s}"));
    assert_eq!(
        (&refund_grant["source"], &refund_grant["remaining_units"]),
        (&json!("promotional"), &json!(30))
    );
    // Net of refunds, as the ledger counts its lifetime charge.
    let ledger = admin_client
        .get_account(admin(pb::GetAccountRequest {
            account_id: "studio".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            line["net_allowance_units"].as_u64(),
            line["net_credit_units"].as_u64()
        ),
        (
            Some(ledger.lifetime_charged_allowance_units),
            Some(ledger.lifetime_charged_credit_units)
        ),
        "{s}"
    );
    let credits_granted: i64 = client
        .query_one(
            "SELECT granted_units FROM credit_grants WHERE grant_id = $1",
            &[&refund_grant_id],
        )
        .await
        .unwrap()
        .get(0);
    let ledger_grant = ledger
        .grants
        .iter()
        .find(|g| g.grant_id == refund_grant_id)
        .expect("the ledger has the refund grant");
    assert_eq!(credits_granted as u64, ledger_grant.units_granted);
}

/// A client once the binary has migrated the schema.
async fn loop_until_schema(db: &TestDatabase) -> tokio_postgres::Client {
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &client,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'usage_events'",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "schema never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
}

/// Runs `quota-billing` with `args`; its stdout, after checking it succeeded.
fn billing_cli(args: &[&str]) -> String {
    let out = harness::process::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_quota-billing"))
            .args(args)
            .env_remove("QUOTA_BILLING_POSTGRES")
            .env_remove("QUOTA_CATALOG"),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "quota-billing {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect()
}

/// A database holding [`a_day`], one settle of an account with a 128-character id, and a
/// customer mapping for account `a`.
async fn billed_database() -> (TestDatabase, String) {
    let db = TestDatabase::create().await;
    let mut writer = Writer::connect(&PgSettings {
        url: db.url(),
        ca_file: None,
    })
    .await
    .unwrap();
    let long = "L".repeat(128);
    let mut events = a_day();
    events.push(pb::UsageEvent {
        id: format!("{long}/{}@1000:settled", "g".repeat(128)),
        account_id: long.clone(),
        units: 8,
        from_allowance: 8,
        kind: pb::GenerationKind::CharacterImage as i32,
        model: "standard".into(),
        ..hold("settled", "gl", 20)
    });
    writer.write_batch(&events).await.unwrap();
    db.client()
        .await
        .execute(
            "INSERT INTO billing_customers (account_id, stripe_customer_id, \
             lago_external_subscription_id, openmeter_subject) VALUES ('a', 'cus_A', 'sub_A', 'subject-A')",
            &[],
        )
        .await
        .unwrap();
    (db, long)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_carry_each_systems_required_fields() {
    let (db, long) = billed_database().await;
    let url = db.url();
    let export = |format: &str, extra: &[&str]| {
        let mut args = vec!["export", "--postgres", &url, "--format", format];
        args.extend_from_slice(extra);
        billing_cli(&args)
    };
    let t = |seconds: i64| {
        time::OffsetDateTime::from_unix_timestamp(T0 + seconds)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let rfc3339 = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(
            v.as_str().expect("a time string"),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|e| panic!("{v}: {e}"))
    };

    // Billable only: settled g1, refund rf1, the upgrade, refund rf2, settled g5, the long
    // account's settle.
    let cloud = json_lines(&export("cloudevents", &[]));
    assert_eq!(cloud.len(), 6, "{cloud:?}");
    for e in &cloud {
        assert_eq!(e["specversion"], "1.0");
        for field in ["type", "id", "source", "subject", "time"] {
            assert!(
                !e[field].as_str().unwrap_or_default().is_empty(),
                "{field}: {e}"
            );
        }
        rfc3339(&e["time"]);
        assert!(e["data"].is_object(), "{e}");
    }
    assert_eq!(cloud[0]["id"], "a/g1@1000:settled");
    assert_eq!(cloud[0]["type"], "generation_units");
    assert_eq!(cloud[0]["subject"], "subject-A");
    assert_eq!(cloud[0]["data"]["units"], 60);
    assert_eq!(cloud[1]["data"]["units"], -25, "a refund is negative usage");
    assert_eq!(cloud[1]["data"]["refund_id"], "rf1");
    assert_eq!(cloud[1]["type"], "generation_units", "on the usage meter");
    assert_eq!(cloud[1]["data"]["allowance_restored_units"], 25);
    assert_eq!(cloud[2]["type"], "plan_upgrade_cents");
    assert_eq!(cloud[2]["data"]["charge_cents"], 3871);
    let rf2 = &cloud[3]["data"];
    assert_eq!(
        (
            &rf2["units"],
            &rf2["from_allowance_units"],
            &rf2["from_credits_units"]
        ),
        (&json!(-35), &json!(-15), &json!(-20)),
        "the parts of the charge it corrects: {rf2}"
    );
    assert_eq!(rf2["corrects"], "a/g1@1000:settled");
    assert_eq!(rf2["cycle_start"], "2026-01-15T00:00:00.000Z");
    assert_eq!(rf2["refund_grant_id"], "refund:g1:rf2");
    assert_eq!(rf2["refund_grant_units"], 35);
    assert_eq!(rf2["allowance_restored_units"], 0);
    assert_eq!(
        cloud[5]["subject"],
        long.as_str(),
        "no mapping: the account id"
    );

    let stripe_text = export("stripe", &[]);
    let stripe = json_lines(&stripe_text);
    assert_eq!(stripe.len(), 6);
    let mut identifiers = HashSet::new();
    for e in &stripe {
        assert!(e["event_name"].is_string(), "{e}");
        assert!(e["payload"]["stripe_customer_id"].is_string(), "{e}");
        let value = e["payload"]["value"].as_str().expect("value is a string");
        value.parse::<i64>().expect("a whole number");
        let id = e["identifier"].as_str().unwrap();
        assert!(!id.is_empty() && id.chars().count() <= 100, "{id}");
        assert!(identifiers.insert(id.to_string()), "identifier {id} twice");
        assert!(e["timestamp"].as_i64().unwrap() >= T0);
    }
    assert_eq!(stripe[0]["payload"]["stripe_customer_id"], "cus_A");
    assert_eq!(stripe[0]["payload"]["value"], "60");
    assert_eq!(stripe[1]["payload"]["value"], "-25");
    assert_eq!(stripe[2]["event_name"], "plan_upgrade_cents");
    assert_eq!(stripe[2]["payload"]["value"], "3871");
    assert_eq!(stripe[3]["payload"]["value"], "-35");
    assert_eq!(stripe[3]["identifier"], "a/g1@1000:refunded:rf2");
    assert!(stripe[5]["identifier"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        export("stripe", &[]),
        stripe_text,
        "identifiers are deterministic"
    );

    let lago = json_lines(&export("lago", &[]));
    assert_eq!(lago.len(), 6);
    let mut transactions = HashSet::new();
    for e in &lago {
        assert!(transactions.insert(e["transaction_id"].as_str().unwrap().to_string()));
        assert!(e["external_subscription_id"].is_string(), "{e}");
        assert!(e["code"].is_string(), "{e}");
        assert!(e["timestamp"].as_i64().unwrap() >= T0);
        assert!(e["properties"]["value"].is_i64(), "{e}");
    }
    assert_eq!(lago[0]["external_subscription_id"], "sub_A");
    assert_eq!(lago[1]["properties"]["value"], -25);
    assert_eq!(lago[1]["code"], "generation_units");
    assert_eq!(lago[3]["properties"]["value"], -35);
    assert_eq!(lago[3]["properties"]["corrects"], "a/g1@1000:settled");

    let csv = export("csv", &[]);
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 7, "{csv}");
    let header = &rows[0];
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows[1][col("units")], "60");
    assert_eq!(rows[2][col("units")], "-25");
    assert_eq!(rows[2][col("from_allowance_units")], "-25");
    assert_eq!(rows[3][col("charge_cents")], "3871");
    assert_eq!(rows[4][col("units")], "-35");
    assert_eq!(rows[4][col("from_allowance_units")], "-15");
    assert_eq!(rows[4][col("from_credits_units")], "-20");

    // A window: from the refund (t0 + 9 s) up to, not including, the upgrade (t0 + 10 s).
    let window = json_lines(&export("cloudevents", &["--from", &t(9), "--to", &t(10)]));
    assert_eq!(window.len(), 1);
    assert_eq!(window[0]["data"]["refund_id"], "rf1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_says_what_an_account_used_and_owes() {
    let (db, _) = billed_database().await;
    let url = db.url();
    let statement = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["statement", "--postgres", &url, "a", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&billing_cli(&args)).unwrap()
    };
    // Without --cycle: the latest, renewed on hollywood, with g5's 5 credits.
    let latest = statement(&[]);
    assert_eq!(latest["cycle_start"], "2026-01-15T00:00:13.000Z");
    assert_eq!(latest["starting_plan"], "hollywood");
    assert_eq!(latest["usage"][0]["credit_units"], 5);
    // The refunds of g1 count under g1's cycle, even the one after the renewal.
    let s = statement(&["--cycle", "2026-01-15T00:00:00Z"]);
    assert_eq!(s["cycle_start"], "2026-01-15T00:00:00.000Z");
    assert_eq!(s["starting_plan"], "microbudget");
    assert_eq!(s["current_plan"], "hollywood");
    assert_eq!(s["subscription_price_cents"], 1000);
    assert_eq!(s["upgrade_charges_cents"], 3871);
    assert_eq!(s["total_cents"], 4871);
    assert_eq!(
        s["usage"],
        serde_json::json!([{
            "kind": "video", "model": "pro", "allowance_units": 40, "credit_units": 20,
            "settled_count": 1, "refunded_allowance_units": 40, "refunded_credit_units": 20,
            "refund_count": 2, "refund_allowance_restored_units": 25,
            "refund_credit_grant_units": 35, "net_allowance_units": 0, "net_credit_units": 0,
        }])
    );
    let remaining: Vec<(String, i64)> = s["credits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["grant_id"].as_str().unwrap().to_string(),
                g["remaining_units"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        remaining,
        [
            ("gift".to_string(), 0),
            ("pack".to_string(), 90),
            ("promo".to_string(), 0),
            ("refund:g1:rf2".to_string(), 35)
        ]
    );
    // The same for an explicit cycle, as text.
    let text = billing_cli(&[
        "statement",
        "--postgres",
        &url,
        "a",
        "--cycle",
        "2026-01-15T00:00:00Z",
    ]);
    assert!(text.contains("$48.71"), "{text}");
    assert!(text.contains("microbudget -> hollywood"), "{text}");
    // An account with nothing recorded is an error, said plainly.
    let out = harness::process::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_quota-billing")).args([
            "statement",
            "--postgres",
            &url,
            "nobody",
        ]),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usage recorded for account `nobody`"));
}

/// Runs `quota-billing` with `args` (bounded); its exit code, stdout and stderr.
fn billing_cli_status(args: &[&str]) -> (Option<i32>, String, String) {
    let out = harness::process::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_quota-billing"))
            .args(args)
            .env_remove("QUOTA_BILLING_POSTGRES")
            .env_remove("QUOTA_CATALOG")
            .env_remove("QUOTA_ADMIN_TARGET"),
        Duration::from_secs(30),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `quota-billing statement ACCOUNT --json`: its exit code and the statement.
fn statement_json(url: &str, account: &str) -> (Option<i32>, serde_json::Value) {
    let (code, stdout, stderr) =
        billing_cli_status(&["statement", "--postgres", url, account, "--json"]);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("statement of {account}: {e}: {stdout} {stderr}"));
    (code, json)
}

/// The open gaps in the database, as `account|first|last` rows.
async fn gap_rows(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT account_id, first_seq, last_seq FROM sequence_gaps ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}",
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2)
            )
        })
        .collect()
}

/// The quickstart's mistake: another reader acks the first events in billing's own group, so
/// `quota-billing run` starts at sequence 5. The hole is logged, counted, recorded, and the
/// statement names 1-4 and exits 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acked_before_billing_started_are_a_gap_the_statement_reports() {
    let db = TestDatabase::create().await;
    // The other reader's unacked deliveries come to billing after half a second.
    let sidecar = Sidecar::start_with(
        "memory",
        Some(TOKEN),
        &["--events-claim-idle-ms", "500"],
        &[],
    );
    wait_serving(sidecar.worker).await;
    let mut admin_client =
        pb::quota_admin_client::QuotaAdminClient::new(channel(sidecar.admin()).await);
    let mut worker = pb::quota_client::QuotaClient::new(channel(sidecar.worker).await);
    admin_client
        .set_plan(admin(pb::SetPlanRequest {
            request_id: "start".into(),
            account_id: "acct-1".into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        }))
        .await
        .unwrap();
    admin_client
        .grant_credits(admin(pb::GrantCreditsRequest {
            account_id: "acct-1".into(),
            grant_id: "welcome".into(),
            units: 200,
            source: pb::CreditSource::Promotional as i32,
            expires_at: None,
        }))
        .await
        .unwrap();
    for g in ["gen-1", "gen-2"] {
        worker
            .reserve(pb::ReserveRequest {
                account_id: "acct-1".into(),
                generation_id: g.into(),
                kind: pb::GenerationKind::Video as i32,
                model: "standard".into(),
                quantity: 5,
                ttl_seconds: 0,
                labels: Default::default(),
            })
            .await
            .unwrap();
        worker
            .settle(pb::SettleRequest {
                account_id: "acct-1".into(),
                generation_id: g.into(),
                actual_quantity: None,
            })
            .await
            .unwrap();
    }
    // Six events (plan, grant, two reserved, two settled); someone else reads the first four
    // in group `billing` and acks them.
    let mut events_client =
        pb::usage_events_client::UsageEventsClient::new(channel(sidecar.admin()).await);
    let mut stream = events_client
        .subscribe(admin(pb::SubscribeRequest {
            group: "billing".into(),
            consumer: "someone-else".into(),
            ephemeral: false,
        }))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while acked.len() < 4 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        assert_eq!(e.sequence, acked.len() as u64 + 1, "{e:?}");
        acked.push(e.ack_id);
    }
    events_client
        .ack(admin(pb::AckRequest {
            group: "billing".into(),
            ack_ids: acked,
        }))
        .await
        .unwrap();
    drop(stream);

    let billing = Billing::start(&sidecar.admin().to_string(), &db.url(), TOKEN, &[]);
    let client = loop_until_schema(&db).await;
    // 5 and 6 (delivered to the other reader too, unacked: claimed once idle).
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&client, "SELECT count(*) FROM usage_events").await < 2 {
        assert!(Instant::now() < deadline, "events not written in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gap_rows(&client).await, ["acct-1|1|4"]);
    let (_, page) = http_get(billing.http, "/metrics").await;
    assert_eq!(
        sample(&page, "quota_billing_sequence_gaps_total"),
        1.0,
        "{page}"
    );
    assert!(
        page.contains("quota_billing_sequence_gaps_closed_total 0"),
        "from the start at zero: {page}"
    );

    let (code, s) = statement_json(&db.url(), "acct-1");
    assert_eq!(code, Some(3), "{s}");
    assert_eq!(s["complete"], json!(false), "{s}");
    assert_eq!(s["missing_seq"], json!([[1, 4]]), "{s}");
    let (code, text, stderr) =
        billing_cli_status(&["statement", "--postgres", &db.url(), "acct-1"]);
    assert_eq!(code, Some(3), "{text} {stderr}");
    assert!(text.contains("INCOMPLETE"), "{text}");
    assert!(text.contains("sequence 1-4"), "{text}");
    assert!(stderr.contains("incomplete"), "{stderr}");
}

/// A batch with a hole, then the missing events delivered again (a claim after another
/// consumer of the group died): the gap closes and the statement is whole again. The state
/// lives in the database, so a new connection (a restarted consumer) carries on from it, and
/// two consumers writing one account's events at once leave no gap and no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_filled_by_redelivery_clears_it() {
    let db = TestDatabase::create().await;
    let settings = PgSettings {
        url: db.url(),
        ca_file: None,
    };
    let mut writer = Writer::connect(&settings).await.unwrap();
    let all = a_day();
    // 1-3, then 7-18: 4, 5, 6 were delivered to a consumer that died before writing them.
    let mut first: Vec<_> = all[..3].to_vec();
    first.extend_from_slice(&all[6..]);
    let outcome = writer.write_batch(&first).await.unwrap();
    assert_eq!(outcome.sequence_changes.len(), 1, "{outcome:?}");
    let change = &outcome.sequence_changes[0];
    assert_eq!(change.account_id, "a");
    assert_eq!(
        (
            change.change.opened.len(),
            change.change.opened[0].first_seq,
            change.change.opened[0].last_seq
        ),
        (1, 4, 6)
    );
    let client = db.client().await;
    assert_eq!(gap_rows(&client).await, ["a|4|6"]);
    let (code, s) = statement_json(&db.url(), "a");
    assert_eq!(
        (code, &s["complete"], &s["missing_seq"]),
        (Some(3), &json!(false), &json!([[4, 6]])),
        "{s}"
    );

    // Redelivered on a new connection, the middle one first: the gap splits, then closes.
    let mut restarted = Writer::connect(&settings).await.unwrap();
    restarted.write_batch(&all[4..5]).await.unwrap();
    assert_eq!(gap_rows(&client).await, ["a|4|4", "a|6|6"]);
    let outcome = restarted.write_batch(&all[3..6]).await.unwrap();
    assert_eq!(
        (
            outcome.written,
            outcome.duplicates,
            outcome.sequence_changes[0].change.closed
        ),
        (2, 1, 2)
    );
    assert_eq!(gap_rows(&client).await, Vec::<String>::new());
    let (code, s) = statement_json(&db.url(), "a");
    assert_eq!(
        (code, &s["complete"], &s["missing_seq"]),
        (Some(0), &json!(true), &json!([])),
        "{s}"
    );
    // The filled events count: g1's settle (sequence 5) is in the usage now.
    assert_eq!(
        count(
            &client,
            "SELECT sum(allowance_units)::bigint FROM cycle_usage WHERE account_id = 'a'"
        )
        .await,
        40
    );
    // Everything again changes nothing.
    assert!(restarted
        .write_batch(&all)
        .await
        .unwrap()
        .sequence_changes
        .is_empty());

    // Two consumers, three accounts, batches in opposite account orders and committed in any
    // order: once all are in, no gap is left and every account expects its next event.
    let event = |account: &str, seq: u64| pb::UsageEvent {
        id: format!("{account}/c{seq}@1000:granted"),
        r#type: "credits.granted".into(),
        account_id: account.into(),
        time: at(seq as i64),
        sequence: seq,
        grant_id: format!("c{seq}"),
        units: 1,
        source: "promotional".into(),
        ack_id: format!("2/{seq}-0"),
        ..Default::default()
    };
    let batches: Vec<Vec<pb::UsageEvent>> = (0..20u64)
        .map(|b| {
            let mut batch: Vec<_> = ["x", "y", "z"]
                .iter()
                .flat_map(|a| (1..=5).map(move |i| event(a, b * 5 + i)))
                .collect();
            if b % 2 == 1 {
                batch.reverse();
            }
            batch
        })
        .collect();
    let (odd, even): (Vec<_>, Vec<_>) = batches
        .into_iter()
        .enumerate()
        .partition(|(b, _)| b % 2 == 1);
    let second = Writer::connect(&settings).await.unwrap();
    // Newest first, so most batches find a hole that a batch of the other consumer fills.
    let drive = |mut writer: Writer, batches: Vec<(usize, Vec<pb::UsageEvent>)>| async move {
        for (_, batch) in batches.into_iter().rev() {
            writer.write_batch(&batch).await.unwrap();
        }
    };
    let (one, two) = (
        tokio::spawn(drive(restarted, odd)),
        tokio::spawn(drive(second, even)),
    );
    tokio::time::timeout(Duration::from_secs(60), async {
        one.await.unwrap();
        two.await.unwrap();
    })
    .await
    .expect("concurrent batches finish (no deadlock)");
    assert_eq!(gap_rows(&client).await, Vec::<String>::new());
    let next: Vec<String> = client
        .query(
            "SELECT account_id, next_seq FROM account_sequences ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{}|{}", r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    assert_eq!(next, ["a|19", "x|101", "y|101", "z|101"]);
}

/// A role that does not exist, a database that does not exist, and an admin token the
/// sidecar refuses: `run` stops at once, non-zero, saying what is wrong (it used to retry
/// forever, logging `PostgreSQL: db error`); statements say it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_stop_the_consumer_with_the_servers_message() {
    let db = TestDatabase::create().await;
    let sidecar = Sidecar::start("memory", Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let admin_target = sidecar.admin().to_string();
    let run = |postgres: &str, token: &str| {
        let out = harness::process::output_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_quota-billing"))
                .args([
                    "run",
                    "--admin-target",
                    &admin_target,
                    "--postgres",
                    postgres,
                    "--listen",
                    "127.0.0.1:0",
                    "--backoff-max-ms",
                    "200",
                ])
                .env("QUOTA_ADMIN_TOKEN", token)
                .env("RUST_LOG", "info")
                .env_remove("QUOTA_BILLING_GROUP")
                .env_remove("QUOTA_BILLING_CONSUMER")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Duration::from_secs(30),
        );
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let wrong_role = format!("postgres://no_such_role_b1@127.0.0.1:5432/{}", db.name);
    let (status, stderr) = run(&wrong_role, TOKEN);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("quota-billing: "), "{stderr}");
    assert!(last.contains("no_such_role_b1"), "names the role: {last}");
    assert!(last.contains("28"), "the SQLSTATE: {last}");
    assert!(!stderr.contains("db error"), "{stderr}");
    assert!(!stderr.contains("retry_in_ms"), "not retried: {stderr}");

    let wrong_db = "postgres://postgres@127.0.0.1:5432/no_such_database_b1";
    let (status, stderr) = run(wrong_db, TOKEN);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("no_such_database_b1"),
        "{stderr}"
    );

    // The database is right, the token is not: UNAUTHENTICATED from the sidecar.
    let (status, stderr) = run(&db.url(), "not-the-token");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("Subscribe") && last.contains("valid authentication credentials"),
        "{last}"
    );

    // Reports say it too.
    let (code, _, stderr) = billing_cli_status(&["statement", "--postgres", &wrong_role, "acct-1"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("role \"no_such_role_b1\" does not exist"),
        "{stderr}"
    );
}
