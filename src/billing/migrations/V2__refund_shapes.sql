-- Refunds as the sidecar emits them: from_allowance / from_credits of a hold.refunded are the
-- parts of the original charge being refunded (allowance part first); allowance_added of it
-- went back to the current cycle's allowance, the rest became credits of a new promotional
-- grant (grant_id, no expiry).

ALTER TABLE usage_events
    ADD COLUMN allowance_added_units bigint NOT NULL DEFAULT 0,
    ADD COLUMN threshold_percent     integer NOT NULL DEFAULT 0;
UPDATE usage_events
    SET allowance_added_units = COALESCE((event->>'allowance_added')::bigint, 0),
        threshold_percent = COALESCE((event->>'threshold_percent')::integer, 0);

-- Of what a cycle's refunds gave back: back to the allowance, and as credits (refund grants).
ALTER TABLE cycle_usage
    ADD COLUMN refund_allowance_restored_units bigint NOT NULL DEFAULT 0,
    ADD COLUMN refund_credit_grant_units       bigint NOT NULL DEFAULT 0;
UPDATE cycle_usage u SET
    refund_allowance_restored_units = r.restored,
    refund_credit_grant_units = r.granted
FROM (
    SELECT account_id, COALESCE(cycle_start, 'epoch') AS cycle_start, kind, model,
           sum(allowance_added_units) AS restored,
           sum(units - allowance_added_units) AS granted
    FROM usage_events WHERE event_type = 'hold.refunded'
    GROUP BY 1, 2, 3, 4
) r
WHERE u.account_id = r.account_id AND u.cycle_start = r.cycle_start
  AND u.kind = r.kind AND u.model = r.model;

-- A refund grant's granted units are units - allowance_added (not from_credits).
UPDATE credit_grants g SET granted_units = r.granted, source = 'promotional'
FROM (
    SELECT account_id, grant_id, sum(units - allowance_added_units) AS granted
    FROM usage_events WHERE event_type = 'hold.refunded' AND grant_id <> ''
    GROUP BY 1, 2
) r
WHERE g.account_id = r.account_id AND g.grant_id = r.grant_id;
INSERT INTO credit_grants (account_id, grant_id, source, granted_units)
SELECT account_id, grant_id, 'promotional', sum(units - allowance_added_units)
FROM usage_events WHERE event_type = 'hold.refunded' AND grant_id <> ''
GROUP BY 1, 2
HAVING sum(units - allowance_added_units) > 0
ON CONFLICT (account_id, grant_id) DO NOTHING;

-- Grants hold.settled lost units to (a settle for less whose remainder could not go back) are
-- looked up among revoked grants.
CREATE INDEX usage_events_revoked_grants ON usage_events (account_id, grant_id)
    WHERE event_type = 'credits.revoked';
