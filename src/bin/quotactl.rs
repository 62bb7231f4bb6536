//! `quotactl`: the operator's command line for quota-sidecar. Human tables by default,
//! `--json` for scripts; the admin token comes from `QUOTA_ADMIN_TOKEN`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use prost_types::Timestamp;
use serde_json::{json, Value};
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use quota_sidecar::api::event_json::usage_event_json;
use quota_sidecar::api::status;
use quota_sidecar::billing::consumer::DEFAULT_GROUP as DEFAULT_BILLING_GROUP;
use quota_sidecar::client;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::pb::{
    self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient,
    usage_events_client::UsageEventsClient,
};
use quota_sidecar::text_table::table;

/// Longest a unary call may take before quotactl gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "quotactl",
    version,
    about = "Operate a quota-sidecar: plans, credits, balances",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    /// Worker listener of the sidecar: `host:port` (plaintext) or a URL (`https://` for TLS).
    #[arg(
        long,
        env = "QUOTA_TARGET",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    target: String,
    /// Admin listener of the sidecar: `host:port` (plaintext) or a URL (`https://` for TLS).
    #[arg(
        long,
        env = "QUOTA_ADMIN_TARGET",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    admin_target: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// PEM CA that signed the sidecar's certificate, for `https://` targets.
    #[arg(long, env = "QUOTA_CA_CERT", global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate, for an admin listener that requires one (mutual TLS).
    #[arg(long, env = "QUOTA_CLIENT_CERT", global = true, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// PEM key of `--client-cert`.
    #[arg(long, env = "QUOTA_CLIENT_KEY", global = true, value_name = "FILE")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// TLS of `https://` targets, read from the flags once before any call.
static CLIENT_TLS: OnceLock<Option<ClientTlsConfig>> = OnceLock::new();

/// The TLS settings named by `--ca-cert`, `--client-cert` and `--client-key`, if any.
fn client_tls(cli: &Cli) -> Result<Option<ClientTlsConfig>, Failure> {
    Ok(client::client_tls(
        cli.ca_cert.as_deref(),
        cli.client_cert.as_deref(),
        cli.client_key.as_deref(),
    )?)
}

/// `--model` help: the models come from the sidecar's catalog, which an operator may change,
/// so the built-in ones are named as an example and `quotactl catalog` as the source.
fn model_help() -> String {
    let catalog = Catalog::builtin();
    let models: Vec<&str> = catalog.model_ids().collect();
    format!(
        "Model from the sidecar's catalog (`quotactl catalog` lists the one in force; the \
         built-in catalog has {})",
        models.join(", ")
    )
}

/// The plan argument's help, from the built-in catalog like [`model_help`].
fn plan_help() -> String {
    let catalog = Catalog::builtin();
    let plans: Vec<&str> = catalog.plans().iter().map(|p| p.id.as_str()).collect();
    format!(
        "Plan id from the sidecar's catalog, or `none` to cancel (`quotactl catalog` lists the \
         plans in force; the built-in catalog has {})",
        plans.join(", ")
    )
}

