//! Hostile input at the gRPC edge, on a Redis-backed server:
//! - a proptest over protobuf bytes (random, and well-formed requests with hostile fields whose
//!   encoding is then corrupted), decoded as each request message and sent to the server:
//!   every answer is OK or a proper refusal, never INTERNAL, UNKNOWN or a dead server, and a
//!   request with a bad id is INVALID_ARGUMENT naming that field;
//! - targeted cases (ids with `{`, `}`, newlines, spaces, 10 kB strings, out-of-range numbers,
//!   unknown enum values, oversized labels; batches empty, too large, with a generation id
//!   twice or a bad field in one item, named `items[<i>].<field>`): INVALID_ARGUMENT naming
//!   the field, and neither the account nor any Redis key changes; Quote and GetCatalog,
//!   denials included, answer OK and write nothing;
//! - afterwards every Redis key is `q:{s<shard>}:…` with the shard of the account it names:
//!   no input can put a key outside its account's hash tag.
//!
//! `PROPTEST_CASES` runs more cases.

mod harness;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Status};

use harness::in_process::{authed, InProcess};
use harness::RedisServer;
use quota_sidecar::api::validate::MAX_BATCH_ITEMS;
use quota_sidecar::clock::ManualClock;
use quota_sidecar::ledger::{is_valid_id, Catalog, MAX_GRANT_UNITS, MAX_HOLD_TTL_SECONDS};
use quota_sidecar::pb::{
    self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient,
    usage_events_client::UsageEventsClient,
};
use quota_sidecar::store::keys::Shards;
use quota_sidecar::store::redis::RedisStore;

/// 2026-11-01T00:00:00Z.
const NOW_MS: i64 = 1_793_491_200_000;
/// An account with a plan, credits and an open hold, so that "nothing changed" means something.
const ACCOUNT: &str = "acct-hostile";
/// Cases per request source unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 1_000;

/// The server on a private Redis, with one client per service.
struct Running {
    redis: RedisServer,
    server: InProcess,
    quota: QuotaClient<Channel>,
    admin: QuotaAdminClient<Channel>,
    events: UsageEventsClient<Channel>,
}

