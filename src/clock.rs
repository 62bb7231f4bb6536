//! The one source of time. Stores receive `now_ms` from it (and pass it into the Redis
//! scripts), so tests move time, expire holds and roll cycles over without sleeping.
//!
//! In production the ledger's "now" is the store's clock ([`StoreClock`]): every sidecar of a
//! fleet reads Redis `TIME` and runs on it, so one whose own clock is minutes off expires
//! nothing early, forgets nothing early and rolls no cycle early.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::fleet::Fleet;

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    /// Now, for bookkeeping that does not move funds (delivery timers, logs).
    fn now_ms(&self) -> i64;

    /// Now, for the ledger: expiry, cycles, retention. `None` while it is not known (a store
    /// clock not read yet); callers refuse the operation rather than guess.
    fn ledger_now_ms(&self) -> Option<i64> {
        Some(self.now_ms())
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("system clock after 1970");
        since_epoch.as_millis() as i64
    }
}

/// The wall clock shifted by a fixed offset: a machine whose clock is off (for tests of the
/// fleet's one clock).
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    pub skew_ms: i64,
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.skew_ms
    }
}

/// How often a [`StoreClock`] reads the store's time once it has it. Between readings it runs
/// on the monotonic clock, so only drift over this interval can separate two sidecars.
pub const STORE_CLOCK_RESYNC: Duration = Duration::from_secs(1);
/// How often it tries while it has no reading yet (the store down at start).
const STORE_CLOCK_FIRST_TRY: Duration = Duration::from_millis(50);

/// The store's clock, read every [`STORE_CLOCK_RESYNC`] and carried forward on this process's
/// monotonic clock. Until the first reading the ledger has no time ([`Clock::ledger_now_ms`]
/// is `None`); `now_ms` falls back to the local clock for bookkeeping only.
pub struct StoreClock {
    local: Arc<dyn Clock>,
    /// The monotonic instant readings are counted from.
    base: Instant,
    /// The store's time at `base`, from the last reading; [`NO_READING`] before the first.
    /// Atomic: every call and every delivered event reads it, without a lock.
    store_ms_at_base: AtomicI64,
}

/// `StoreClock::store_ms_at_base` before the first reading.
const NO_READING: i64 = i64::MIN;

impl StoreClock {
    /// A clock with no reading yet; `local` serves bookkeeping until there is one.
    pub fn new(local: Arc<dyn Clock>) -> StoreClock {
        StoreClock {
            local,
            base: Instant::now(),
            store_ms_at_base: AtomicI64::new(NO_READING),
        }
    }

    /// Records that the store's clock read `store_ms` at `at`.
    fn record(&self, store_ms: i64, at: Instant) {
        let since_base_ms = at.saturating_duration_since(self.base).as_millis() as i64;
        self.store_ms_at_base
            .store(store_ms - since_base_ms, Ordering::Release);
    }

    /// Reads the store's time once: the reading is dated half way through the round trip.
    pub async fn sync<S: Fleet + ?Sized>(&self, store: &S) -> bool {
        let sent = Instant::now();
        match store.time_ms().await {
            Ok(store_ms) => {
                let answered = Instant::now();
                self.record(store_ms, sent + (answered - sent) / 2);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not read the store's clock");
                false
            }
        }
    }

    /// Keeps the clock in step with the store until the task is dropped.
    pub fn spawn_sync<S: Fleet + ?Sized>(
        self: &Arc<Self>,
        store: Arc<S>,
    ) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        tokio::spawn(async move {
            let mut synced_once = false;
            loop {
                if clock.sync(&*store).await && !synced_once {
                    synced_once = true;
                    tracing::info!(
                        offset_ms =
                            clock.ledger_now_ms().unwrap_or_default() - clock.local.now_ms(),
                        "running on the store's clock (offset from this machine's clock)"
                    );
                }
                let pause = if synced_once {
                    STORE_CLOCK_RESYNC
                } else {
                    STORE_CLOCK_FIRST_TRY
                };
                tokio::time::sleep(pause).await;
            }
        })
    }
}

impl Clock for StoreClock {
    fn now_ms(&self) -> i64 {
        self.ledger_now_ms().unwrap_or_else(|| self.local.now_ms())
    }

    fn ledger_now_ms(&self) -> Option<i64> {
        match self.store_ms_at_base.load(Ordering::Acquire) {
            NO_READING => None,
            at_base => Some(at_base + self.base.elapsed().as_millis() as i64),
        }
    }
}

/// A clock tests set and advance by hand. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now_ms)))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `now_ms`.
    pub fn set_ms(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
