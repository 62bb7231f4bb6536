-- Billing notices a hole: each account's events carry a sequence (1, 2, 3, ... with none
-- skipped). Per account, the next sequence expected, and the runs of sequences not received
-- (acked by another consumer of the group, trimmed before billing read them, or still in a
-- batch another replica has not committed). A statement over an account with an open gap
-- says so.

CREATE TABLE account_sequences (
    account_id text PRIMARY KEY,
    -- One past the highest sequence received.
    next_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Both ends included. A gap shrinks (or splits) as its events arrive, and its row goes when the
-- last one does. Deleting a row accepts the loss: the statement no longer reports it.
CREATE TABLE sequence_gaps (
    account_id  text NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, first_seq),
    CHECK (first_seq >= 1 AND first_seq <= last_seq)
);

-- Events written before this migration: the next expected sequence is one past the highest
-- received, and every number below it not received is a gap (found now). A dead letter counts
-- as received when its sequence is a number that fits (one dead-lettered for an out-of-range
-- sequence does not).
CREATE TEMPORARY TABLE received_before_v3 ON COMMIT DROP AS
SELECT account_id, sequence FROM usage_events WHERE sequence >= 1
UNION
SELECT account_id, sequence FROM (
    SELECT event->>'account_id' AS account_id,
           CASE WHEN event->>'sequence' ~ '^[0-9]{1,18}$'
                THEN (event->>'sequence')::bigint END AS sequence
    FROM dead_letters
) d
WHERE account_id <> '' AND sequence >= 1;

INSERT INTO account_sequences (account_id, next_seq)
SELECT account_id, max(sequence) + 1 FROM received_before_v3 GROUP BY account_id;

INSERT INTO sequence_gaps (account_id, first_seq, last_seq)
SELECT account_id, previous + 1, sequence - 1 FROM (
    SELECT account_id, sequence,
           COALESCE(lag(sequence) OVER (PARTITION BY account_id ORDER BY sequence), 0) AS previous
    FROM received_before_v3
) steps
WHERE sequence > previous + 1;
