//! What the Lua scripts answer: one JSON object per call (`cjson` inside Redis), read here with
//! serde. Numbers travel as strings, so no amount loses precision on the way (Lua numbers are
//! doubles and `cjson` prints 14 significant digits).

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::ledger::{CreditSource, GrantDraw, Kind};
use crate::store::{Balance, Grant, Hold, HoldState, StoreError, StoreResult};

/// A script's answer: a status (`ok`, `replayed`, or the refusal) and the fields it carries.
#[derive(Debug, Deserialize)]
pub struct ScriptReply {
    pub status: String,
    pub hold: Option<HoldReply>,
    pub balance: Option<BalanceReply>,
    pub grant: Option<GrantReply>,
    #[serde(default, deserialize_with = "list")]
    pub grants: Vec<GrantReply>,
    #[serde(default, deserialize_with = "list")]
    pub holds: Vec<HoldReply>,
    #[serde(default, deserialize_with = "opt_num")]
    pub charged: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub returned: Option<u64>,
    pub kind: Option<String>,
    pub model: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    pub qty: Option<u32>,
    pub plan: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    pub open: Option<u32>,
    #[serde(default, deserialize_with = "opt_num")]
    pub needed: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub available: Option<u64>,
    pub state: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    pub reserved: Option<u32>,
    pub change: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    pub effective: Option<i64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub added: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub charge: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub revoked: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub expired: Option<u32>,
    #[serde(default, deserialize_with = "opt_num")]
    pub charged_allowance: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub charged_credits: Option<u64>,
    /// Quote: the cost and its split.
    #[serde(default, deserialize_with = "opt_num")]
    pub cost: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub fa: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub fc: Option<u64>,
    /// Quote: what Reserve would refuse with; ReserveBatch: why an item failed.
    pub refusal: Option<Box<ScriptReply>>,
    /// ReserveBatch: the failing item (or, in a conflict, an item not reserved), and the
    /// generation a conflict names.
    #[serde(default, deserialize_with = "opt_num")]
    pub index: Option<usize>,
    pub gen: Option<String>,
    /// Refund.
    #[serde(default, deserialize_with = "opt_num")]
    pub refunded: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub to_allowance: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub to_credits: Option<u64>,
    pub refund_grant: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    pub requested: Option<u64>,
    #[serde(default, deserialize_with = "opt_num")]
    pub refundable: Option<u64>,
}

/// A hold as the scripts describe it.
#[derive(Debug, Deserialize)]
pub struct HoldReply {
    pub gen: String,
    pub kind: String,
    pub model: String,
    #[serde(deserialize_with = "num")]
    pub qty: u32,
    #[serde(deserialize_with = "num")]
    pub cost: u64,
    #[serde(deserialize_with = "num")]
    pub fa: u64,
    #[serde(deserialize_with = "num")]
    pub fc: u64,
    pub draws: String,
    pub state: String,
    #[serde(deserialize_with = "num")]
    pub exp: i64,
    #[serde(deserialize_with = "num")]
    pub created: i64,
    #[serde(deserialize_with = "num")]
    pub charged: u64,
}

/// An account's balance as the scripts describe it.
#[derive(Debug, Deserialize)]
pub struct BalanceReply {
    pub plan: String,
    pub scheduled: String,
    pub cycle_start: String,
    pub cycle_end: String,
    #[serde(deserialize_with = "num")]
    pub total: u64,
    #[serde(deserialize_with = "num")]
    pub used: u64,
    #[serde(deserialize_with = "num")]
    pub held: u64,
    #[serde(deserialize_with = "num")]
    pub available: u64,
    #[serde(deserialize_with = "num")]
    pub credits: u64,
    #[serde(deserialize_with = "num")]
    pub credits_held: u64,
    #[serde(deserialize_with = "num")]
    pub open: u32,
}

/// A grant as the scripts describe it.
#[derive(Debug, Deserialize)]
pub struct GrantReply {
    pub id: String,
    pub source: String,
    #[serde(deserialize_with = "num")]
    pub granted: u64,
    #[serde(deserialize_with = "num")]
    pub remaining: u64,
    #[serde(deserialize_with = "num")]
    pub held: u64,
    pub expires: String,
    #[serde(deserialize_with = "num")]
    pub created: i64,
}

