//! Quote: `lua/quote.lua`.

use serde::Deserialize;

use super::refused;
use crate::ledger::prepare;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{num, BalanceReply, DeniedReply, Refusal, ShortfallReply};
use crate::store::redis::RedisStore;
use crate::store::{QuoteCmd, Quoted, StoreResult};

/// `quote {cost, fa, fc, refusal?: {status: denied|insufficient, ...}, balance}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Quote(Quote),
}

#[derive(Debug, Deserialize)]
struct Quote {
    #[serde(deserialize_with = "num")]
    cost: u64,
    #[serde(deserialize_with = "num")]
    fa: u64,
    #[serde(deserialize_with = "num")]
    fc: u64,
    refusal: Option<QuoteRefusal>,
    balance: BalanceReply,
}

/// What Reserve would refuse with: the model's unit cost is known (Rust checked it first).
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum QuoteRefusal {
    Denied(DeniedReply),
    Insufficient(ShortfallReply),
}

impl From<QuoteRefusal> for Refusal {
    fn from(refusal: QuoteRefusal) -> Refusal {
        match refusal {
            QuoteRefusal::Denied(denied) => Refusal::Denied(denied),
            QuoteRefusal::Insufficient(short) => Refusal::Insufficient(short),
        }
    }
}

impl RedisStore {
    pub(super) async fn fcall_quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted> {
        let catalog = self.catalog.current();
        let unit = prepare::unit_cost(&catalog, cmd.kind, &cmd.model)?;
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let reply = self
            .run_on(
                &catalog,
                Function::Quote,
                &keys,
                &cmd.account_id,
                &keys.account,
                now_ms,
                |call| {
                    call.arg(cmd.kind.as_str())
                        .arg(&cmd.model)
                        .arg(cmd.quantity)
                        .arg(unit);
                },
            )
            .await?;
        let Reply::Quote(quote) = reply;
        let denial = match quote.refusal {
            Some(refusal) => Some(refused(
                &catalog,
                refusal.into(),
                cmd.kind,
                &cmd.model,
                cmd.quantity,
            )?),
            None => None,
        };
        Ok(Quoted {
            cost_units: quote.cost,
            from_allowance: quote.fa,
            from_credits: quote.fc,
            denial,
            balance: quote.balance.into_balance(&cmd.account_id),
        })
    }
}