#[derive(Subcommand)]
enum Command {
    /// Plan, cycle, allowance and credits of an account.
    Balance {
        /// Account id.
        account: String,
    },
    /// Balance, grants and open holds of an account (admin).
    Account {
        /// Account id.
        account: String,
    },
    /// Start, upgrade, downgrade or cancel (`none`) a plan (admin).
    SetPlan {
        /// Account id.
        account: String,
        #[arg(help = plan_help())]
        plan: String,
        /// Idempotency key; a retry with the same id changes nothing.
        #[arg(long)]
        request_id: Option<String>,
        /// First cycle start when a plan starts, RFC 3339 (default: now).
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Add credits (admin). The grant id is the idempotency key.
    Grant {
        /// Account id.
        account: String,
        /// Id of the grant, unique on the account; a retry with the same id and terms changes
        /// nothing. Ids starting with `refund:` are reserved for refunds.
        grant_id: String,
        /// Credits to add, in usage units.
        units: u64,
        #[arg(long, value_enum, default_value = "purchased")]
        source: Source,
        /// Expiry, RFC 3339 (default: never).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Take what is left of a grant (admin).
    Revoke {
        /// Account id.
        account: String,
        /// Id of the grant, as `quotactl account` lists it.
        grant_id: String,
    },
    /// Hold the cost of a generation (debugging).
    Reserve {
        /// Account id.
        account: String,
        /// Id of the generation; a retry with the same id and request answers the same hold.
        generation_id: String,
        /// What is generated.
        #[arg(value_enum)]
        kind: KindArg,
        /// Images, or video seconds.
        quantity: u32,
        #[arg(long, default_value = "standard", help = model_help())]
        model: String,
        /// Seconds the hold lives unless extended (0: the sidecar's default).
        #[arg(long, default_value_t = 0)]
        ttl_seconds: u32,
    },
    /// What a Reserve would answer now: cost, split, allowed or why not (changes nothing).
    ///
    /// A denial is an answer (exit status 0), not a failure.
    Quote {
        /// Account id.
        account: String,
        /// What would be generated.
        #[arg(value_enum)]
        kind: KindArg,
        /// Images, or video seconds.
        quantity: u32,
        #[arg(long, default_value = "standard", help = model_help())]
        model: String,
    },
    /// Hold several generations of one account, all or none (debugging).
    ReserveBatch {
        /// Account id.
        account: String,
        /// One generation, `GEN:KIND:QUANTITY[:MODEL]` (e.g. `shot-1:video:5:pro`); repeat
        /// for each, in order. The model defaults to `standard`.
        #[arg(long = "item", value_name = "GEN:KIND:QUANTITY[:MODEL]", required = true, value_parser = parse_item)]
        items: Vec<ItemArg>,
        /// Seconds the holds live unless extended (0: the sidecar's default).
        #[arg(long, default_value_t = 0)]
        ttl_seconds: u32,
    },
    /// Charge a hold (debugging).
    Settle {
        /// Account id.
        account: String,
        /// Id of the generation whose hold is charged.
        generation_id: String,
        /// What the job really produced (default: as reserved).
        #[arg(long)]
        actual_quantity: Option<u32>,
    },
    /// Give a hold back (debugging).
    Release {
        /// Account id.
        account: String,
        /// Id of the generation whose hold is given back.
        generation_id: String,
        #[arg(long, value_enum, default_value = "cancelled")]
        reason: ReasonArg,
    },
    /// Give back a settled generation's charge, whole or in part (admin). The refund id is the
    /// idempotency key.
    Refund {
        /// Account id.
        account: String,
        /// Id of the settled generation.
        generation_id: String,
        /// Id of this refund; a retry with the same id and units changes nothing.
        refund_id: String,
        /// Units to give back (default: all that is still refundable).
        #[arg(long, default_value_t = 0)]
        units: u64,
        /// Why, for support and billing (kept on the `hold.refunded` event).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Plans, prices, usage thresholds and version of the catalog in force.
    Catalog,
    /// Usage events (admin).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Stream usage events as they happen, one line each (Ctrl-C stops). Without `--group`
    /// the stream reads through a group of its own that holds nothing back and is removed
    /// when it ends.
    Tail {
        /// Durable consumer group to read as; a new group starts at the oldest retained event
        /// and stays until `events groups delete`.
        #[arg(long)]
        group: Option<String>,
        /// Consumer name within the group (default: quotactl-<pid>). Events left unacked
        /// go to another consumer of the group when this one stops.
        #[arg(long)]
        consumer: Option<String>,
        /// Acknowledge each event once printed, so that the group does not see it again
        /// (with `--group`: without it, nothing is kept for later anyway). Refused for
        /// quota-billing's group and for a group that already exists (others read it, and
        /// an event acked here never reaches them) unless `--force`.
        #[arg(long, requires = "group")]
        ack: bool,
        /// With `--ack`: ack even in a group that others read.
        #[arg(long, requires = "ack")]
        force: bool,
        /// Stop after this many events.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
    },
    /// Consumer groups with their backlog: unacked events, the oldest one's age, and
    /// retained events not yet delivered (lag).
    Groups {
        #[command(subcommand)]
        command: Option<GroupsCommand>,
    },
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// Remove a consumer group from every shard: its position and its unacked events. A
    /// group nobody reads any more holds back trimming until the retention cap.
    Delete {
        /// The group's name, as `events groups` lists it.
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Source {
    Promotional,
    Purchased,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    CharacterImage,
    LocationImage,
    FirstFrame,
    Video,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReasonArg {
    Failed,
    ContentFiltered,
    SystemError,
    Cancelled,
}

impl KindArg {
    fn to_pb(self) -> pb::GenerationKind {
        match self {
            KindArg::CharacterImage => pb::GenerationKind::CharacterImage,
            KindArg::LocationImage => pb::GenerationKind::LocationImage,
            KindArg::FirstFrame => pb::GenerationKind::FirstFrame,
            KindArg::Video => pb::GenerationKind::Video,
        }
    }
}

/// One `--item` of `reserve-batch`.
#[derive(Clone)]
struct ItemArg {
    generation_id: String,
    kind: KindArg,
    quantity: u32,
    model: String,
}

/// `GEN:KIND:QUANTITY[:MODEL]`. Generation ids may contain `:`, so the fields are taken from
/// the right: a model is present when the part third from the right is a kind.
fn parse_item(text: &str) -> Result<ItemArg, String> {
    let kind = |s: &str| KindArg::from_str(s, true).ok();
    let parts: Vec<&str> = text.rsplitn(4, ':').collect();
    let (generation, kind_text, quantity, model) = match parts[..] {
        [model, quantity, k, generation] if kind(k).is_some() => (generation, k, quantity, model),
        _ => match text.rsplitn(3, ':').collect::<Vec<_>>()[..] {
            [quantity, k, generation] => (generation, k, quantity, "standard"),
            _ => return Err(format!("`{text}` is not GEN:KIND:QUANTITY[:MODEL]")),
        },
    };
    let kind = kind(kind_text).ok_or_else(|| {
        format!("`{kind_text}` is not a kind (character-image, location-image, first-frame, video)")
    })?;
    let quantity = quantity
        .parse()
        .map_err(|_| format!("quantity `{quantity}` is not a whole number"))?;
    Ok(ItemArg {
        generation_id: generation.to_string(),
        kind,
        quantity,
        model: model.to_string(),
    })
}

/// Exit statuses beyond success, one per kind of failure a script may act on; listed in
/// `--help` ([`EXIT_CODES_HELP`]).
mod exit {
    /// Anything else: an internal error of the sidecar, or an answer quotactl does not know.
    pub const FAILURE: u8 = 1;
    /// The command line or the request is wrong (clap's own usage errors exit 2 as well).
    pub const USAGE: u8 = 2;
    /// Refused: the plan does not allow it, not enough funds, too many grants, or a wrong
    /// admin token.
    pub const DENIED: u8 = 3;
    /// No such hold, grant or consumer group.
    pub const NOT_FOUND: u8 = 4;
    /// An id already used differently, or a hold whose state does not allow the operation.
    pub const CONFLICT: u8 = 5;
    /// The sidecar or its store cannot answer now; the same command later may succeed.
    pub const UNAVAILABLE: u8 = 6;
}

/// The exit statuses as `--help` shows them.
const EXIT_CODES_HELP: &str = "Exit status:
  0  success (a Quote that is denied is an answer, and exits 0)
  1  other failure (an internal error of the sidecar)
  2  usage: a wrong command line or request (INVALID_ARGUMENT)
  3  denied: PLAN_DENIED, INSUFFICIENT_FUNDS, TOO_MANY_GRANTS, or a refused admin token
  4  not found: HOLD_NOT_FOUND, GRANT_NOT_FOUND, no such consumer group
  5  conflict: *_CONFLICT, HOLD_STATE, SETTLE_ABOVE_HOLD, REFUND_ABOVE_CHARGE
  6  unavailable: the sidecar cannot be reached, or STORE_UNAVAILABLE

A refusal by the sidecar is one line on stderr ending in its reason, e.g. `[HOLD_NOT_FOUND]`.";

/// What went wrong, said for an operator, and the exit status it gives.
struct Failure {
    message: String,
    exit: u8,
}

impl Failure {
    fn usage(message: String) -> Failure {
        Failure {
            message,
            exit: exit::USAGE,
        }
    }

    /// A step refused because it would take what another reader is owed (a conflict).
    fn conflict(message: String) -> Failure {
        Failure {
            message,
            exit: exit::CONFLICT,
        }
    }
}

impl From<client::ClientError> for Failure {
    fn from(e: client::ClientError) -> Failure {
        let exit = match e {
            client::ClientError::Unreachable { .. } => exit::UNAVAILABLE,
            _ => exit::USAGE,
        };
        Failure {
            message: e.to_string(),
            exit,
        }
    }
}

/// The exit status of an error reason (`ErrorInfo.reason`).
fn exit_of_reason(reason: &str) -> u8 {
    match reason {
        "INVALID_ARGUMENT" => exit::USAGE,
        "PLAN_DENIED" | "INSUFFICIENT_FUNDS" | "TOO_MANY_GRANTS" | "UNAUTHENTICATED" => {
            exit::DENIED
        }
        "HOLD_NOT_FOUND" | "GRANT_NOT_FOUND" => exit::NOT_FOUND,
        "GENERATION_CONFLICT"
        | "GRANT_CONFLICT"
        | "REQUEST_CONFLICT"
        | "REFUND_CONFLICT"
        | "HOLD_STATE"
        | "SETTLE_ABOVE_HOLD"
        | "REFUND_ABOVE_CHARGE" => exit::CONFLICT,
        "STORE_UNAVAILABLE" | "SHUTTING_DOWN" => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

/// The exit status of a status without error details (a transport error, an older server).
fn exit_of_code(code: Code) -> u8 {
    match code {
        Code::InvalidArgument => exit::USAGE,
        Code::PermissionDenied | Code::ResourceExhausted | Code::Unauthenticated => exit::DENIED,
        Code::NotFound => exit::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => exit::CONFLICT,
        Code::Unavailable | Code::DeadlineExceeded => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

impl Failure {
    fn from_status(status: Status, target: &str) -> Failure {
        let message = status.message();
        let reason = status
            .get_error_details()
            .error_info()
            .filter(|info| info.domain == status::DOMAIN)
            .map(|info| info.reason.clone());
        let text = match (status.code(), reason.as_deref()) {
            // The sidecar answered, but its store did not: the address is right and retrying
            // later is the remedy.
            (Code::Unavailable, Some(status::reason::STORE_UNAVAILABLE)) => format!(
                "the sidecar at {target} cannot reach its store ({message}); calls fail until it is back"
            ),
            (Code::Unavailable, Some(status::reason::SHUTTING_DOWN)) => {
                format!("the sidecar at {target} is shutting down ({message})")
            }
            (Code::Unavailable, _) => format!(
                "cannot reach the sidecar at {target} ({message}); is it running and is the address right?"
            ),
            (Code::Unauthenticated, _) => format!(
                "the admin listener refused the token ({message}); set QUOTA_ADMIN_TOKEN to the sidecar's token"
            ),
            (Code::InvalidArgument, _) => format!("invalid request: {message}"),
            (Code::PermissionDenied, _) => format!("not allowed by the plan: {message}"),
            // The sidecar's message already says what ran out (funds, or the grant limit).
            (Code::ResourceExhausted, _) => message.to_string(),
            (Code::AlreadyExists, _) => format!("already exists: {message}"),
            (Code::NotFound, _) => format!("not found: {message}"),
            (Code::FailedPrecondition, _) => format!("not possible now: {message}"),
            (Code::Unimplemented, _) => {
                format!("the sidecar does not support this yet: {message}")
            }
            (Code::DeadlineExceeded, _) => {
                format!("the sidecar did not answer in time: {message}")
            }
            (code, _) => format!("{}: {message}", code.description()),
        };
        match reason {
            Some(reason) => Failure {
                message: format!("{text} [{reason}]"),
                exit: exit_of_reason(&reason),
            },
            None => Failure {
                message: text,
                exit: exit_of_code(status.code()),
            },
        }
    }
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, Failure> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            Failure::usage(format!("--{field}: `{text}` is not an RFC 3339 time ({e})"))
        })?;
    Ok(Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    })
}

async fn channel(target: &str) -> Result<Channel, Failure> {
    connect(target, Some(CALL_TIMEOUT)).await
}

/// A channel whose calls time out after `call_timeout`; `None` for streams that stay open.
async fn connect(target: &str, call_timeout: Option<Duration>) -> Result<Channel, Failure> {
    let tls = CLIENT_TLS.get().and_then(Option::as_ref);
    Ok(client::connect(target, tls, call_timeout).await?)
}

fn admin_request<T>(message: T) -> Result<Request<T>, Failure> {
    Ok(client::with_token(
        message,
        &client::admin_token_from_env()?,
    )?)
}

async fn run(cli: Cli) -> Result<Output, Failure> {
    let worker = |status| Failure::from_status(status, &cli.target);
    let admin = |status| Failure::from_status(status, &cli.admin_target);
    Ok(match cli.command {
        Command::Balance { account } => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let balance = client
                .get_balance(pb::GetBalanceRequest {
                    account_id: account,
                })
                .await
                .map_err(worker)?
                .into_inner();
            Output::Balance(balance)
        }
        Command::Account { account } => {
            let mut client = QuotaAdminClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::GetAccountRequest {
                account_id: account,
            })?;
            Output::Account(
                client
                    .get_account(request)
                    .await
                    .map_err(admin)?
                    .into_inner(),
            )
        }
        Command::SetPlan {
            account,
            plan,
            request_id,
            anchor,
        } => {
            let mut client = QuotaAdminClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::SetPlanRequest {
                request_id: request_id.unwrap_or_else(|| new_request_id(&account)),
                account_id: account,
                plan,
                cycle_anchor: anchor.map(|a| parse_time("anchor", &a)).transpose()?,
            })?;
            Output::PlanSet(client.set_plan(request).await.map_err(admin)?.into_inner())
        }
        Command::Grant {
            account,
            grant_id,
            units,
            source,
            expires,
        } => {
            let mut client = QuotaAdminClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::GrantCreditsRequest {
                account_id: account,
                grant_id,
                units,
                source: match source {
                    Source::Promotional => pb::CreditSource::Promotional,
                    Source::Purchased => pb::CreditSource::Purchased,
                } as i32,
                expires_at: expires.map(|e| parse_time("expires", &e)).transpose()?,
            })?;
            Output::Granted(
                client
                    .grant_credits(request)
                    .await
                    .map_err(admin)?
                    .into_inner(),
            )
        }
        Command::Revoke { account, grant_id } => {
            let mut client = QuotaAdminClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::RevokeCreditsRequest {
                account_id: account,
                grant_id,
            })?;
            Output::Revoked(
                client
                    .revoke_credits(request)
                    .await
                    .map_err(admin)?
                    .into_inner(),
            )
        }
        Command::Reserve {
            account,
            generation_id,
            kind,
            quantity,
            model,
            ttl_seconds,
        } => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let response = client
                .reserve(pb::ReserveRequest {
                    account_id: account,
                    generation_id,
                    kind: kind.to_pb() as i32,
                    model,
                    quantity,
                    ttl_seconds,
                    labels: Default::default(),
                })
                .await
                .map_err(worker)?
                .into_inner();
            Output::Reserved(response)
        }
        Command::Quote {
            account,
            kind,
            quantity,
            model,
        } => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let response = client
                .quote(pb::QuoteRequest {
                    account_id: account,
                    kind: kind.to_pb() as i32,
                    model,
                    quantity,
                })
                .await
                .map_err(worker)?
                .into_inner();
            Output::Quoted(response)
        }
        Command::ReserveBatch {
            account,
            items,
            ttl_seconds,
        } => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let items = items
                .into_iter()
                .map(|i| pb::ReserveItem {
                    generation_id: i.generation_id,
                    kind: i.kind.to_pb() as i32,
                    model: i.model,
                    quantity: i.quantity,
                    labels: Default::default(),
                })
                .collect();
            let response = client
                .reserve_batch(pb::ReserveBatchRequest {
                    account_id: account,
                    items,
                    ttl_seconds,
                })
                .await
                .map_err(worker)?
                .into_inner();
            Output::ReservedBatch(response)
        }
        Command::Settle {
            account,
            generation_id,
            actual_quantity,
        } => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let response = client
                .settle(pb::SettleRequest {
                    account_id: account,
                    generation_id,
                    actual_quantity,
                })
                .await
                .map_err(worker)?
                .into_inner();
            Output::Settled(response)
        }
        Command::Release {
            account,
            generation_id,
            reason,
        } => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let reason = match reason {
                ReasonArg::Failed => pb::ReleaseReason::Failed,
                ReasonArg::ContentFiltered => pb::ReleaseReason::ContentFiltered,
                ReasonArg::SystemError => pb::ReleaseReason::SystemError,
                ReasonArg::Cancelled => pb::ReleaseReason::Cancelled,
            };
            let response = client
                .release(pb::ReleaseRequest {
                    account_id: account,
                    generation_id,
                    reason: reason as i32,
                })
                .await
                .map_err(worker)?
                .into_inner();
            Output::Released(response)
        }
        Command::Refund {
            account,
            generation_id,
            refund_id,
            units,
            reason,
        } => {
            let mut client = QuotaAdminClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::RefundRequest {
                account_id: account,
                generation_id,
                refund_id,
                units,
                reason,
            })?;
            Output::Refunded(client.refund(request).await.map_err(admin)?.into_inner())
        }
        Command::Catalog => {
            let mut client = QuotaClient::new(channel(&cli.target).await?);
            let catalog = client
                .get_catalog(pb::GetCatalogRequest {})
                .await
                .map_err(worker)?
                .into_inner();
            Output::Catalog(catalog)
        }
        Command::Events {
            command: EventsCommand::Groups { command: None },
        } => {
            let mut client = UsageEventsClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::ListGroupsRequest {})?;
            let groups = client.list_groups(request).await.map_err(admin)?;
            Output::Groups(groups.into_inner().groups)
        }
        Command::Events {
            command:
                EventsCommand::Groups {
                    command: Some(GroupsCommand::Delete { name }),
                },
        } => {
            let mut client = UsageEventsClient::new(channel(&cli.admin_target).await?);
            let request = admin_request(pb::DeleteGroupRequest {
                group: name.clone(),
            })?;
            let deleted = client.delete_group(request).await.map_err(admin)?;
            if !deleted.into_inner().deleted {
                return Err(Failure {
                    message: format!("no consumer group `{name}`"),
                    exit: exit::NOT_FOUND,
                });
            }
            Output::GroupDeleted(name)
        }
        Command::Events {
            command:
                EventsCommand::Tail {
                    group,
                    consumer,
                    ack,
                    force,
                    max,
                },
        } => {
            let consumer = consumer.unwrap_or_else(|| format!("quotactl-{}", std::process::id()));
            let tail = Tail {
                group,
                consumer,
                ack,
                force,
                max,
                json: cli.json,
            };
            tail.run(&cli.admin_target).await?;
            Output::Nothing
        }
    })
}

