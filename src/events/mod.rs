//! Usage events: the outbox every store operation writes in the same atomic step as its change,
//! its encoding in a Redis Stream entry, and the readers that hand it to billing and analytics
//! through consumer groups with acknowledgements (at-least-once).

pub mod instrumented;
pub mod pending_gauge;
pub mod trimmer;

use async_trait::async_trait;

pub use crate::ledger::event::*;

use crate::ledger::{GrantDraw, Kind};
use crate::store::keys::Shards;
use crate::store::{StoreError, StoreResult};

/// The event log read through consumer groups. Every shard has its own log; a group reads all
/// of them. Delivery is at-least-once: an event stays pending for its group until acked.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Up to `max` events for `consumer` of `group`; the group is created on first use at the
    /// oldest retained event. Per shard: with `resume`, this consumer's own unacked events
    /// first (for a consumer that reconnects); then events other consumers left unacked for
    /// `claim_idle_ms` or more; then new events. `max = 0` reads (and creates) nothing.
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        resume: bool,
        claim_idle_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Vec<UsageEvent>>;
    /// Acknowledges events by ack id; returns how many were pending for the group.
    async fn ack(&self, group: &str, ack_ids: &[String]) -> StoreResult<u32>;
    /// A consumer went away: its unacked events become claimable by the others at once.
    async fn abandon(&self, group: &str, consumer: &str) -> StoreResult<()>;
    /// Drops history that every group has acked and that is older than the retention's age or
    /// beyond its size; never an event some group has not acked. Returns how many events were
    /// dropped.
    async fn trim(&self, retention: Retention, now_ms: i64) -> StoreResult<u64>;
    /// Events delivered to `group` and not acked yet.
    async fn pending(&self, group: &str) -> StoreResult<u64>;
    /// Drops the oldest events of every shard log beyond `max_retained_per_shard`, acked or
    /// not, so that a consumer that stops reading cannot fill the store. What a durable group
    /// had not acked is recorded as its [`Loss`], for [`EventLog::take_losses`].
    async fn enforce_cap(&self, max_retained_per_shard: u64) -> StoreResult<CapTrim>;
    /// What the cap dropped before `group` read it, per shard, once: the record is cleared.
    async fn take_losses(&self, group: &str) -> StoreResult<Vec<Loss>>;
    /// Removes `group` from every shard (its position, its pending events, its losses);
    /// whether it existed.
    async fn delete_group(&self, group: &str) -> StoreResult<bool>;
    /// Every consumer group (ephemeral ones included), summed over the shards, in name order.
    /// `now_ms` is the store's time, against which the oldest unacked event's age is measured.
    async fn groups(&self, now_ms: i64) -> StoreResult<Vec<GroupInfo>>;
}

/// One consumer group as [`EventLog::groups`] reports it, summed over the shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    /// Events delivered to the group and not acked yet.
    pub pending: u64,
    /// Ack id of the oldest unacked event, if any.
    pub oldest_unacked_ack_id: Option<String>,
    /// How long ago the oldest unacked event was written (0 when there is none).
    pub oldest_unacked_age_ms: u64,
    /// Retained events not yet delivered to the group.
    pub lag: u64,
}

impl GroupInfo {
    /// Adds one shard's oldest unacked event (written at `written_ms`) to the summary: the
    /// older of the two is kept.
    pub fn note_unacked(&mut self, ack_id: String, written_ms: i64, now_ms: i64) {
        let age = now_ms.saturating_sub(written_ms).max(0) as u64;
        if self.oldest_unacked_ack_id.is_none() || age > self.oldest_unacked_age_ms {
            self.oldest_unacked_ack_id = Some(ack_id);
            self.oldest_unacked_age_ms = age;
        }
    }
}

/// Names of ephemeral groups (`SubscribeRequest.ephemeral`) start with this: such a group
/// never holds back trimming, is never told of losses and is removed when its stream ends.
pub const EPHEMERAL_PREFIX: &str = "ephemeral:";