impl Running {
    async fn start() -> Running {
        let redis = RedisServer::start();
        let store = Arc::new(
            RedisStore::connect(
                &redis.url(),
                Arc::new(Catalog::builtin()),
                Duration::from_secs(2),
            )
            .await
            .expect("connect"),
        );
        let server =
            InProcess::start(store.clone(), store, Arc::new(ManualClock::new(NOW_MS))).await;
        Running {
            redis,
            quota: server.quota(),
            admin: server.admin(),
            events: server.events(),
            server,
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }

    /// The fixed account: Microbudget, 40 promotional credits, one open hold.
    async fn seed(&mut self) {
        self.server.seed(ACCOUNT, reserve("gen-open")).await;
    }

    async fn account(&mut self) -> pb::Account {
        self.admin
            .get_account(authed(pb::GetAccountRequest {
                account_id: ACCOUNT.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Every key in Redis.
    fn keys(&self) -> BTreeSet<String> {
        self.redis
            .cli(&["--scan"])
            .lines()
            .map(str::to_string)
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// Sends `req` to its RPC; the answer's content does not matter, only its status.
    async fn send(&mut self, req: Req) -> Result<(), Status> {
        match req {
            Req::Reserve(m) => self.quota.reserve(m).await.map(drop),
            Req::Settle(m) => self.quota.settle(m).await.map(drop),
            Req::Release(m) => self.quota.release(m).await.map(drop),
            Req::Extend(m) => self.quota.extend(m).await.map(drop),
            Req::GetBalance(m) => self.quota.get_balance(m).await.map(drop),
            Req::Quote(m) => self.quota.quote(m).await.map(drop),
            Req::ReserveBatch(m) => self.quota.reserve_batch(m).await.map(drop),
            Req::GetCatalog(m) => self.quota.get_catalog(m).await.map(drop),
            Req::SetPlan(m) => self.admin.set_plan(authed(m)).await.map(drop),
            Req::GrantCredits(m) => self.admin.grant_credits(authed(m)).await.map(drop),
            Req::RevokeCredits(m) => self.admin.revoke_credits(authed(m)).await.map(drop),
            Req::GetAccount(m) => self.admin.get_account(authed(m)).await.map(drop),
            Req::Refund(m) => self.admin.refund(authed(m)).await.map(drop),
            Req::Subscribe(m) => self.events.subscribe(authed(m)).await.map(drop),
            Req::Ack(m) => self.events.ack(authed(m)).await.map(drop),
            Req::ListGroups(m) => self.events.list_groups(authed(m)).await.map(drop),
            Req::DeleteGroup(m) => self.events.delete_group(authed(m)).await.map(drop),
        }
    }
}

fn reserve(generation_id: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: ACCOUNT.into(),
        generation_id: generation_id.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: String::new(),
        quantity: 1,
        ttl_seconds: 0,
        labels: Default::default(),
    }
}

fn item(generation_id: &str) -> pb::ReserveItem {
    pb::ReserveItem {
        generation_id: generation_id.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: String::new(),
        quantity: 1,
        labels: Default::default(),
    }
}

fn batch(items: Vec<pb::ReserveItem>) -> Req {
    Req::ReserveBatch(pb::ReserveBatchRequest {
        account_id: ACCOUNT.into(),
        items,
        ttl_seconds: 0,
    })
}

fn quote() -> pb::QuoteRequest {
    pb::QuoteRequest {
        account_id: ACCOUNT.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: String::new(),
        quantity: 1,
    }
}

fn refund() -> pb::RefundRequest {
    pb::RefundRequest {
        account_id: ACCOUNT.into(),
        generation_id: "gen-open".into(),
        refund_id: "refund-1".into(),
        units: 0,
        reason: String::new(),
    }
}

/// One request of any RPC.
#[derive(Debug, Clone)]
enum Req {
    Reserve(pb::ReserveRequest),
    Settle(pb::SettleRequest),
    Release(pb::ReleaseRequest),
    Extend(pb::ExtendRequest),
    GetBalance(pb::GetBalanceRequest),
    SetPlan(pb::SetPlanRequest),
    GrantCredits(pb::GrantCreditsRequest),
    RevokeCredits(pb::RevokeCreditsRequest),
    GetAccount(pb::GetAccountRequest),
    Subscribe(pb::SubscribeRequest),
    Ack(pb::AckRequest),
    Quote(pb::QuoteRequest),
    ReserveBatch(pb::ReserveBatchRequest),
    GetCatalog(pb::GetCatalogRequest),
    Refund(pb::RefundRequest),
    ListGroups(pb::ListGroupsRequest),
    DeleteGroup(pb::DeleteGroupRequest),
}

const RPCS: usize = 17;

impl Req {
    /// `bytes` decoded as the request of RPC number `rpc`; `None` when they do not decode.
    fn decode(rpc: usize, bytes: &[u8]) -> Option<Req> {
        Some(match rpc {
            0 => Req::Reserve(Message::decode(bytes).ok()?),
            1 => Req::Settle(Message::decode(bytes).ok()?),
            2 => Req::Release(Message::decode(bytes).ok()?),
            3 => Req::Extend(Message::decode(bytes).ok()?),
            4 => Req::GetBalance(Message::decode(bytes).ok()?),
            5 => Req::SetPlan(Message::decode(bytes).ok()?),
            6 => Req::GrantCredits(Message::decode(bytes).ok()?),
            7 => Req::RevokeCredits(Message::decode(bytes).ok()?),
            8 => Req::GetAccount(Message::decode(bytes).ok()?),
            9 => Req::Subscribe(Message::decode(bytes).ok()?),
            10 => Req::Ack(Message::decode(bytes).ok()?),
            11 => Req::Quote(Message::decode(bytes).ok()?),
            12 => Req::ReserveBatch(Message::decode(bytes).ok()?),
            13 => Req::GetCatalog(Message::decode(bytes).ok()?),
            14 => Req::Refund(Message::decode(bytes).ok()?),
            15 => Req::ListGroups(Message::decode(bytes).ok()?),
            _ => Req::DeleteGroup(Message::decode(bytes).ok()?),
        })
    }

    /// The RPC number `decode` takes for this request.
    fn rpc(&self) -> usize {
        match self {
            Req::Reserve(_) => 0,
            Req::Settle(_) => 1,
            Req::Release(_) => 2,
            Req::Extend(_) => 3,
            Req::GetBalance(_) => 4,
            Req::SetPlan(_) => 5,
            Req::GrantCredits(_) => 6,
            Req::RevokeCredits(_) => 7,
            Req::GetAccount(_) => 8,
            Req::Subscribe(_) => 9,
            Req::Ack(_) => 10,
            Req::Quote(_) => 11,
            Req::ReserveBatch(_) => 12,
            Req::GetCatalog(_) => 13,
            Req::Refund(_) => 14,
            Req::ListGroups(_) => 15,
            Req::DeleteGroup(_) => 16,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Req::Reserve(m) => m.encode_to_vec(),
            Req::Settle(m) => m.encode_to_vec(),
            Req::Release(m) => m.encode_to_vec(),
            Req::Extend(m) => m.encode_to_vec(),
            Req::GetBalance(m) => m.encode_to_vec(),
            Req::SetPlan(m) => m.encode_to_vec(),
            Req::GrantCredits(m) => m.encode_to_vec(),
            Req::RevokeCredits(m) => m.encode_to_vec(),
            Req::GetAccount(m) => m.encode_to_vec(),
            Req::Subscribe(m) => m.encode_to_vec(),
            Req::Ack(m) => m.encode_to_vec(),
            Req::Quote(m) => m.encode_to_vec(),
            Req::ReserveBatch(m) => m.encode_to_vec(),
            Req::GetCatalog(m) => m.encode_to_vec(),
            Req::Refund(m) => m.encode_to_vec(),
            Req::ListGroups(m) => m.encode_to_vec(),
            Req::DeleteGroup(m) => m.encode_to_vec(),
        }
    }

    /// The id fields in the order the server checks them (ids come first in every RPC).
    fn ids(&self) -> Vec<(&'static str, &str)> {
        match self {
            Req::Reserve(m) => vec![
                ("account_id", &m.account_id),
                ("generation_id", &m.generation_id),
            ],
            Req::Settle(m) => vec![
                ("account_id", &m.account_id),
                ("generation_id", &m.generation_id),
            ],
            Req::Release(m) => vec![
                ("account_id", &m.account_id),
                ("generation_id", &m.generation_id),
            ],
            Req::Extend(m) => vec![
                ("account_id", &m.account_id),
                ("generation_id", &m.generation_id),
            ],
            Req::GetBalance(m) => vec![("account_id", &m.account_id)],
            Req::SetPlan(m) => vec![("request_id", &m.request_id), ("account_id", &m.account_id)],
            Req::GrantCredits(m) => vec![("account_id", &m.account_id), ("grant_id", &m.grant_id)],
            Req::RevokeCredits(m) => {
                vec![("account_id", &m.account_id), ("grant_id", &m.grant_id)]
            }
            Req::GetAccount(m) => vec![("account_id", &m.account_id)],
            // An ephemeral subscription names its own group: any group is refused (see
            // `check_answer`), and an empty consumer is its default.
            Req::Subscribe(m) if m.ephemeral && !m.group.is_empty() => vec![],
            Req::Subscribe(m) if m.ephemeral && m.consumer.is_empty() => vec![],
            Req::Subscribe(m) if m.ephemeral => vec![("consumer", &m.consumer)],
            Req::Subscribe(m) => vec![("group", &m.group), ("consumer", &m.consumer)],
            Req::Ack(m) => vec![("group", &m.group)],
            Req::Quote(m) => vec![("account_id", &m.account_id)],
            // Item ids are checked after the batch's size and ttl: see `check_batch_items`.
            Req::ReserveBatch(m) => vec![("account_id", &m.account_id)],
            Req::GetCatalog(_) => vec![],
            Req::Refund(m) => vec![
                ("account_id", &m.account_id),
                ("generation_id", &m.generation_id),
                ("refund_id", &m.refund_id),
            ],
            Req::ListGroups(_) => vec![],
            Req::DeleteGroup(m) => vec![("group", &m.group)],
        }
    }
}

/// Strings a hostile or buggy client sends: Redis hash-tag braces, key separators, control
/// characters, RESP framing, non-ASCII, empty, at and past the length limit, 10 kB; plus
/// valid ids, so that requests also get past validation.
fn hostile_string() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "",
        " ",
        "{",
        "}",
        "{s3}",
        "acct-{s1}",
        "a}b{c",
        "a/b",
        "a\nb",
        "a\r\n*1\r\n$8\r\nFLUSHALL\r\n",
        "a b",
        "\0",
        "é",
        "ключ",
        "a\u{7f}",
        "acct-hostile",
        "gen-open",
        "grant-1",
        "standard",
        "cinema",
        "hollywood",
        "none",
        "0/1-0",
        "15/18446744073709551615-18446744073709551615",
        "16/1-0",
        "1/18446744073709551616-0",
    ]);
    // A few valid ids shared by many requests, so that later requests find what earlier ones
    // created.
    let pool = prop::sample::select(vec!["a", "b", "acct-1", "g:1", "plan.1", "x_y"]);
    let repeated = (
        prop::sample::select(vec!['x', '{', 'é', '\n']),
        prop::sample::select(vec![128usize, 129, 10_000]),
    )
        .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect());
    prop_oneof![
        4 => "[A-Za-z0-9._:-]{1,12}",
        4 => pool.prop_map(str::to_string),
        1 => "[A-Za-z0-9._:-]{128}",
        4 => special.prop_map(str::to_string),
        2 => "\\PC{0,24}",
        1 => repeated,
    ]
}

/// Numbers at and around every limit, and anything.
fn hostile_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![
            0u32,
            1,
            4,
            16,
            17,
            20,
            21,
            3_600,
            3_601,
            21_600,
            u32::MAX
        ]),
        any::<u32>(),
    ]
}

