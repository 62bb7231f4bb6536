//! Reading what the scripts wrote to the shard streams, straight from Redis.

use quota_sidecar::events::UsageEvent;
use quota_sidecar::store::keys::{shard_prefix, SHARD_COUNT};

/// Every event of every shard stream, in stream order per shard.
pub async fn redis_events(url: &str) -> Vec<UsageEvent> {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut all = Vec::new();
    for shard in 0..SHARD_COUNT {
        let key = format!("{}events", shard_prefix(shard));
        let entries: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        for entry in entries.ids {
            let fields: Vec<(String, String)> = entry
                .map
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ::redis::from_redis_value_ref::<String>(v).unwrap(),
                    )
                })
                .collect();
            let event = UsageEvent::from_fields(
                format!("{shard}/{}", entry.id),
                fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap();
            all.push(event);
        }
    }
    all
}
