//! `quota.v1.Quota`: the worker API, served on the worker listener.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::Span;

use super::{convert, status, validate};
use crate::clock::Clock;
use crate::ledger::SharedCatalog;
use crate::pb;
use crate::store::Store;

/// The worker API: validates, calls the store with the service clock's time, maps the answer.
#[derive(Clone)]
pub struct QuotaService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    catalog: SharedCatalog,
}

impl QuotaService {
    /// A service over `store`, reading time from `clock` and costs from the catalog in force
    /// at each call.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, catalog: SharedCatalog) -> Self {
        QuotaService {
            store,
            clock,
            catalog,
        }
    }
}

/// Puts the ids on the RPC's span once they are known to be valid, so logs never carry
/// arbitrary client bytes.
fn record_ids(account_id: &str, generation_id: Option<&str>) {
    let span = Span::current();
    span.record("account_id", account_id);
    if let Some(generation_id) = generation_id {
        span.record("generation_id", generation_id);
    }
}

#[tonic::async_trait]
impl pb::quota_server::Quota for QuotaService {
    #[tracing::instrument(name = "Reserve", skip_all, fields(account_id = Empty, generation_id = Empty))]
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let cmd = validate::reserve_cmd(request.into_inner())?;
        record_ids(&cmd.account_id, Some(&cmd.generation_id));
        let reserved = self
            .store
            .reserve(&cmd, status::ledger_now(&*self.clock)?)
            .await?;
        Ok(Response::new(pb::ReserveResponse {
            hold: Some(convert::hold(reserved.hold)),
            replayed: reserved.replayed,
            balance: Some(convert::balance(reserved.balance)),
        }))
    }

    #[tracing::instrument(name = "Settle", skip_all, fields(account_id = Empty, generation_id = Empty))]
    async fn settle(
        &self,
        request: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::SettleResponse>, Status> {
        let req = request.into_inner();
        validate::id("account_id", &req.account_id)?;
        validate::id("generation_id", &req.generation_id)?;
        let actual_quantity = validate::actual_quantity(req.actual_quantity)?;
        record_ids(&req.account_id, Some(&req.generation_id));
        let settled = self
            .store
            .settle(
                &req.account_id,
                &req.generation_id,
                actual_quantity,
                status::ledger_now(&*self.clock)?,
            )
            .await?;
        Ok(Response::new(pb::SettleResponse {
            hold: Some(convert::hold(settled.hold)),
            charged_units: settled.charged_units,
            returned_units: settled.returned_units,
            replayed: settled.replayed,
            balance: Some(convert::balance(settled.balance)),
        }))
    }

    #[tracing::instrument(name = "Release", skip_all, fields(account_id = Empty, generation_id = Empty))]
    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let req = request.into_inner();
        validate::id("account_id", &req.account_id)?;
        validate::id("generation_id", &req.generation_id)?;
        let reason = validate::release_reason(req.reason)?;
        record_ids(&req.account_id, Some(&req.generation_id));
        let released = self
            .store
            .release(
                &req.account_id,
                &req.generation_id,
                reason,
                status::ledger_now(&*self.clock)?,
            )
            .await?;
        Ok(Response::new(pb::ReleaseResponse {
            hold: Some(convert::hold(released.hold)),
            returned_units: released.returned_units,
            replayed: released.replayed,
            balance: Some(convert::balance(released.balance)),
        }))
    }

    #[tracing::instrument(name = "Extend", skip_all, fields(account_id = Empty, generation_id = Empty))]
    async fn extend(
        &self,
        request: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        let req = request.into_inner();
        validate::id("account_id", &req.account_id)?;
        validate::id("generation_id", &req.generation_id)?;
        let ttl_seconds = validate::ttl_seconds(req.ttl_seconds)?;
        record_ids(&req.account_id, Some(&req.generation_id));
        let hold = self
            .store
            .extend(
                &req.account_id,
                &req.generation_id,
                ttl_seconds,
                status::ledger_now(&*self.clock)?,
            )
            .await?;
        Ok(Response::new(pb::ExtendResponse {
            hold: Some(convert::hold(hold)),
        }))
    }

    #[tracing::instrument(name = "GetBalance", skip_all, fields(account_id = Empty))]
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::Balance>, Status> {
        let req = request.into_inner();
        validate::id("account_id", &req.account_id)?;
        record_ids(&req.account_id, None);
        let balance = self
            .store
            .balance(&req.account_id, status::ledger_now(&*self.clock)?)
            .await?;
        Ok(Response::new(convert::balance(balance)))
    }

    #[tracing::instrument(name = "Quote", skip_all, fields(account_id = Empty))]
    async fn quote(
        &self,
        request: Request<pb::QuoteRequest>,
    ) -> Result<Response<pb::QuoteResponse>, Status> {
        let cmd = validate::quote_cmd(request.into_inner())?;
        record_ids(&cmd.account_id, None);
        let quoted = self
            .store
            .quote(&cmd, status::ledger_now(&*self.clock)?)
            .await?;
        Ok(Response::new(convert::quote(quoted)))
    }

    #[tracing::instrument(name = "ReserveBatch", skip_all, fields(account_id = Empty))]
    async fn reserve_batch(
        &self,
        request: Request<pb::ReserveBatchRequest>,
    ) -> Result<Response<pb::ReserveBatchResponse>, Status> {
        let cmd = validate::reserve_batch_cmd(request.into_inner())?;
        record_ids(&cmd.account_id, None);
        let reserved = self
            .store
            .reserve_batch(&cmd, status::ledger_now(&*self.clock)?)
            .await?;
        Ok(Response::new(pb::ReserveBatchResponse {
            holds: reserved.holds.into_iter().map(convert::hold).collect(),
            replayed: reserved.replayed,
            balance: Some(convert::balance(reserved.balance)),
        }))
    }

    #[tracing::instrument(name = "GetCatalog", skip_all)]
    async fn get_catalog(
        &self,
        _request: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::Catalog>, Status> {
        Ok(Response::new(convert::catalog(&self.catalog.current())))
    }
}