/// `events tail`: prints a group's events as they arrive.
struct Tail {
    /// `None`: an ephemeral subscription.
    group: Option<String>,
    consumer: String,
    ack: bool,
    /// Ack even in a group others read.
    force: bool,
    max: Option<u64>,
    json: bool,
}

impl Tail {
    /// Refuses `--ack` in a group others read, unless `--force`: quota-billing's group, or
    /// any durable group that exists already (someone subscribed to it; the sidecar does not
    /// say who, so an existing group counts as read by others).
    async fn check_ack_group(
        &self,
        client: &mut UsageEventsClient<Channel>,
        target: &str,
    ) -> Result<(), Failure> {
        let (true, false, Some(group)) = (self.ack, self.force, &self.group) else {
            return Ok(());
        };
        let remedy = "tail without --group to watch (nothing is taken from anyone), use a \
                      group of your own, or pass --force";
        if group == DEFAULT_BILLING_GROUP {
            return Err(Failure::conflict(format!(
                "refusing to ack in `{group}`, quota-billing's group: every event acked here is \
                 one billing never receives; {remedy}"
            )));
        }
        let request = admin_request(pb::ListGroupsRequest {})?;
        let groups = client
            .list_groups(request)
            .await
            .map_err(|status| Failure::from_status(status, target))?
            .into_inner()
            .groups;
        if let Some(g) = groups.iter().find(|g| &g.name == group) {
            return Err(Failure::conflict(format!(
                "refusing to ack in `{group}`: the group exists ({} pending, {} not delivered \
                 yet), so others may read it and every event acked here is one they never \
                 receive; {remedy} if the group is yours",
                g.pending, g.lag
            )));
        }
        Ok(())
    }