/// Whether `group` is ephemeral (see [`EPHEMERAL_PREFIX`]).
pub fn is_ephemeral(group: &str) -> bool {
    group.starts_with(EPHEMERAL_PREFIX)
}

/// Events of one shard that the retention cap dropped before a group acked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub group: String,
    pub shard: u32,
    /// Ack ids of the first and last event missed.
    pub first_ack_id: String,
    pub last_ack_id: String,
    pub count: u64,
}

/// What one [`EventLog::enforce_cap`] pass dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapTrim {
    /// Every event dropped.
    pub dropped: u64,
    /// Events dropped that some durable group had not acked.
    pub dropped_unacked: u64,
    /// Per group and shard, what it lost in this pass.
    pub losses: Vec<Loss>,
}

/// How much fully acked history the trimmer keeps. Unacked events are always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Acked events older than this are dropped.
    pub keep_ms: i64,
    /// At most this many acked events are kept per shard log (the oldest go first).
    pub max_events_per_shard: u64,
    /// Hard cap: at most this many events, acked or not, per shard log.
    pub max_retained_per_shard: u64,
}

impl Retention {
    /// Keep acked events for `keep_ms`, however many there are.
    pub fn by_age(keep_ms: i64) -> Retention {
        Retention {
            keep_ms,
            max_events_per_shard: u64::MAX,
            max_retained_per_shard: u64::MAX,
        }
    }
}

/// Where an event sits: its shard and its id in that shard's log (`<shard>/<stream id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckId {
    pub shard: u32,
    pub entry_id: String,
}

impl AckId {
    /// Parses `<shard>/<ms>-<seq>` of a deployment of `shards` shards; the error names the
    /// `ack_ids` field.
    pub fn parse_in(text: &str, shards: Shards) -> StoreResult<AckId> {
        let id = AckId::parse(text)?;
        if !shards.contains(id.shard) {
            return Err(StoreError::invalid_argument(
                "ack_ids",
                format!(
                    "`{text}` names shard {}, but this deployment has {shards} shards",
                    id.shard
                ),
            ));
        }
        Ok(id)
    }

    /// Parses `<shard>/<ms>-<seq>` with any possible shard (see [`Shards::MAX`]); the error
    /// names the `ack_ids` field.
    pub fn parse(text: &str) -> StoreResult<AckId> {
        let bad = || {
            StoreError::invalid_argument(
                "ack_ids",
                format!("`{text}` is not an ack id from Subscribe"),
            )
        };
        let (shard, entry_id) = text.split_once('/').ok_or_else(bad)?;
        let shard: u32 = shard.parse().map_err(|_| bad())?;
        let (ms, seq) = entry_id.split_once('-').ok_or_else(bad)?;
        if shard >= Shards::MAX || ms.parse::<u64>().is_err() || seq.parse::<u64>().is_err() {
            return Err(bad());
        }
        Ok(AckId {
            shard,
            entry_id: entry_id.to_string(),
        })
    }

    /// `<shard>/<entry id>`.
    pub fn format(shard: u32, entry_id: &str) -> String {
        format!("{shard}/{entry_id}")
    }
}