fn hostile_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![
            0u64,
            1,
            MAX_GRANT_UNITS,
            MAX_GRANT_UNITS + 1,
            u64::MAX
        ]),
        any::<u64>(),
    ]
}

/// Enum values: unknown ones and the extremes.
fn hostile_enum() -> impl Strategy<Value = i32> {
    prop_oneof![
        prop::sample::select(vec![0, -1i32, 5, 99, i32::MAX, i32::MIN]),
        any::<i32>(),
    ]
}

fn hostile_timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    let seconds = prop_oneof![
        prop::sample::select(vec![
            i64::MIN,
            i64::MAX,
            0,
            -1,
            946_684_799,
            253_402_300_800
        ]),
        any::<i64>(),
    ];
    let nanos = prop_oneof![Just(0i32), Just(-1), Just(1_000_000_000), any::<i32>()];
    (seconds, nanos).prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos }))
}

fn hostile_labels() -> impl Strategy<Value = HashMap<String, String>> {
    prop_oneof![
        3 => prop::collection::hash_map(hostile_string(), hostile_string(), 0..4),
        1 => (30..40usize).prop_map(|n| (0..n).map(|i| (format!("k{i}"), "v".into())).collect()),
    ]
}

/// A valid value most of the time, a hostile one otherwise: requests then get past the
/// other fields' checks and each hostile value meets the store, not only the validation.
fn mostly<T: std::fmt::Debug>(
    valid: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![5 => valid, 1 => hostile].boxed()
}

fn id() -> BoxedStrategy<String> {
    let pool = prop::sample::select(vec!["acct-hostile", "gen-open", "a", "b", "g:1", "x_y"]);
    mostly(
        prop_oneof![pool.prop_map(str::to_string), "[A-Za-z0-9._:-]{1,128}"],
        hostile_string(),
    )
}

/// A time near the server's clock, in the past or the future.
fn near_now() -> impl Strategy<Value = Option<Timestamp>> {
    prop::option::of(
        (-40 * 86_400..40 * 86_400i64, 0..1_000_000_000i32).prop_map(|(delta, nanos)| Timestamp {
            seconds: NOW_MS / 1_000 + delta,
            nanos,
        }),
    )
}