    /// Streams until `max` events, Ctrl-C, or the sidecar ends the stream. An event is acked
    /// only after its line is written, so a failed write leaves it for redelivery.
    async fn run(&self, target: &str) -> Result<(), Failure> {
        let failed = |status| Failure::from_status(status, target);
        let mut client = UsageEventsClient::new(connect(target, None).await?);
        self.check_ack_group(&mut client, target).await?;
        let request = admin_request(pb::SubscribeRequest {
            group: self.group.clone().unwrap_or_default(),
            consumer: self.consumer.clone(),
            ephemeral: self.group.is_none(),
        })?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut events = tokio::select! {
            answer = client.subscribe(request) => answer.map_err(failed)?.into_inner(),
            _ = &mut ctrl_c => return Ok(()),
        };
        let mut out = std::io::stdout().lock();
        if !self.json && writeln!(out, "{}", event_header()).is_err() {
            return Ok(());
        }
        let mut printed = 0u64;
        while self.max.is_none_or(|max| printed < max) {
            let event = tokio::select! {
                next = events.message() => match next.map_err(failed)? {
                    Some(event) => event,
                    None => break,
                },
                _ = &mut ctrl_c => break,
            };
            let line = if self.json {
                usage_event_json(&event).to_string()
            } else {
                event_text(&event)
            };
            // stdout closed (e.g. piped into `head`): stop quietly, leaving the event unacked.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
            printed += 1;
            // An ephemeral stream's events are acked by the sidecar as it sends them.
            if let (true, Some(group)) = (self.ack, &self.group) {
                let mut request = admin_request(pb::AckRequest {
                    group: group.clone(),
                    ack_ids: vec![event.ack_id],
                })?;
                request.set_timeout(CALL_TIMEOUT);
                client.ack(request).await.map_err(failed)?;
            }
        }
        Ok(())
    }
}

