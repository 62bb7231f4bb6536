//! Billable events (`hold.settled`, `hold.refunded`, `plan.upgraded`) in the shapes billing
//! systems ingest, one per line:
//!
//! - `cloudevents`: CloudEvents 1.0 JSON, as OpenMeter ingests them;
//! - `stripe`: Stripe meter events (`event_name`, `payload.stripe_customer_id`,
//!   `payload.value` as strings, `identifier`, `timestamp`);
//! - `lago`: Lago events (`transaction_id`, `external_subscription_id`, `code`, `timestamp`,
//!   `properties`);
//! - `csv`: a header, then one row per event.
//!
//! A refund is a correction of earlier usage: every format carries it as an event of the usage
//! meter with a negative value (the three systems sum such values; a Stripe cancellation
//! adjustment can only withdraw a whole event, within 24 hours). Customer ids come from
//! `billing_customers`, falling back to the account id.

use std::io::Write;

use ring::digest;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::record::{HOLD_REFUNDED, NO_CYCLE};
use super::BillingError;
use crate::api::event_json::rfc3339_ms;
use crate::events;

/// Longest Stripe meter event identifier.
pub const STRIPE_IDENTIFIER_MAX_CHARS: usize = 100;

/// An output format (also the `--format` values of `quota-billing export`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(name = "cloudevents")]
    CloudEvents,
    Stripe,
    Lago,
    Csv,
}

/// Names the target systems know the meters by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    pub format: Format,
    /// Events at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Events before this time.
    pub to: Option<OffsetDateTime>,
    /// CloudEvents `source`.
    pub source: String,
    /// Meter (Stripe `event_name`, Lago `code`, CloudEvents `type`) of generation units.
    pub usage_meter: String,
    /// Meter of prorated upgrade charges, in cents.
    pub upgrade_meter: String,
}

impl ExportOptions {
    /// Default names for `format`.
    pub fn new(format: Format) -> ExportOptions {
        ExportOptions {
            format,
            from: None,
            to: None,
            source: "quota-sidecar".into(),
            usage_meter: "generation_units".into(),
            upgrade_meter: "plan_upgrade_cents".into(),
        }
    }
}

/// One billable event as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillableEvent {
    pub event_id: String,
    pub event_type: String,
    pub account_id: String,
    pub occurred_at: OffsetDateTime,
    pub generation_id: String,
    pub kind: String,
    pub model: String,
    pub units: i64,
    pub from_allowance_units: i64,
    pub from_credits_units: i64,
    pub charge_cents: i64,
    pub cycle_start: Option<OffsetDateTime>,
    pub refund_id: String,
    /// hold.refunded: units back to the allowance, and the grant the rest went to.
    pub allowance_added_units: i64,
    pub grant_id: String,
    pub plan: String,
    pub previous_plan: String,
    pub stripe_customer_id: String,
    pub lago_external_subscription_id: String,
    pub openmeter_subject: String,
}

impl BillableEvent {
    fn is_upgrade(&self) -> bool {
        self.event_type == events::PLAN_UPGRADED
    }

    /// Signed amount: units charged (negative for a refund), or cents for an upgrade.
    pub fn value(&self) -> i64 {
        match self.event_type.as_str() {
            events::PLAN_UPGRADED => self.charge_cents,
            HOLD_REFUNDED => -self.units,
            _ => self.units,
        }
    }

    fn meter<'a>(&self, options: &'a ExportOptions) -> &'a str {
        if self.is_upgrade() {
            &options.upgrade_meter
        } else {
            &options.usage_meter
        }
    }

    fn cycle_json(&self) -> Value {
        match self.cycle_start {
            Some(c) if c != NO_CYCLE => Value::String(rfc3339_ms(c)),
            _ => Value::Null,
        }
    }

    /// What the event says beyond its value, for `data` / `properties`.
    fn details(&self) -> Value {
        if self.is_upgrade() {
            json!({
                "charge_cents": self.charge_cents,
                "plan": self.plan,
                "previous_plan": self.previous_plan,
                "cycle_start": self.cycle_json(),
                "event_type": self.event_type,
            })
        } else if self.event_type == HOLD_REFUNDED {
            json!({
                "units": self.value(),
                "from_allowance_units": -self.from_allowance_units,
                "from_credits_units": -self.from_credits_units,
                "kind": self.kind,
                "model": self.model,
                "generation_id": self.generation_id,
                "cycle_start": self.cycle_json(),
                "refund_id": self.refund_id,
                "corrects": self.corrected_event_id(),
                "allowance_restored_units": self.allowance_added_units,
                "refund_grant_id": self.grant_id,
                "refund_grant_units": self.units - self.allowance_added_units,
                "event_type": self.event_type,
            })
        } else {
            json!({
                "units": self.value(),
                "from_allowance_units": self.sign() * self.from_allowance_units,
                "from_credits_units": self.sign() * self.from_credits_units,
                "kind": self.kind,
                "model": self.model,
                "generation_id": self.generation_id,
                "cycle_start": self.cycle_json(),
                "refund_id": self.refund_id,
                "event_type": self.event_type,
            })
        }
    }

    /// hold.refunded: the id of the hold.settled event whose charge it corrects (same stem,
    /// `:settled` for `:refunded:<refund_id>`).
    pub fn corrected_event_id(&self) -> String {
        let suffix = format!(":refunded:{}", self.refund_id);
        match self.event_id.strip_suffix(&suffix) {
            Some(stem) if self.event_type == HOLD_REFUNDED => format!("{stem}:settled"),
            _ => String::new(),
        }
    }

    fn sign(&self) -> i64 {
        if self.event_type == HOLD_REFUNDED {
            -1
        } else {
            1
        }
    }
}