/// The error for a reply the store cannot make sense of (a bug, never expected).
pub fn anomaly(what: impl Display) -> StoreError {
    StoreError::Internal(format!("unexpected script reply: {what}"))
}

impl ScriptReply {
    /// Parses a script's JSON answer.
    pub fn parse(json: &str) -> StoreResult<ScriptReply> {
        serde_json::from_str(json).map_err(|e| anomaly(format!("{e} in {json}")))
    }

    /// A field the reply must carry.
    pub fn need<T>(field: Option<T>, name: &str) -> StoreResult<T> {
        field.ok_or_else(|| anomaly(format!("no `{name}`")))
    }

    pub fn hold(&mut self, account_id: &str) -> StoreResult<Hold> {
        Self::need(self.hold.take(), "hold")?.into_hold(account_id)
    }

    pub fn balance(&mut self, account_id: &str) -> StoreResult<Balance> {
        Ok(Self::need(self.balance.take(), "balance")?.into_balance(account_id))
    }
}

impl HoldReply {
    pub fn into_hold(self, account_id: &str) -> StoreResult<Hold> {
        Ok(Hold {
            account_id: account_id.to_string(),
            kind: Kind::parse(&self.kind)
                .ok_or_else(|| anomaly(format!("kind `{}`", self.kind)))?,
            state: parse_state(&self.state)?,
            grants: parse_draws(&self.draws)?,
            generation_id: self.gen,
            model: self.model,
            quantity: self.qty,
            cost_units: self.cost,
            from_allowance: self.fa,
            from_credits: self.fc,
            expires_at_ms: self.exp,
            created_at_ms: self.created,
            charged_units: self.charged,
        })
    }
}

impl BalanceReply {
    pub fn into_balance(self, account_id: &str) -> Balance {
        let time = |s: &str| s.parse::<i64>().ok();
        Balance {
            account_id: account_id.to_string(),
            cycle_start_ms: time(&self.cycle_start),
            cycle_end_ms: time(&self.cycle_end),
            plan: self.plan,
            scheduled_plan: (!self.scheduled.is_empty()).then_some(self.scheduled),
            allowance_total: self.total,
            allowance_used: self.used,
            allowance_held: self.held,
            allowance_available: self.available,
            credits_available: self.credits,
            credits_held: self.credits_held,
            open_holds: self.open,
        }
    }
}

impl GrantReply {
    pub fn into_grant(self) -> StoreResult<Grant> {
        Ok(Grant {
            source: CreditSource::parse(&self.source)
                .ok_or_else(|| anomaly(format!("source `{}`", self.source)))?,
            expires_at_ms: if self.expires.is_empty() {
                None
            } else {
                Some(self.expires.parse().map_err(anomaly)?)
            },
            grant_id: self.id,
            units_granted: self.granted,
            units_remaining: self.remaining,
            units_held: self.held,
            created_at_ms: self.created,
        })
    }
}

/// A hold state by its stable id.
pub fn parse_state(s: &str) -> StoreResult<HoldState> {
    HoldState::parse(s).ok_or_else(|| anomaly(format!("state `{s}`")))
}

/// `"g1=5,g2=3"` → draws.
fn parse_draws(text: &str) -> StoreResult<Vec<GrantDraw>> {
    crate::events::parse_draws(text).map_err(anomaly)
}

/// A number sent as a string.
fn num<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error>
where
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(D::Error::custom)
}

fn opt_num<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error>
where
    T::Err: Display,
{
    num(d).map(Some)
}

/// A list; `cjson` writes an empty Lua table as `{}`.
fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_reply_with_large_numbers_and_empty_lists() {
        let mut r = ScriptReply::parse(
            r#"{"status":"ok","grants":{},"holds":[],"charged":"9007199254740991",
               "balance":{"plan":"none","scheduled":"","cycle_start":"","cycle_end":"",
               "total":"0","used":"0","held":"0","available":"0","credits":"5",
               "credits_held":"0","open":"0"}}"#,
        )
        .unwrap();
        assert_eq!(r.charged, Some(9_007_199_254_740_991));
        assert!(r.grants.is_empty() && r.holds.is_empty());
        let b = r.balance("a").unwrap();
        assert_eq!((b.cycle_start_ms, b.credits_available), (None, 5));
        assert!(ScriptReply::parse(r#"{"status":"ok","qty":"x"}"#).is_err());
    }
}
