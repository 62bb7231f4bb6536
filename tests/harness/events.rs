//! Reading what the scripts wrote to the shard streams, straight from Redis.

use quota_sidecar::events::UsageEvent;
use quota_sidecar::store::keys::{shard_prefix, Shards};

/// Every event of every shard stream, in stream order per shard.
pub async fn redis_events(url: &str) -> Vec<UsageEvent> {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut all = Vec::new();
    for shard in Shards::DEFAULT.all() {
        all.extend(shard_events(&mut conn, shard).await);
    }
    all
}

/// Every event of one shard's stream, in stream order.
pub async fn shard_events(
    conn: &mut ::redis::aio::MultiplexedConnection,
    shard: u32,
) -> Vec<UsageEvent> {
    let key = format!("{}events", shard_prefix(shard));
    let entries: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .ids
        .into_iter()
        .map(|entry| {
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
            UsageEvent::from_fields(
                format!("{shard}/{}", entry.id),
                fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .unwrap()
        })
        .collect()
}
