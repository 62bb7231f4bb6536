-- quota-billing's schema. Amounts are units (bigint) or cents (bigint); times are timestamptz.
-- Accounts without a plan have no cycle: their usage is kept under cycle_start = 'epoch'.

-- Every event as received, once: the event id is the key that makes redelivery harmless.
CREATE TABLE usage_events (
    event_id              text PRIMARY KEY,
    event_type            text NOT NULL,
    account_id            text NOT NULL,
    occurred_at           timestamptz NOT NULL,
    sequence              bigint NOT NULL,
    generation_id         text NOT NULL DEFAULT '',
    kind                  text NOT NULL DEFAULT '',
    model                 text NOT NULL DEFAULT '',
    quantity              bigint NOT NULL DEFAULT 0,
    units                 bigint NOT NULL DEFAULT 0,
    from_allowance_units  bigint NOT NULL DEFAULT 0,
    from_credits_units    bigint NOT NULL DEFAULT 0,
    units_lost            bigint NOT NULL DEFAULT 0,
    grant_id              text NOT NULL DEFAULT '',
    refund_id             text NOT NULL DEFAULT '',
    plan                  text NOT NULL DEFAULT '',
    previous_plan         text NOT NULL DEFAULT '',
    cycle_start           timestamptz,
    prorated_charge_cents bigint NOT NULL DEFAULT 0,
    -- The whole event, every field, as the sidecar sent it.
    event                 jsonb NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_events_account_time ON usage_events (account_id, occurred_at);
CREATE INDEX usage_events_billable_time ON usage_events (occurred_at)
    WHERE event_type IN ('hold.settled', 'hold.refunded', 'plan.upgraded');

-- Usage per account, cycle, kind and model: what was charged from the allowance and from
-- credits, and what refunds gave back.
CREATE TABLE cycle_usage (
    account_id              text NOT NULL,
    cycle_start             timestamptz NOT NULL,
    kind                    text NOT NULL,
    model                   text NOT NULL,
    allowance_units         bigint NOT NULL DEFAULT 0,
    credit_units            bigint NOT NULL DEFAULT 0,
    settled_count           bigint NOT NULL DEFAULT 0,
    refunded_allowance_units bigint NOT NULL DEFAULT 0,
    refunded_credit_units   bigint NOT NULL DEFAULT 0,
    refund_count            bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, cycle_start, kind, model)
);

-- The plan of each cycle: the one it started with (its subscription price) and the one it
-- has now (after upgrades).
CREATE TABLE account_cycles (
    account_id       text NOT NULL,
    cycle_start      timestamptz NOT NULL,
    starting_plan    text NOT NULL,
    current_plan     text NOT NULL,
    -- Sequence of the event that set current_plan, so that a late redelivery cannot undo a
    -- newer upgrade.
    current_plan_sequence bigint NOT NULL,
    PRIMARY KEY (account_id, cycle_start)
);

-- One row per upgrade: the prorated difference billed at once.
CREATE TABLE upgrade_charges (
    event_id      text PRIMARY KEY REFERENCES usage_events (event_id),
    account_id    text NOT NULL,
    cycle_start   timestamptz NOT NULL,
    previous_plan text NOT NULL,
    plan          text NOT NULL,
    charge_cents  bigint NOT NULL,
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX upgrade_charges_account_cycle ON upgrade_charges (account_id, cycle_start);

-- Credit movements per grant. drawn: charged by settled holds; returned: what ended holds gave
-- back (held, never drawn); lost: held units that could not go back (grant expired or revoked).
-- Once no hold is open on the grant: remaining = granted - drawn - expired - revoked - lost.
CREATE TABLE credit_grants (
    account_id      text NOT NULL,
    grant_id        text NOT NULL,
    source          text NOT NULL DEFAULT '',
    expires_at      timestamptz,
    granted_units   bigint NOT NULL DEFAULT 0,
    drawn_units     bigint NOT NULL DEFAULT 0,
    returned_units  bigint NOT NULL DEFAULT 0,
    expired_units   bigint NOT NULL DEFAULT 0,
    revoked_units   bigint NOT NULL DEFAULT 0,
    lost_units      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, grant_id)
);

-- Events that could not be taken in, with the reason; they are acked so they never block
-- the stream.
CREATE TABLE dead_letters (
    dead_letter_key text PRIMARY KEY,
    event_id        text NOT NULL,
    reason          text NOT NULL,
    event           jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);

-- Account id -> each billing system's customer id, for exports. Missing rows (or columns)
-- fall back to the account id itself.
CREATE TABLE billing_customers (
    account_id                text PRIMARY KEY,
    stripe_customer_id        text,
    lago_external_subscription_id text,
    openmeter_subject         text
);
