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

/// Stream entries one XRANGE reads at most: a long run's stream in one reply can take longer
/// than the connection's response timeout on a loaded machine.
const ENTRIES_PER_READ: usize = 1_000;

/// Every event of one shard's stream, in stream order.
pub async fn shard_events(
    conn: &mut ::redis::aio::MultiplexedConnection,
    shard: u32,
) -> Vec<UsageEvent> {
    let key = format!("{}events", shard_prefix(shard));
    let mut entries = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(ENTRIES_PER_READ)
            .query_async(conn)
            .await
            .unwrap();
        let full = page.ids.len() == ENTRIES_PER_READ;
        if let Some(last) = page.ids.last() {
            start = format!("({}", last.id);
        }
        entries.extend(page.ids);
        if !full {
            break;
        }
    }
    entries
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