impl UsageEvent {
    /// Builds an event from a stream entry's fields (as the scripts write them).
    pub fn from_fields<'a>(
        ack_id: String,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<UsageEvent, String> {
        let mut e = UsageEvent {
            ack_id,
            ..UsageEvent::default()
        };
        let num = |name: &str, v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("event field `{name}`: `{v}` is not a number"))
        };
        let time = |name: &str, v: &str| -> Result<Option<i64>, String> {
            if v.is_empty() || v == "0" {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| format!("event field `{name}`: `{v}` is not a time"))
        };
        for (name, v) in fields {
            match name {
                "id" => e.id = v.to_string(),
                "type" => e.event_type = v.to_string(),
                "account" => e.account_id = v.to_string(),
                "time" => e.time_ms = time(name, v)?.unwrap_or_default(),
                "seq" => e.sequence = num(name, v)?,
                "gen" => e.generation_id = v.to_string(),
                "kind" => e.kind = Kind::parse(v),
                "model" => e.model = v.to_string(),
                "qty" => e.quantity = num(name, v)? as u32,
                "units" => e.units = num(name, v)?,
                "fa" => e.from_allowance = num(name, v)?,
                "fc" => e.from_credits = num(name, v)?,
                "draws" => e.grants = parse_draws(v)?,
                "reason" => e.reason = v.to_string(),
                "plan" => e.plan = v.to_string(),
                "prev" => e.previous_plan = v.to_string(),
                "cycle" => e.cycle_start_ms = time(name, v)?,
                "added" => e.allowance_added = num(name, v)?,
                "charge" => e.prorated_charge_cents = num(name, v)?,
                "grant" => e.grant_id = v.to_string(),
                "source" => e.source = v.to_string(),
                "expires" => e.expires_at_ms = time(name, v)?,
                "effective" => e.effective_at_ms = time(name, v)?,
                "lost" => e.units_lost = num(name, v)?,
                "pct" => e.threshold_percent = num(name, v)? as u32,
                "refund" => e.refund_id = v.to_string(),
                "labels" => {
                    e.labels = serde_json::from_str(v)
                        .map_err(|err| format!("event field `labels`: {err}"))?
                }
                // Fields a newer version added are not an error for an older reader.
                _ => {}
            }
        }
        Ok(e)
    }
}

/// `"g1=5,g2=3"` → draws, in order.
pub fn parse_draws(text: &str) -> Result<Vec<GrantDraw>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let (grant_id, units) = pair
                .split_once('=')
                .ok_or_else(|| format!("bad grant draw `{pair}`"))?;
            Ok(GrantDraw {
                grant_id: grant_id.to_string(),
                units: units
                    .parse()
                    .map_err(|_| format!("bad grant draw `{pair}`"))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_ids() {
        assert_eq!(
            AckId::parse("3/1700000000000-2").unwrap(),
            AckId {
                shard: 3,
                entry_id: "1700000000000-2".into()
            }
        );
        for bad in ["", "3", "x/1-0", "16384/1-0", "3/1", "3/a-b", "3/1-0/x"] {
            assert!(AckId::parse(bad).is_err(), "{bad}");
        }
        // A shard beyond the deployment's count is no ack id of it.
        assert!(AckId::parse("99/1-0").is_ok());
        assert!(AckId::parse_in("99/1-0", Shards::DEFAULT).is_err());
        let many = Shards::new(256).unwrap();
        assert_eq!(AckId::parse_in("99/1-0", many).unwrap().shard, 99);
    }

    #[test]
    fn parses_a_stream_entry() {
        let fields = [
            ("id", "a/g1:settled"),
            ("type", "hold.settled"),
            ("account", "a"),
            ("time", "1700000000000"),
            ("seq", "7"),
            ("gen", "g1"),
            ("kind", "video"),
            ("model", "pro"),
            ("qty", "3"),
            ("units", "60"),
            ("fa", "40"),
            ("fc", "20"),
            ("draws", "promo=15,bought=5"),
            ("cycle", "0"),
            ("labels", r#"{"job":"j1"}"#),
            ("future_field", "x"),
        ];
        let e = UsageEvent::from_fields("3/1-0".into(), fields).unwrap();
        assert_eq!(e.sequence, 7);
        assert_eq!(e.kind, Some(Kind::Video));
        assert_eq!(e.grants.len(), 2);
        assert_eq!(e.grants[1].units, 5);
        assert_eq!(e.cycle_start_ms, None);
        assert_eq!(e.labels["job"], "j1");
        assert!(UsageEvent::from_fields(String::new(), [("seq", "x")]).is_err());
    }
}