/// A Stripe identifier: the event id when it fits, else `sha256:` and its digest in hex
/// (71 characters). Deterministic, so a re-export is de-duplicated by Stripe.
pub fn stripe_identifier(event_id: &str) -> String {
    if event_id.chars().count() <= STRIPE_IDENTIFIER_MAX_CHARS {
        return event_id.to_string();
    }
    let d = digest::digest(&digest::SHA256, event_id.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The header line of the CSV format.
pub const CSV_HEADER: &str = "event_id,event_type,account_id,time,generation_id,kind,model,\
     units,from_allowance_units,from_credits_units,charge_cents,cycle_start,refund_id,plan,\
     previous_plan";

/// One CSV cell: quoted when it holds a comma, a quote or a line break.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `e` as one line of `options.format` (no line break).
pub fn line(e: &BillableEvent, options: &ExportOptions) -> String {
    match options.format {
        Format::CloudEvents => json!({
            "specversion": "1.0",
            "type": e.meter(options),
            "id": e.event_id,
            "source": options.source,
            "subject": e.openmeter_subject,
            "time": rfc3339_ms(e.occurred_at),
            "datacontenttype": "application/json",
            "data": e.details(),
        })
        .to_string(),
        Format::Stripe => json!({
            "event_name": e.meter(options),
            "payload": {
                "stripe_customer_id": e.stripe_customer_id,
                "value": e.value().to_string(),
            },
            "identifier": stripe_identifier(&e.event_id),
            "timestamp": e.occurred_at.unix_timestamp(),
        })
        .to_string(),
        Format::Lago => {
            let mut properties = e.details();
            properties["value"] = json!(e.value());
            json!({
                "transaction_id": e.event_id,
                "external_subscription_id": e.lago_external_subscription_id,
                "code": e.meter(options),
                "timestamp": e.occurred_at.unix_timestamp(),
                "properties": properties,
            })
            .to_string()
        }
        Format::Csv => {
            let cycle = e.cycle_json();
            [
                csv_cell(&e.event_id),
                csv_cell(&e.event_type),
                csv_cell(&e.account_id),
                rfc3339_ms(e.occurred_at),
                csv_cell(&e.generation_id),
                csv_cell(&e.kind),
                csv_cell(&e.model),
                if e.is_upgrade() { 0 } else { e.value() }.to_string(),
                (e.sign() * e.from_allowance_units).to_string(),
                (e.sign() * e.from_credits_units).to_string(),
                e.charge_cents.to_string(),
                cycle.as_str().unwrap_or_default().to_string(),
                csv_cell(&e.refund_id),
                csv_cell(&e.plan),
                csv_cell(&e.previous_plan),
            ]
            .join(",")
        }
    }
}

/// Writes the billable events of the window to `out`, oldest first; returns how many.
pub async fn export(
    client: &Client,
    options: &ExportOptions,
    out: &mut impl Write,
) -> Result<u64, BillingError> {
    let rows = client
        .query(
            "SELECT e.event_id, e.event_type, e.account_id, e.occurred_at, e.generation_id, \
             e.kind, e.model, e.units, e.from_allowance_units, e.from_credits_units, \
             e.prorated_charge_cents, e.cycle_start, e.refund_id, e.plan, e.previous_plan, \
             e.allowance_added_units, e.grant_id, \
             COALESCE(c.stripe_customer_id, e.account_id), \
             COALESCE(c.lago_external_subscription_id, e.account_id), \
             COALESCE(c.openmeter_subject, e.account_id) \
             FROM usage_events e LEFT JOIN billing_customers c ON c.account_id = e.account_id \
             WHERE e.event_type IN ('hold.settled', 'hold.refunded', 'plan.upgraded') \
             AND ($1::timestamptz IS NULL OR e.occurred_at >= $1) \
             AND ($2::timestamptz IS NULL OR e.occurred_at < $2) \
             ORDER BY e.occurred_at, e.event_id",
            &[&options.from, &options.to],
        )
        .await?;
    if options.format == Format::Csv {
        writeln!(out, "{CSV_HEADER}")?;
    }
    for r in &rows {
        let e = BillableEvent {
            event_id: r.get(0),
            event_type: r.get(1),
            account_id: r.get(2),
            occurred_at: r.get(3),
            generation_id: r.get(4),
            kind: r.get(5),
            model: r.get(6),
            units: r.get(7),
            from_allowance_units: r.get(8),
            from_credits_units: r.get(9),
            charge_cents: r.get(10),
            cycle_start: r.get(11),
            refund_id: r.get(12),
            plan: r.get(13),
            previous_plan: r.get(14),
            allowance_added_units: r.get(15),
            grant_id: r.get(16),
            stripe_customer_id: r.get(17),
            lago_external_subscription_id: r.get(18),
            openmeter_subject: r.get(19),
        };
        writeln!(out, "{}", line(&e, options))?;
    }
    out.flush()?;
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_become_a_fixed_length_digest() {
        assert_eq!(stripe_identifier("a/g@1:settled"), "a/g@1:settled");
        let long = "a".repeat(128) + "/" + &"g".repeat(128) + "@1:settled";
        let id = stripe_identifier(&long);
        assert!(id.len() <= STRIPE_IDENTIFIER_MAX_CHARS && id.starts_with("sha256:"));
        assert_eq!(id, stripe_identifier(&long));
        assert_ne!(id, stripe_identifier(&(long.clone() + "x")));
    }

    #[test]
    fn csv_cells_are_quoted_when_needed() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
