//! What the library's functions answer: one JSON object per call (`cjson` inside Redis), read
//! here with serde. Numbers travel as strings, so no amount loses precision on the way (Lua
//! numbers are doubles and `cjson` prints 14 significant digits).
//!
//! Each operation's reply is its own enum, tagged by `status`, beside its arguments in
//! `ops/<operation>.rs`; its variants are the statuses `lua/<operation>.lua` lists in its
//! header, so a status an operation cannot answer fails the parse. Here: the parts several
//! replies share (a hold, a balance, a grant, a refusal of a new generation), the reading of
//! numbers sent as strings, and the parse itself.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::ledger::{CreditSource, GrantDraw, Kind};
use crate::store::{Balance, Grant, Hold, HoldState, StoreError, StoreResult};

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

/// Why the library refused a new generation (Reserve, an item of ReserveBatch): the model is
/// not in the catalog, the plan does not allow it, or the funds do not cover it.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Refusal {
    UnknownModel,
    Denied(DeniedReply),
    Insufficient(ShortfallReply),
}

/// A plan's refusal: the account's plan and its open holds (the catalog rebuilds the denial).
#[derive(Debug, Deserialize)]
pub struct DeniedReply {
    pub plan: String,
    #[serde(deserialize_with = "num")]
    pub open: u32,
}

/// Funds that do not cover a cost.
#[derive(Debug, Deserialize)]
pub struct ShortfallReply {
    #[serde(deserialize_with = "num")]
    pub needed: u64,
    #[serde(deserialize_with = "num")]
    pub available: u64,
}

/// The terms of the hold a generation id already names (a conflict).
#[derive(Debug, Deserialize)]
pub struct HoldTerms {
    #[serde(deserialize_with = "kind")]
    pub kind: Kind,
    pub model: String,
    #[serde(deserialize_with = "num")]
    pub qty: u32,
}

/// The error for a reply the store cannot make sense of (a bug, never expected).
pub fn anomaly(what: impl Display) -> StoreError {
    StoreError::Internal(format!("unexpected script reply: {what}"))
}

/// Reads a function's JSON answer as the reply `R` of its operation. A status the operation
/// cannot answer, a missing field or a malformed number is an anomaly naming the raw reply.
pub fn parse<R: DeserializeOwned>(json: &str) -> StoreResult<R> {
    serde_json::from_str(json).map_err(|e| anomaly(format!("{e} in {json}")))
}

impl HoldReply {
    pub fn into_hold(self, account_id: &str) -> StoreResult<Hold> {
        Ok(Hold {
            account_id: account_id.to_string(),
            kind: Kind::parse(&self.kind)
                .ok_or_else(|| anomaly(format!("kind `{}`", self.kind)))?,
            state: HoldState::parse(&self.state)
                .ok_or_else(|| anomaly(format!("state `{}`", self.state)))?,
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

/// `"g1=5,g2=3"` → draws.
fn parse_draws(text: &str) -> StoreResult<Vec<GrantDraw>> {
    crate::events::parse_draws(text).map_err(anomaly)
}

/// A hold state by its stable id.
pub fn hold_state<'de, D: Deserializer<'de>>(d: D) -> Result<HoldState, D::Error> {
    let text = String::deserialize(d)?;
    HoldState::parse(&text).ok_or_else(|| D::Error::custom(format!("hold state `{text}`")))
}

/// A generation kind by its stable id.
pub fn kind<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
    let text = String::deserialize(d)?;
    Kind::parse(&text).ok_or_else(|| D::Error::custom(format!("kind `{text}`")))
}

/// A number sent as a string.
pub fn num<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error>
where
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(D::Error::custom)
}

/// A number sent as a string, in a field that may be absent (with `#[serde(default)]`).
pub fn opt_num<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error>
where
    T::Err: Display,
{
    num(d).map(Some)
}

/// A list; `cjson` writes an empty Lua table as `{}`.
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply shaped like an operation's: statuses as variants, shared parts inside.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "status", rename_all = "snake_case")]
    enum Sample {
        Ok {
            #[serde(default, deserialize_with = "list")]
            grants: Vec<GrantReply>,
            #[serde(default, deserialize_with = "list")]
            holds: Vec<HoldReply>,
            #[serde(deserialize_with = "num")]
            charged: u64,
            balance: BalanceReply,
        },
        Conflict(HoldTerms),
        State {
            #[serde(deserialize_with = "hold_state")]
            state: HoldState,
        },
        NotFound,
    }

    #[test]
    fn reads_a_reply_with_large_numbers_and_empty_lists() {
        let r: Sample = parse(
            r#"{"status":"ok","grants":{},"holds":[],"charged":"9007199254740991",
               "balance":{"plan":"none","scheduled":"","cycle_start":"","cycle_end":"",
               "total":"0","used":"0","held":"0","available":"0","credits":"5",
               "credits_held":"0","open":"0"}}"#,
        )
        .unwrap();
        let Sample::Ok {
            grants,
            holds,
            charged,
            balance,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(charged, 9_007_199_254_740_991);
        assert!(grants.is_empty() && holds.is_empty());
        let b = balance.into_balance("a");
        assert_eq!((b.cycle_start_ms, b.credits_available), (None, 5));
    }

    #[test]
    fn reads_each_status_with_its_fields() {
        let conflict: Sample =
            parse(r#"{"status":"conflict","kind":"video","model":"pro","qty":"5"}"#).unwrap();
        assert!(
            matches!(&conflict, Sample::Conflict(t) if t.kind == Kind::Video && t.qty == 5),
            "{conflict:?}"
        );
        let state: Sample = parse(r#"{"status":"state","state":"settled"}"#).unwrap();
        assert!(matches!(
            state,
            Sample::State {
                state: HoldState::Settled
            }
        ));
        // Fields a status does not carry are ignored, as `cjson` may write them.
        let not_found: Sample = parse(r#"{"status":"not_found","expired":"0"}"#).unwrap();
        assert!(matches!(not_found, Sample::NotFound));
    }

    #[test]
    fn a_status_or_field_out_of_shape_is_an_anomaly_naming_the_reply() {
        for bad in [
            r#"{"status":"replayed"}"#,
            r#"{"status":"state","state":"lost"}"#,
            r#"{"status":"conflict","kind":"video","model":"pro","qty":"x"}"#,
            r#"{"status":"conflict","kind":"video","model":"pro"}"#,
            r#"{"kind":"video"}"#,
        ] {
            match parse::<Sample>(bad) {
                Err(StoreError::Internal(message)) => {
                    assert!(
                        message.starts_with("unexpected script reply: "),
                        "{message}"
                    );
                    assert!(message.ends_with(bad), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