/// A request of any RPC, mostly valid with hostile values here and there.
fn hostile_request() -> impl Strategy<Value = Req> {
    let model = || {
        mostly(
            prop::sample::select(vec!["", "standard", "pro", "cinema"]).prop_map(str::to_string),
            hostile_string(),
        )
    };
    let quantity = || mostly(1..=20u32, hostile_u32());
    let ttl = || mostly(0..=3_600u32, hostile_u32());
    let labels = || {
        mostly(
            prop::collection::hash_map("[a-z]{1,8}", "[ -~]{0,16}", 0..3),
            hostile_labels(),
        )
    };
    let plan = || {
        mostly(
            prop::sample::select(vec!["none", "microbudget", "independent", "hollywood"])
                .prop_map(str::to_string),
            hostile_string(),
        )
    };
    let item = || {
        (
            id(),
            mostly(1..=4i32, hostile_enum()),
            model(),
            quantity(),
            labels(),
        )
            .prop_map(
                |(generation_id, kind, model, quantity, labels)| pb::ReserveItem {
                    generation_id,
                    kind,
                    model,
                    quantity,
                    labels,
                },
            )
    };
    // 1-5 items mostly (ids from a small pool, so duplicates happen); now and then none, or
    // more than a batch may hold.
    let items = mostly(
        prop::collection::vec(item(), 1..6),
        prop_oneof![
            Just(vec![]),
            prop::collection::vec(item(), MAX_BATCH_ITEMS + 1..MAX_BATCH_ITEMS + 4)
        ],
    );
    let ack_id = mostly(
        (0..16u32, 0..u64::MAX, 0..4u64).prop_map(|(s, ms, seq)| format!("{s}/{ms}-{seq}")),
        hostile_string(),
    );
    prop_oneof![
        (
            id(),
            id(),
            mostly(1..=4i32, hostile_enum()),
            model(),
            quantity(),
            ttl(),
            labels()
        )
            .prop_map(
                |(account_id, generation_id, kind, model, quantity, ttl_seconds, labels)| {
                    Req::Reserve(pb::ReserveRequest {
                        account_id,
                        generation_id,
                        kind,
                        model,
                        quantity,
                        ttl_seconds,
                        labels,
                    })
                }
            ),
        (id(), id(), prop::option::of(quantity())).prop_map(
            |(account_id, generation_id, actual_quantity)| Req::Settle(pb::SettleRequest {
                account_id,
                generation_id,
                actual_quantity,
            })
        ),
        (id(), id(), mostly(1..=4i32, hostile_enum())).prop_map(
            |(account_id, generation_id, reason)| Req::Release(pb::ReleaseRequest {
                account_id,
                generation_id,
                reason,
            })
        ),
        (id(), id(), ttl()).prop_map(|(account_id, generation_id, ttl_seconds)| {
            Req::Extend(pb::ExtendRequest {
                account_id,
                generation_id,
                ttl_seconds,
            })
        }),
        id().prop_map(|account_id| Req::GetBalance(pb::GetBalanceRequest { account_id })),
        (id(), id(), plan(), mostly(near_now(), hostile_timestamp())).prop_map(
            |(request_id, account_id, plan, cycle_anchor)| Req::SetPlan(pb::SetPlanRequest {
                request_id,
                account_id,
                plan,
                cycle_anchor,
            })
        ),
        (
            id(),
            id(),
            mostly(1..=100_000u64, hostile_u64()),
            mostly(1..=2i32, hostile_enum()),
            mostly(near_now(), hostile_timestamp()),
        )
            .prop_map(|(account_id, grant_id, units, source, expires_at)| {
                Req::GrantCredits(pb::GrantCreditsRequest {
                    account_id,
                    grant_id,
                    units,
                    source,
                    expires_at,
                })
            }),
        (id(), id()).prop_map(|(account_id, grant_id)| {
            Req::RevokeCredits(pb::RevokeCreditsRequest {
                account_id,
                grant_id,
            })
        }),
        id().prop_map(|account_id| Req::GetAccount(pb::GetAccountRequest { account_id })),
        (id(), id()).prop_map(|(group, consumer)| Req::Subscribe(pb::SubscribeRequest {
            group,
            consumer,
            ephemeral: false
        })),
        (id(), prop::collection::vec(ack_id, 0..4))
            .prop_map(|(group, ack_ids)| Req::Ack(pb::AckRequest { group, ack_ids })),
        Just(Req::ListGroups(pb::ListGroupsRequest {})),
        id().prop_map(|group| Req::DeleteGroup(pb::DeleteGroupRequest { group })),
        (id(), mostly(1..=4i32, hostile_enum()), model(), quantity()).prop_map(
            |(account_id, kind, model, quantity)| Req::Quote(pb::QuoteRequest {
                account_id,
                kind,
                model,
                quantity,
            })
        ),
        (id(), items, ttl()).prop_map(|(account_id, items, ttl_seconds)| {
            Req::ReserveBatch(pb::ReserveBatchRequest {
                account_id,
                items,
                ttl_seconds,
            })
        }),
        Just(Req::GetCatalog(pb::GetCatalogRequest {})),
        (
            id(),
            id(),
            id(),
            mostly(0..=100u64, hostile_u64()),
            mostly("[ -~]{0,32}", hostile_string()),
        )
            .prop_map(|(account_id, generation_id, refund_id, units, reason)| {
                Req::Refund(pb::RefundRequest {
                    account_id,
                    generation_id,
                    refund_id,
                    units,
                    reason,
                })
            }),
    ]
}

