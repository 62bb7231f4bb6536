//! `quota.v1.QuotaAdmin`: the back-office API, served on the admin listener behind the bearer
//! token.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::Span;

use super::{convert, status, validate};
use crate::clock::Clock;
use crate::pb;
use crate::store::Store;

/// Plans and credits: validates, calls the store with the service clock's time, maps the
/// answer.
#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl AdminService {
    /// A service over `store`, reading time from `clock` (the store checks plans against the
    /// catalog in force, after a replay is answered).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        AdminService { store, clock }
    }
}

/// Puts the account id on the RPC's span once it is known to be valid.
fn record_account(account_id: &str) {
    Span::current().record("account_id", account_id);
}

#[tonic::async_trait]
impl pb::quota_admin_server::QuotaAdmin for AdminService {
    #[tracing::instrument(name = "SetPlan", skip_all, fields(account_id = Empty, plan = Empty))]
    async fn set_plan(
        &self,
        request: Request<pb::SetPlanRequest>,
    ) -> Result<Response<pb::SetPlanResponse>, Status> {
        // One reading of the clock both validates the anchor and dates the change.
        let now_ms = status::ledger_now(&*self.clock)?;
        let cmd = validate::set_plan_cmd(request.into_inner(), now_ms)?;
        record_account(&cmd.account_id);
        Span::current().record("plan", cmd.plan.as_str());
        let set = self.store.set_plan(&cmd, now_ms).await?;
        tracing::info!(
            change = set.change.as_str(),
            replayed = set.replayed,
            "plan set"
        );
        Ok(Response::new(pb::SetPlanResponse {
            change: convert::plan_change_to_pb(set.change) as i32,
            effective_at: Some(convert::timestamp(set.effective_at_ms)),
            allowance_added: set.allowance_added,
            prorated_charge_cents: set.prorated_charge_cents,
            replayed: set.replayed,
            balance: Some(convert::balance(set.balance)),
        }))
    }

    #[tracing::instrument(name = "GrantCredits", skip_all, fields(account_id = Empty, grant_id = Empty))]
    async fn grant_credits(
        &self,
        request: Request<pb::GrantCreditsRequest>,
    ) -> Result<Response<pb::GrantCreditsResponse>, Status> {
        let now_ms = status::ledger_now(&*self.clock)?;
        let cmd = validate::grant_cmd(request.into_inner(), now_ms)?;
        record_account(&cmd.account_id);
        Span::current().record("grant_id", cmd.grant_id.as_str());
        let granted = self.store.grant_credits(&cmd, now_ms).await?;
        tracing::info!(
            units = cmd.units,
            replayed = granted.replayed,
            "credits granted"
        );
        Ok(Response::new(pb::GrantCreditsResponse {
            grant: Some(convert::grant(granted.grant)),
            replayed: granted.replayed,
            balance: Some(convert::balance(granted.balance)),
        }))
    }

    #[tracing::instrument(name = "RevokeCredits", skip_all, fields(account_id = Empty, grant_id = Empty))]
    async fn revoke_credits(
        &self,
        request: Request<pb::RevokeCreditsRequest>,
    ) -> Result<Response<pb::RevokeCreditsResponse>, Status> {
        let req = request.into_inner();
        validate::id("account_id", &req.account_id)?;
        validate::id("grant_id", &req.grant_id)?;
        record_account(&req.account_id);
        Span::current().record("grant_id", req.grant_id.as_str());
        let revoked = self
            .store
            .revoke_credits(
                &req.account_id,
                &req.grant_id,
                status::ledger_now(&*self.clock)?,
            )
            .await?;
        tracing::info!(units = revoked.revoked_units, "credits revoked");
        Ok(Response::new(pb::RevokeCreditsResponse {
            revoked_units: revoked.revoked_units,
            balance: Some(convert::balance(revoked.balance)),
        }))
    }

    #[tracing::instrument(name = "GetAccount", skip_all, fields(account_id = Empty))]
    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let req = request.into_inner();
        validate::id("account_id", &req.account_id)?;
        record_account(&req.account_id);
        let account = self
            .store
            .account(&req.account_id, status::ledger_now(&*self.clock)?)
            .await?;
        Ok(Response::new(convert::account(account)))
    }

    #[tracing::instrument(name = "Refund", skip_all, fields(account_id = Empty, generation_id = Empty))]
    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        let cmd = validate::refund_cmd(request.into_inner())?;
        record_account(&cmd.account_id);
        Span::current().record("generation_id", cmd.generation_id.as_str());
        let refunded = self
            .store
            .refund(&cmd, status::ledger_now(&*self.clock)?)
            .await?;
        tracing::info!(
            units = refunded.refunded_units,
            replayed = refunded.replayed,
            "refunded"
        );
        Ok(Response::new(pb::RefundResponse {
            refunded_units: refunded.refunded_units,
            to_allowance: refunded.to_allowance,
            to_credits: refunded.to_credits,
            grant_id: refunded.grant_id.unwrap_or_default(),
            replayed: refunded.replayed,
            balance: Some(convert::balance(refunded.balance)),
        }))
    }
}