/// A request id for a one-off SetPlan: unique per call, so retrying the command is a new
/// change (pass --request-id to make a retry idempotent).
fn new_request_id(account: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("quotactl:{account}:{nanos}")
}

enum Output {
    Balance(pb::Balance),
    Account(pb::Account),
    PlanSet(pb::SetPlanResponse),
    Granted(pb::GrantCreditsResponse),
    Revoked(pb::RevokeCreditsResponse),
    Reserved(pb::ReserveResponse),
    Quoted(pb::QuoteResponse),
    ReservedBatch(pb::ReserveBatchResponse),
    Refunded(pb::RefundResponse),
    Settled(pb::SettleResponse),
    Released(pb::ReleaseResponse),
    Catalog(pb::Catalog),
    Groups(Vec<pb::ConsumerGroup>),
    GroupDeleted(String),
    /// Already printed while running (`events tail`).
    Nothing,
}

impl Output {
    fn json(&self) -> Value {
        match self {
            Output::Balance(b) => balance_json(b),
            Output::Account(a) => json!({
                "balance": a.balance.as_ref().map(balance_json),
                "grants": a.grants.iter().map(grant_json).collect::<Vec<_>>(),
                "holds": a.holds.iter().map(hold_json).collect::<Vec<_>>(),
            }),
            Output::PlanSet(r) => json!({
                "change": enum_text(pb::PlanChange::try_from(r.change).map(|c| c.as_str_name()), "PLAN_CHANGE_"),
                "effective_at": time_json(r.effective_at.as_ref()),
                "allowance_added": r.allowance_added,
                "prorated_charge_cents": r.prorated_charge_cents,
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Granted(r) => json!({
                "grant": r.grant.as_ref().map(grant_json),
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Revoked(r) => json!({
                "revoked_units": r.revoked_units,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Reserved(r) => json!({
                "hold": r.hold.as_ref().map(hold_json),
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Quoted(r) => json!({
                "cost_units": r.cost_units,
                "from_allowance": r.from_allowance,
                "from_credits": r.from_credits,
                "allowed": r.allowed,
                "denial": (!r.allowed).then(|| denial_text(r.denial)),
                "denial_message": r.denial_message,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::ReservedBatch(r) => json!({
                "holds": r.holds.iter().map(hold_json).collect::<Vec<_>>(),
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Refunded(r) => json!({
                "refunded_units": r.refunded_units,
                "to_allowance": r.to_allowance,
                "to_credits": r.to_credits,
                "grant_id": r.grant_id,
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Settled(r) => json!({
                "hold": r.hold.as_ref().map(hold_json),
                "charged_units": r.charged_units,
                "returned_units": r.returned_units,
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Released(r) => json!({
                "hold": r.hold.as_ref().map(hold_json),
                "returned_units": r.returned_units,
                "replayed": r.replayed,
                "balance": r.balance.as_ref().map(balance_json),
            }),
            Output::Catalog(c) => catalog_json(c),
            Output::Groups(groups) => json!(groups
                .iter()
                .map(|g| json!({
                    "name": g.name,
                    "pending": g.pending,
                    "oldest_unacked_ack_id": (!g.oldest_unacked_ack_id.is_empty())
                        .then_some(&g.oldest_unacked_ack_id),
                    "oldest_unacked_age_ms": g.oldest_unacked_age_ms,
                    "lag": g.lag,
                }))
                .collect::<Vec<_>>()),
            Output::GroupDeleted(name) => json!({ "deleted": name }),
            Output::Nothing => Value::Null,
        }
    }

    fn human(&self) -> String {
        let mut out = String::new();
        let replay = |replayed: bool| {
            if replayed {
                " (replayed: nothing changed)"
            } else {
                ""
            }
        };
        match self {
            Output::Balance(b) => out += &balance_text(b),
            Output::Account(a) => {
                if let Some(b) = &a.balance {
                    out += &balance_text(b);
                }
                out += "\nGrants (burn order)\n";
                out += &table(
                    &[
                        "GRANT",
                        "SOURCE",
                        "GRANTED",
                        "REMAINING",
                        "HELD",
                        "EXPIRES",
                        "CREATED",
                    ],
                    a.grants.iter().map(|g| {
                        vec![
                            g.grant_id.clone(),
                            enum_text(
                                pb::CreditSource::try_from(g.source).map(|s| s.as_str_name()),
                                "CREDIT_SOURCE_",
                            ),
                            g.units_granted.to_string(),
                            g.units_remaining.to_string(),
                            g.units_held.to_string(),
                            time_text(g.expires_at.as_ref()).unwrap_or_else(|| "never".into()),
                            time_text(g.created_at.as_ref()).unwrap_or_default(),
                        ]
                    }),
                );
                out += "\nOpen holds\n";
                out += &holds_table(&a.holds);
            }
            Output::PlanSet(r) => {
                out += &format!(
                    "{}{}: effective {}, allowance added {}, prorated charge {} cents\n\n",
                    enum_text(
                        pb::PlanChange::try_from(r.change).map(|c| c.as_str_name()),
                        "PLAN_CHANGE_"
                    ),
                    replay(r.replayed),
                    time_text(r.effective_at.as_ref()).unwrap_or_default(),
                    r.allowance_added,
                    r.prorated_charge_cents
                );
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Granted(r) => {
                if let Some(g) = &r.grant {
                    out += &format!(
                        "grant {}: {} units{}\n\n",
                        g.grant_id,
                        g.units_granted,
                        replay(r.replayed)
                    );
                }
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Revoked(r) => {
                out += &format!("revoked {} units\n\n", r.revoked_units);
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Reserved(r) => {
                out += &hold_text(r.hold.as_ref(), replay(r.replayed));
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Quoted(r) => {
                if r.allowed {
                    out += &format!(
                        "allowed: {} units = {} allowance + {} credits\n\n",
                        r.cost_units, r.from_allowance, r.from_credits
                    );
                } else {
                    out += &format!(
                        "denied ({}): {}\ncost {} units; the account covers {} from the allowance + {} from credits\n\n",
                        denial_text(r.denial),
                        r.denial_message,
                        r.cost_units,
                        r.from_allowance,
                        r.from_credits
                    );
                }
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::ReservedBatch(r) => {
                let total = |f: fn(&pb::Hold) -> u64| r.holds.iter().map(f).sum::<u64>();
                out += &format!(
                    "held {} generations: {} units = {} allowance + {} credits{}\n",
                    r.holds.len(),
                    total(|h| h.cost_units),
                    total(|h| h.from_allowance),
                    total(|h| h.from_credits),
                    replay(r.replayed)
                );
                out += &holds_table(&r.holds);
                out += "\n";
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Refunded(r) => {
                let grant = if r.grant_id.is_empty() {
                    String::new()
                } else {
                    format!(" (grant {})", r.grant_id)
                };
                out += &format!(
                    "refunded {} units: {} to the allowance, {} as credits{grant}{}\n\n",
                    r.refunded_units,
                    r.to_allowance,
                    r.to_credits,
                    replay(r.replayed)
                );
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Settled(r) => {
                out += &format!(
                    "charged {} units, returned {}{}\n",
                    r.charged_units,
                    r.returned_units,
                    replay(r.replayed)
                );
                out += &hold_text(r.hold.as_ref(), "");
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Released(r) => {
                out += &format!(
                    "returned {} units{}\n",
                    r.returned_units,
                    replay(r.replayed)
                );
                out += &hold_text(r.hold.as_ref(), "");
                out += &r.balance.as_ref().map(balance_text).unwrap_or_default();
            }
            Output::Catalog(c) => out += &catalog_text(c),
            Output::Groups(groups) => {
                out += &table(
                    &["GROUP", "PENDING", "OLDEST UNACKED", "LAG"],
                    groups.iter().map(|g| {
                        let oldest = if g.oldest_unacked_ack_id.is_empty() {
                            "-".to_string()
                        } else {
                            age_text(g.oldest_unacked_age_ms)
                        };
                        vec![
                            g.name.clone(),
                            g.pending.to_string(),
                            oldest,
                            g.lag.to_string(),
                        ]
                    }),
                )
            }
            Output::GroupDeleted(name) => out += &format!("deleted consumer group `{name}`\n"),
            Output::Nothing => {}
        }
        out
    }
}

/// An age as `3d4h`, `2h5m`, `4m7s` or `12s`: the two largest units.
fn age_text(ms: u64) -> String {
    let s = ms / 1_000;
    let (d, h, m, s) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

fn enum_name(name: Result<&str, prost::UnknownEnumValue>) -> String {
    name.map(str::to_string)
        .unwrap_or_else(|e| format!("UNKNOWN_{}", e.0))
}

fn enum_text(name: Result<&str, prost::UnknownEnumValue>, prefix: &str) -> String {
    let name = enum_name(name);
    name.strip_prefix(prefix).unwrap_or(&name).to_lowercase()
}

/// A generation kind as a word: `character_image`, `video`, ...
fn kind_text(kind: i32) -> String {
    enum_text(
        pb::GenerationKind::try_from(kind).map(|k| k.as_str_name()),
        "GENERATION_KIND_",
    )
}

/// A Quote's denial reason as a word: `insufficient_funds`, `model_not_in_plan`, ...
fn denial_text(reason: i32) -> String {
    enum_text(
        pb::DenialReason::try_from(reason).map(|d| d.as_str_name()),
        "DENIAL_REASON_",
    )
}

/// Holds as a table, one row each (`account`'s open holds, `reserve-batch`'s new ones).
fn holds_table(holds: &[pb::Hold]) -> String {
    table(
        &[
            "GENERATION",
            "KIND",
            "MODEL",
            "QTY",
            "COST",
            "ALLOWANCE",
            "CREDITS",
            "EXPIRES",
        ],
        holds.iter().map(|h| {
            vec![
                h.generation_id.clone(),
                kind_text(h.kind),
                h.model.clone(),
                h.quantity.to_string(),
                h.cost_units.to_string(),
                h.from_allowance.to_string(),
                h.from_credits.to_string(),
                time_text(h.expires_at.as_ref()).unwrap_or_default(),
            ]
        }),
    )
}

fn time_text(at: Option<&Timestamp>) -> Option<String> {
    let at = at?;
    let t = time::OffsetDateTime::from_unix_timestamp(at.seconds).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn time_json(at: Option<&Timestamp>) -> Value {
    time_text(at).map(Value::String).unwrap_or(Value::Null)
}

fn balance_json(b: &pb::Balance) -> Value {
    json!({
        "account_id": b.account_id,
        "plan": b.plan,
        "scheduled_plan": b.scheduled_plan,
        "cycle_start": time_json(b.cycle_start.as_ref()),
        "cycle_end": time_json(b.cycle_end.as_ref()),
        "allowance_total": b.allowance_total,
        "allowance_used": b.allowance_used,
        "allowance_held": b.allowance_held,
        "allowance_available": b.allowance_available,
        "credits_available": b.credits_available,
        "credits_held": b.credits_held,
        "open_holds": b.open_holds,
    })
}

fn grant_json(g: &pb::Grant) -> Value {
    json!({
        "grant_id": g.grant_id,
        "source": enum_text(pb::CreditSource::try_from(g.source).map(|s| s.as_str_name()), "CREDIT_SOURCE_"),
        "units_granted": g.units_granted,
        "units_remaining": g.units_remaining,
        "units_held": g.units_held,
        "expires_at": time_json(g.expires_at.as_ref()),
        "created_at": time_json(g.created_at.as_ref()),
    })
}

fn hold_json(h: &pb::Hold) -> Value {
    json!({
        "account_id": h.account_id,
        "generation_id": h.generation_id,
        "kind": kind_text(h.kind),
        "model": h.model,
        "quantity": h.quantity,
        "cost_units": h.cost_units,
        "from_allowance": h.from_allowance,
        "from_credits": h.from_credits,
        "grants": h.grants.iter().map(|d| json!({"grant_id": d.grant_id, "units": d.units})).collect::<Vec<_>>(),
        "state": enum_text(pb::HoldState::try_from(h.state).map(|s| s.as_str_name()), "HOLD_STATE_"),
        "expires_at": time_json(h.expires_at.as_ref()),
        "created_at": time_json(h.created_at.as_ref()),
        "charged_units": h.charged_units,
    })
}

fn catalog_json(c: &pb::Catalog) -> Value {
    json!({
        "version": c.version,
        "plans": c.plans.iter().map(|p| json!({
            "id": p.id,
            "price_cents": p.price_cents,
            "allowance_units": p.allowance_units,
            "models": p.models,
            "max_open_holds": p.max_open_holds,
            "max_video_seconds": p.max_video_seconds,
        })).collect::<Vec<_>>(),
        "prices": c.prices.iter().map(|p| json!({
            "kind": kind_text(p.kind),
            "model": p.model,
            "units_per_item": p.units_per_item,
        })).collect::<Vec<_>>(),
        "alert_thresholds_percent": c.alert_thresholds_percent,
    })
}

/// Cents as dollars: the catalog's prices are US cents.
fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

fn catalog_text(c: &pb::Catalog) -> String {
    let mut out = format!("catalog version {}\n\nPlans (cheapest first)\n", c.version);
    out += &table(
        &[
            "PLAN",
            "PRICE/MONTH",
            "ALLOWANCE",
            "MODELS",
            "OPEN HOLDS",
            "VIDEO SECONDS",
        ],
        c.plans.iter().map(|p| {
            vec![
                p.id.clone(),
                dollars(p.price_cents),
                p.allowance_units.to_string(),
                p.models.join(","),
                p.max_open_holds.to_string(),
                p.max_video_seconds.to_string(),
            ]
        }),
    );
    out += "\nPrices (units)\n";
    out += &table(
        &["KIND", "MODEL", "UNITS", "PER"],
        c.prices.iter().map(|p| {
            let per = if p.kind == pb::GenerationKind::Video as i32 {
                "second"
            } else {
                "image"
            };
            vec![
                kind_text(p.kind),
                p.model.clone(),
                p.units_per_item.to_string(),
                per.to_string(),
            ]
        }),
    );
    let thresholds: Vec<String> = c
        .alert_thresholds_percent
        .iter()
        .map(|p| format!("{p}%"))
        .collect();
    if thresholds.is_empty() {
        out += "\nusage alerts: none\n";
    } else {
        out += &format!(
            "\nusage alerts at {} of a cycle's allowance\n",
            thresholds.join(", ")
        );
    }
    out
}

fn balance_text(b: &pb::Balance) -> String {
    let scheduled = if b.scheduled_plan.is_empty() {
        String::new()
    } else {
        format!(" (then `{}` from the cycle's end)", b.scheduled_plan)
    };
    let cycle = match (
        time_text(b.cycle_start.as_ref()),
        time_text(b.cycle_end.as_ref()),
    ) {
        (Some(start), Some(end)) => format!("{start} .. {end}"),
        _ => "none".into(),
    };
    format!(
        "account    {}\nplan       {}{scheduled}\ncycle      {cycle}\nallowance  {} available = {} total - {} used - {} held\ncredits    {} available, {} held\nopen holds {}\n",
        b.account_id,
        b.plan,
        b.allowance_available,
        b.allowance_total,
        b.allowance_used,
        b.allowance_held,
        b.credits_available,
        b.credits_held,
        b.open_holds
    )
}

fn hold_text(h: Option<&pb::Hold>, note: &str) -> String {
    let Some(h) = h else { return String::new() };
    let draws: Vec<String> = h
        .grants
        .iter()
        .map(|d| format!("{}={}", d.grant_id, d.units))
        .collect();
    format!(
        "hold {} ({}){note}: {} units = {} allowance + {} credits [{}], expires {}\n\n",
        h.generation_id,
        enum_text(
            pb::HoldState::try_from(h.state).map(|s| s.as_str_name()),
            "HOLD_STATE_"
        ),
        h.cost_units,
        h.from_allowance,
        h.from_credits,
        draws.join(" "),
        time_text(h.expires_at.as_ref()).unwrap_or_default()
    )
}

/// Widths of the fixed columns of `events tail` lines.
const EVENT_COLUMNS: [usize; 4] = [20, 24, 20, 5];

fn event_header() -> String {
    event_row(["TIME", "TYPE", "ACCOUNT", "SEQ"], "DETAILS")
}

fn event_row(fixed: [&str; 4], details: &str) -> String {
    let mut line = String::new();
    for (cell, width) in fixed.iter().zip(EVENT_COLUMNS) {
        line += &format!("{cell:<width$}  ");
    }
    (line + details).trim_end().to_string()
}

/// One event as a table row: the fields that apply to its type, as `name=value`.
fn event_text(e: &pb::UsageEvent) -> String {
    let mut details: Vec<String> = Vec::new();
    let mut add = |name: &str, value: String| {
        if !value.is_empty() && value != "0" {
            details.push(format!("{name}={value}"));
        }
    };
    add("generation", e.generation_id.clone());
    if e.kind != pb::GenerationKind::Unspecified as i32 {
        add("kind", kind_text(e.kind));
    }
    add("model", e.model.clone());
    add("quantity", e.quantity.to_string());
    add("units", e.units.to_string());
    add("allowance", e.from_allowance.to_string());
    add("credits", e.from_credits.to_string());
    add("lost", e.units_lost.to_string());
    add("threshold", e.threshold_percent.to_string());
    add("refund", e.refund_id.clone());
    let draws: Vec<String> = e
        .grants
        .iter()
        .map(|d| format!("{}:{}", d.grant_id, d.units))
        .collect();
    add("draws", draws.join(","));
    add("reason", e.reason.clone());
    add("previous_plan", e.previous_plan.clone());
    add("plan", e.plan.clone());
    add("allowance_added", e.allowance_added.to_string());
    add("charge_cents", e.prorated_charge_cents.to_string());
    add("grant", e.grant_id.clone());
    add("source", e.source.clone());
    add(
        "cycle_start",
        time_text(e.cycle_start.as_ref()).unwrap_or_default(),
    );
    add(
        "expires",
        time_text(e.expires_at.as_ref()).unwrap_or_default(),
    );
    add(
        "effective",
        time_text(e.effective_at.as_ref()).unwrap_or_default(),
    );
    let mut labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    labels.sort();
    add("labels", labels.join(","));
    add("ack", e.ack_id.clone());
    event_row(
        [
            &time_text(e.time.as_ref()).unwrap_or_default(),
            &e.r#type,
            &e.account_id,
            &e.sequence.to_string(),
        ],
        &details.join(" "),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    quota_sidecar::tls::install_crypto_provider();
    match client_tls(&cli) {
        Ok(tls) => {
            let _ = CLIENT_TLS.set(tls);
        }
        Err(Failure { message, exit }) => {
            eprintln!("quotactl: {message}");
            return ExitCode::from(exit);
        }
    }
    match run(cli).await {
        Ok(Output::Nothing) => ExitCode::SUCCESS,
        Ok(output) => {
            if json {
                println!("{}", output.json());
            } else {
                print!("{}", output.human());
            }
            ExitCode::SUCCESS
        }
        Err(Failure { message, exit }) => {
            eprintln!("quotactl: {message}");
            ExitCode::from(exit)
        }
    }
}
