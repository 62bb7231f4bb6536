//! `quota.v1.UsageEvents`: streaming usage events to billing and analytics. Not served yet:
//! both RPCs answer `UNIMPLEMENTED`, so consumers fail loudly instead of waiting on a stream
//! that never delivers.

use tonic::{Request, Response, Status};

use crate::pb;

const NOT_YET: &str = "usage events are not streamed yet";

/// Placeholder for the event stream; every call is `UNIMPLEMENTED`.
#[derive(Debug, Clone, Default)]
pub struct EventsService;

#[tonic::async_trait]
impl pb::usage_events_server::UsageEvents for EventsService {
    type SubscribeStream = tokio_stream::Empty<Result<pb::UsageEvent, Status>>;

    async fn subscribe(
        &self,
        _request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented(NOT_YET))
    }

    async fn ack(
        &self,
        _request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        Err(Status::unimplemented(NOT_YET))
    }
}