/// Protobuf bytes to decode as RPC number `.0`: random bytes, or a hostile request (maybe of
/// another RPC) with a few bytes overwritten or cut short.
fn request_bytes() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let random = prop::collection::vec(any::<u8>(), 0..256);
    let corrupted = (
        hostile_request(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(req, flips, cut)| {
            let mut bytes = req.encode();
            let rpc = req.rpc();
            if !bytes.is_empty() {
                for (at, byte) in flips {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
            }
            (rpc, bytes)
        });
    let intact = hostile_request().prop_map(|req| (req.rpc(), req.encode()));
    // Mostly decoded as the RPC they were made for; now and then as another one.
    let as_other = (0..RPCS, prop::bool::weighted(0.2));
    prop_oneof![
        1 => (0..RPCS, random),
        2 => (corrupted, as_other.clone()).prop_map(|((rpc, bytes), (other, switch))| {
            (if switch { other } else { rpc }, bytes)
        }),
        3 => (intact, as_other).prop_map(|((rpc, bytes), (other, switch))| {
            (if switch { other } else { rpc }, bytes)
        }),
    ]
}

/// Codes a request may get on a healthy store: its own answer or a refusal it can act on.
const CLEAN: [Code; 7] = [
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::AlreadyExists,
];

/// The answer to `req` is clean; with a bad id it is INVALID_ARGUMENT naming that id.
fn check_answer(req: &Req, answer: &Result<(), Status>) -> Result<(), TestCaseError> {
    let code = answer.as_ref().err().map_or(Code::Ok, |s| s.code());
    prop_assert!(CLEAN.contains(&code), "{} answered {answer:?}", short(req));
    if let Err(status) = answer {
        // For humans: short, one line, never an echo of a huge or multi-line field.
        prop_assert!(status.message().len() < 300, "{status:?}");
        prop_assert!(!status.message().contains(['\n', '\r', '\0']), "{status:?}");
    }
    if let Some((field, _)) = req.ids().into_iter().find(|(_, id)| !is_valid_id(id)) {
        let status = answer.as_ref().err();
        prop_assert_eq!(
            status.map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{}",
            short(req)
        );
        let message = status.unwrap().message();
        prop_assert!(
            message.starts_with(&format!("{field}: ")),
            "{message:?} should name {field}"
        );
    } else if let Req::ReserveBatch(batch) = req {
        check_batch_items(batch, answer)?;
    } else if let Req::Subscribe(m) = req {
        if m.ephemeral && !m.group.is_empty() {
            let message = answer.as_ref().err().map(|s| (s.code(), s.message()));
            prop_assert!(
                matches!(message, Some((Code::InvalidArgument, m)) if m.starts_with("group: ")),
                "an ephemeral subscription with a group: {answer:?}"
            );
        }
    }
    Ok(())
}

/// A batch (with a valid account) some item of which has a bad generation id is refused:
/// when the batch's size and ttl are in range, naming that item's id or a bad field of an
/// earlier item, `items[<i>].<field>: `.
fn check_batch_items(
    batch: &pb::ReserveBatchRequest,
    answer: &Result<(), Status>,
) -> Result<(), TestCaseError> {
    let Some(bad) = batch
        .items
        .iter()
        .position(|item| !is_valid_id(&item.generation_id))
    else {
        return Ok(());
    };
    let status = answer.as_ref().err();
    prop_assert_eq!(status.map(|s| s.code()), Some(Code::InvalidArgument));
    let message = status.unwrap().message();
    let in_range =
        batch.items.len() <= MAX_BATCH_ITEMS && batch.ttl_seconds <= MAX_HOLD_TTL_SECONDS;
    if !in_range {
        prop_assert!(
            message.starts_with("items: ") || message.starts_with("ttl_seconds: "),
            "{message:?}"
        );
        return Ok(());
    }
    let named = message
        .strip_prefix("items[")
        .and_then(|rest| rest.split_once("]."))
        .and_then(|(index, field)| Some((index.parse::<usize>().ok()?, field)));
    let Some((index, field)) = named else {
        return Err(TestCaseError::fail(format!("{message:?} names no item")));
    };
    prop_assert!(index <= bad, "{message:?}: item {bad} is the first bad id");
    if index == bad {
        prop_assert!(field.starts_with("generation_id: "), "{message:?}");
    }
    Ok(())
}

/// Every key is `q:{s<shard>}:<kind>:<account>[/<id>]` (or a shard's `expiry` / `events` /
/// `events:losses`, or the fleet's leases and shard count), with valid ids, no other
/// brace, and the shard of the account it belongs to.
fn check_keys(keys: &BTreeSet<String>) {
    for key in keys {
        // The fleet's own keys: the leases and the shard count.
        if key == quota_sidecar::store::FleetTask::Sweep.lease_key()
            || key == quota_sidecar::store::FleetTask::Trim.lease_key()
            || key == quota_sidecar::store::keys::SHARD_COUNT_RECORD
        {
            continue;
        }
        let rest = key
            .strip_prefix("q:{s")
            .unwrap_or_else(|| panic!("{key:?}: not a quota key"));
        let (shard, rest) = rest
            .split_once("}:")
            .unwrap_or_else(|| panic!("{key:?}: no hash tag"));
        let shard: u32 = shard.parse().unwrap_or_else(|_| panic!("{key:?}: shard"));
        assert!(shard < Shards::DEFAULT.count(), "{key:?}");
        assert!(!rest.contains(['{', '}']), "{key:?}: a second brace");
        if rest == "expiry" || rest == "events" || rest == "events:losses" {
            continue;
        }
        let (kind, body) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("{key:?}: kind"));
        let account = match kind {
            "a" | "g" => body,
            // A finished hold, a refund's record, a SetPlan request.
            "f" | "u" | "r" => {
                let (account, id) = body
                    .split_once('/')
                    .unwrap_or_else(|| panic!("{key:?}: no id"));
                assert!(is_valid_id(id), "{key:?}: id");
                account
            }
            _ => panic!("{key:?}: unknown kind of key"),
        };
        assert!(is_valid_id(account), "{key:?}: account");
        assert_eq!(
            Shards::DEFAULT.of(account),
            shard,
            "{key:?}: outside its account's tag"
        );
    }
}

fn config() -> Config {
    let mut config = Config {
        // Nothing to persist: a failing input is printed in full.
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config
}

#[test]
fn protobuf_bytes_get_clean_answers_and_keys_stay_in_their_tag() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = runtime.block_on(async {
        let mut s = Running::start().await;
        s.seed().await;
        s
    });
    let server = std::cell::RefCell::new(s);
    let (sent, skipped) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let codes = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let mut runner = TestRunner::new(config());
    let result = runner.run(&request_bytes(), |(rpc, bytes)| {
        let Some(req) = Req::decode(rpc, &bytes) else {
            skipped.set(skipped.get() + 1);
            return Ok(());
        };
        sent.set(sent.get() + 1);
        let answer = runtime.block_on(server.borrow_mut().send(req.clone()));
        let code = answer.as_ref().err().map_or(Code::Ok, |s| s.code());
        *codes.borrow_mut().entry(format!("{code:?}")).or_default() += 1;
        check_answer(&req, &answer)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (sent, skipped) = (sent.get(), skipped.get());
    println!(
        "{sent} requests sent ({:?}), {skipped} byte strings did not decode",
        codes.borrow()
    );
    assert!(sent > skipped, "most inputs should reach the server");
    // Still serving.
    let mut s = server.into_inner();
    runtime.block_on(s.account());
    let keys = s.keys();
    check_keys(&keys);
    println!("{} keys, all inside their account's tag", keys.len());
    runtime.block_on(s.stop());
}

/// A request for a failure message: 10 kB fields cut short.
fn short(req: &Req) -> String {
    format!("{req:?}").chars().take(300).collect()
}

/// Questions with valid fields: answered OK, a denial included, on an account or not.
fn answered() -> Vec<Req> {
    let quote_of = |account: &str, kind: pb::GenerationKind, model: &str, quantity: u32| {
        Req::Quote(pb::QuoteRequest {
            account_id: account.into(),
            kind: kind as i32,
            model: model.into(),
            quantity,
        })
    };
    vec![
        Req::GetCatalog(pb::GetCatalogRequest {}),
        quote_of(ACCOUNT, pb::GenerationKind::Video, "standard", 5),
        // Not in Microbudget; longer than it allows; more than its funds.
        quote_of(ACCOUNT, pb::GenerationKind::Video, "cinema", 5),
        quote_of(ACCOUNT, pb::GenerationKind::Video, "", 6),
        quote_of(ACCOUNT, pb::GenerationKind::Video, "", 3_600),
        // An account nobody created: a quote must not create it.
        quote_of("acct-nobody", pb::GenerationKind::FirstFrame, "pro", 16),
    ]
}

/// Targeted hostile requests, each with the field it must be refused for.
fn targeted() -> Vec<(Req, &'static str)> {
    let long = "x".repeat(10_000);
    let bad_ids = [
        "acct{1}",
        "{s1}",
        "acct}",
        "a\nb",
        "a b",
        " ",
        "",
        long.as_str(),
        &"x".repeat(129),
        "a/b",
        "é",
        "\0",
        "a\r\n*1\r\n$8\r\nFLUSHALL\r\n",
    ];
    let mut cases: Vec<(Req, &'static str)> = Vec::new();
    for bad in bad_ids {
        let bad = bad.to_string();
        let mut r = reserve("gen-bad");
        r.account_id = bad.clone();
        cases.push((Req::Reserve(r), "account_id"));
        cases.push((Req::Reserve(reserve(&bad)), "generation_id"));
        cases.push((
            Req::Settle(pb::SettleRequest {
                account_id: ACCOUNT.into(),
                generation_id: bad.clone(),
                actual_quantity: None,
            }),
            "generation_id",
        ));
        cases.push((
            Req::Release(pb::ReleaseRequest {
                account_id: bad.clone(),
                generation_id: "gen-open".into(),
                reason: pb::ReleaseReason::Failed as i32,
            }),
            "account_id",
        ));
        cases.push((
            Req::Extend(pb::ExtendRequest {
                account_id: ACCOUNT.into(),
                generation_id: bad.clone(),
                ttl_seconds: 60,
            }),
            "generation_id",
        ));
        cases.push((
            Req::GetBalance(pb::GetBalanceRequest {
                account_id: bad.clone(),
            }),
            "account_id",
        ));
        cases.push((
            Req::SetPlan(pb::SetPlanRequest {
                request_id: bad.clone(),
                account_id: ACCOUNT.into(),
                plan: "hollywood".into(),
                cycle_anchor: None,
            }),
            "request_id",
        ));
        cases.push((
            Req::SetPlan(pb::SetPlanRequest {
                request_id: "plan-2".into(),
                account_id: ACCOUNT.into(),
                plan: bad.clone(),
                cycle_anchor: None,
            }),
            "plan",
        ));
        cases.push((
            Req::GrantCredits(pb::GrantCreditsRequest {
                account_id: ACCOUNT.into(),
                grant_id: bad.clone(),
                units: 10,
                source: pb::CreditSource::Purchased as i32,
                expires_at: None,
            }),
            "grant_id",
        ));
        cases.push((
            Req::RevokeCredits(pb::RevokeCreditsRequest {
                account_id: bad.clone(),
                grant_id: "grant-1".into(),
            }),
            "account_id",
        ));
        cases.push((
            Req::GetAccount(pb::GetAccountRequest {
                account_id: bad.clone(),
            }),
            "account_id",
        ));
        cases.push((
            Req::Subscribe(pb::SubscribeRequest {
                group: bad.clone(),
                consumer: "c1".into(),
                ephemeral: false,
            }),
            "group",
        ));
        cases.push((
            Req::Subscribe(pb::SubscribeRequest {
                group: "billing".into(),
                consumer: bad.clone(),
                ephemeral: false,
            }),
            "consumer",
        ));
        cases.push((
            Req::Ack(pb::AckRequest {
                group: "billing".into(),
                ack_ids: vec![bad.clone()],
            }),
            "ack_ids",
        ));
        cases.push((
            Req::DeleteGroup(pb::DeleteGroupRequest { group: bad.clone() }),
            "group",
        ));
        let mut q = quote();
        q.account_id = bad.clone();
        cases.push((Req::Quote(q), "account_id"));
        let mut b = pb::ReserveBatchRequest {
            account_id: bad.clone(),
            items: vec![item("gen-b1")],
            ttl_seconds: 0,
        };
        cases.push((Req::ReserveBatch(b.clone()), "account_id"));
        b.account_id = ACCOUNT.into();
        b.items = vec![item(&bad)];
        cases.push((Req::ReserveBatch(b.clone()), "items[0].generation_id"));
        b.items = vec![item("gen-b1"), item(&bad), item("gen-b3")];
        cases.push((Req::ReserveBatch(b), "items[1].generation_id"));
        for field in ["account_id", "generation_id", "refund_id"] {
            let mut r = refund();
            match field {
                "account_id" => r.account_id = bad.clone(),
                "generation_id" => r.generation_id = bad.clone(),
                _ => r.refund_id = bad.clone(),
            }
            cases.push((Req::Refund(r), field));
        }
        if !bad.is_empty() {
            let mut r = reserve("gen-bad");
            r.model = bad.clone();
            cases.push((Req::Reserve(r), "model"));
            let mut q = quote();
            q.model = bad.clone();
            cases.push((Req::Quote(q), "model"));
            let mut i = item("gen-b2");
            i.model = bad;
            cases.push((batch(vec![item("gen-b1"), i]), "items[1].model"));
        }
    }
    let reserve_with = |f: &dyn Fn(&mut pb::ReserveRequest)| {
        let mut r = reserve("gen-bad");
        f(&mut r);
        Req::Reserve(r)
    };
    for kind in [99, -1, i32::MAX, i32::MIN, 0] {
        cases.push((reserve_with(&|r| r.kind = kind), "kind"));
    }
    for quantity in [0, 17, u32::MAX] {
        cases.push((reserve_with(&|r| r.quantity = quantity), "quantity"));
    }
    for quantity in [0, 3_601, u32::MAX] {
        cases.push((
            reserve_with(&|r| {
                r.kind = pb::GenerationKind::Video as i32;
                r.quantity = quantity
            }),
            "quantity",
        ));
    }
    cases.push((reserve_with(&|r| r.ttl_seconds = u32::MAX), "ttl_seconds"));
    cases.push((reserve_with(&|r| r.ttl_seconds = 3_601), "ttl_seconds"));
    cases.push((reserve_with(&|r| r.model = "ultra".into()), "model"));
    let label_sets: Vec<HashMap<String, String>> = vec![
        (0..33).map(|i| (format!("k{i}"), "v".into())).collect(),
        HashMap::from([("k".repeat(65), "v".into())]),
        HashMap::from([("k".into(), "v".repeat(257))]),
        HashMap::from([(String::new(), "v".into())]),
        HashMap::from([("k".into(), "a\nb".into())]),
        HashMap::from([("k\u{7f}".into(), "v".into())]),
        HashMap::from([("k".into(), long.clone())]),
        // Each label within its own limits, 40 KiB in all (32 keys of 64 and values of 256
        // 4-byte characters): beyond the 4,096 bytes a hold's labels may take.
        (0..32)
            .map(|i| {
                (
                    format!("{i:02}{}", "\u{1d11e}".repeat(62)),
                    "\u{1d11e}".repeat(256),
                )
            })
            .collect(),
    ];
    for labels in &label_sets {
        cases.push((reserve_with(&|r| r.labels = labels.clone()), "labels"));
    }
    for labels in &label_sets {
        let mut i = item("gen-b2");
        i.labels = labels.clone();
        cases.push((batch(vec![item("gen-b1"), i]), "items[1].labels"));
    }
    let quote_with = |f: &dyn Fn(&mut pb::QuoteRequest)| {
        let mut q = quote();
        f(&mut q);
        Req::Quote(q)
    };
    let batch_item_with = |f: &dyn Fn(&mut pb::ReserveItem)| {
        let mut i = item("gen-b3");
        f(&mut i);
        batch(vec![item("gen-b1"), item("gen-b2"), i])
    };
    for kind in [99, -1, i32::MAX, i32::MIN, 0] {
        cases.push((quote_with(&|q| q.kind = kind), "kind"));
        cases.push((batch_item_with(&|i| i.kind = kind), "items[2].kind"));
    }
    for quantity in [0, 17, u32::MAX] {
        cases.push((quote_with(&|q| q.quantity = quantity), "quantity"));
        cases.push((
            batch_item_with(&|i| i.quantity = quantity),
            "items[2].quantity",
        ));
    }
    for quantity in [0, 3_601] {
        let video = |q: u32| {
            move |i: &mut pb::ReserveItem| {
                i.kind = pb::GenerationKind::Video as i32;
                i.quantity = q
            }
        };
        cases.push((batch_item_with(&video(quantity)), "items[2].quantity"));
    }
    cases.push((quote_with(&|q| q.model = "ultra".into()), "model"));
    cases.push((
        batch_item_with(&|i| i.model = "ultra".into()),
        "items[2].model",
    ));
    // Batches: none, one past the limit, far past it, a generation id twice, a bad ttl (the
    // batch's, checked before its items).
    let many = |n: usize| {
        (0..n)
            .map(|i| item(&format!("gen-m{i}")))
            .collect::<Vec<_>>()
    };
    cases.push((batch(vec![]), "items"));
    cases.push((batch(many(MAX_BATCH_ITEMS + 1)), "items"));
    cases.push((batch(many(1_000)), "items"));
    cases.push((
        batch(vec![item("gen-b1"), item("gen-b2"), item("gen-b1")]),
        "items[2].generation_id",
    ));
    cases.push((
        batch(vec![item("gen-open"), item("gen-open")]),
        "items[1].generation_id",
    ));
    for ttl_seconds in [3_601, u32::MAX] {
        cases.push((
            Req::ReserveBatch(pb::ReserveBatchRequest {
                account_id: ACCOUNT.into(),
                items: vec![item("gen-b1"), item("x{1}")],
                ttl_seconds,
            }),
            "ttl_seconds",
        ));
    }
    for reason in ["a\nb", "\0", "tab\there", &"r".repeat(257), &long] {
        let mut r = refund();
        r.reason = reason.to_string();
        cases.push((Req::Refund(r), "reason"));
    }
    for reason in [0, 5, 99, -1] {
        cases.push((
            Req::Release(pb::ReleaseRequest {
                account_id: ACCOUNT.into(),
                generation_id: "gen-open".into(),
                reason,
            }),
            "reason",
        ));
    }
    cases.push((
        Req::Settle(pb::SettleRequest {
            account_id: ACCOUNT.into(),
            generation_id: "gen-open".into(),
            actual_quantity: Some(0),
        }),
        "actual_quantity",
    ));
    for ttl_seconds in [3_601, u32::MAX] {
        cases.push((
            Req::Extend(pb::ExtendRequest {
                account_id: ACCOUNT.into(),
                generation_id: "gen-open".into(),
                ttl_seconds,
            }),
            "ttl_seconds",
        ));
    }
    let grant_with = |f: &dyn Fn(&mut pb::GrantCreditsRequest)| {
        let mut g = pb::GrantCreditsRequest {
            account_id: ACCOUNT.into(),
            grant_id: "grant-2".into(),
            units: 10,
            source: pb::CreditSource::Purchased as i32,
            expires_at: None,
        };
        f(&mut g);
        Req::GrantCredits(g)
    };
    for units in [0, MAX_GRANT_UNITS + 1, u64::MAX] {
        cases.push((grant_with(&|g| g.units = units), "units"));
    }
    for source in [0, 3, 99, -1] {
        cases.push((grant_with(&|g| g.source = source), "source"));
    }
    let bad_times = [
        Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        },
        Timestamp {
            seconds: i64::MIN,
            nanos: 0,
        },
        Timestamp {
            seconds: NOW_MS / 1_000 + 60,
            nanos: -1,
        },
        Timestamp {
            seconds: NOW_MS / 1_000 + 60,
            nanos: 1_000_000_000,
        },
    ];
    for t in &bad_times {
        cases.push((grant_with(&|g| g.expires_at = Some(*t)), "expires_at"));
        cases.push((
            Req::SetPlan(pb::SetPlanRequest {
                request_id: "plan-3".into(),
                account_id: ACCOUNT.into(),
                plan: "hollywood".into(),
                cycle_anchor: Some(*t),
            }),
            "cycle_anchor",
        ));
    }
    for plan in ["", "ultra", "NONE"] {
        cases.push((
            Req::SetPlan(pb::SetPlanRequest {
                request_id: "plan-4".into(),
                account_id: ACCOUNT.into(),
                plan: plan.into(),
                cycle_anchor: None,
            }),
            "plan",
        ));
    }
    let too_many: Vec<String> = (0..1_001).map(|i| format!("0/{i}-0")).collect();
    for ack_ids in [
        vec![],
        too_many,
        vec!["16/1-0".into()],
        vec!["1/18446744073709551616-0".into()],
        vec!["0/1-0".into(), "x".into()],
        vec!["-1/1-0".into()],
    ] {
        cases.push((
            Req::Ack(pb::AckRequest {
                group: "billing".into(),
                ack_ids,
            }),
            "ack_ids",
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_invalid_argument_naming_the_field_and_change_nothing() {
    let mut s = Running::start().await;
    s.seed().await;
    let account_before = s.account().await;
    let keys_before = s.keys();
    let stream_before = s.redis.cli(&[
        "XLEN",
        &format!("q:{{s{}}}:events", Shards::DEFAULT.of(ACCOUNT)),
    ]);
    assert_eq!(account_before.holds.len(), 1);

    let cases = targeted();
    let count = cases.len();
    for (req, field) in cases {
        let answer = s.send(req.clone()).await;
        let req = short(&req);
        let status = answer.expect_err(&format!("{req} should be refused"));
        assert_eq!(status.code(), Code::InvalidArgument, "{req}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{:?} should name {field} ({req})",
            status.message()
        );
        assert!(status.message().len() < 300, "{status:?}");
        assert!(
            !status.message().contains(['\n', '\r', '\0', '{', '}']),
            "{status:?}"
        );
    }

    let questions = answered();
    for req in questions.clone() {
        let answer = s.send(req.clone()).await;
        assert!(answer.is_ok(), "{}: {answer:?}", short(&req));
    }

    assert_eq!(s.account().await, account_before, "the account changed");
    assert_eq!(s.keys(), keys_before, "Redis keys changed");
    let stream_after = s.redis.cli(&[
        "XLEN",
        &format!("q:{{s{}}}:events", Shards::DEFAULT.of(ACCOUNT)),
    ]);
    assert_eq!(stream_after, stream_before, "events were written");
    check_keys(&s.keys());
    println!(
        "{count} hostile requests refused, {} questions answered; {} keys untouched",
        questions.len(),
        keys_before.len()
    );
    s.stop().await;
}
