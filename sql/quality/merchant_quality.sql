-- dq.merchant_quality for one as_of_date: per merchant, six quality dimensions in [0, 1] from the
-- trailing {{ window_days }} partition days strictly before D, and the weighted coefficient Q.
-- Run by livefin_etl.quality.merchant.build_merchant_quality inside one transaction.
-- Amounts are summed as DECIMAL(38, 9): exact, so Q does not depend on the order DuckDB's
-- threads add the rows in.
INSERT INTO dq.merchant_quality
WITH p AS (
    SELECT {{ as_of_date }}::DATE AS d,
           {{ as_of_date }}::DATE - {{ window_days }}::INTEGER AS lo,
           {{ as_of_date }}::DATE - {{ grace_days }}::INTEGER AS grace_cut
),
merchants AS (
    SELECT DISTINCT merchant_id FROM raw.merchants, p WHERE _dt < p.d AND merchant_id IS NOT NULL
),
o_delivery AS (  -- one row per order and delivery (partition)
    SELECT merchant_id, order_id, _dt,
           min(order_ts) AS order_ts,
           count(*) AS versions,
           bool_or(refund_amount > paid_amount + 0.005) AS bad,
           arg_min(paid_amount, _dt) AS paid_amount,
           bool_or(session_id IS NOT NULL) AS in_session,
           bool_or(status = 'cancelled') AS cancelled
    FROM raw.orders, p
    WHERE _dt >= p.lo AND _dt < p.d AND order_ts >= p.lo - INTERVAL 2 DAY
    GROUP BY merchant_id, order_id, _dt
),
o_each AS (  -- one row per order: its later versions (state history) are not late rows
    -- two plain group-bys instead of one with count(DISTINCT _dt), which DuckDB runs as three
    -- aggregates and a join (twice the time at 100k merchants)
    SELECT merchant_id, order_id,
           min(_dt) AS first_dt,
           min(order_ts) AS order_ts,
           sum(versions) AS versions,
           count(*) AS deliveries,
           bool_or(bad) AS bad,
           arg_min(paid_amount, _dt) AS paid_amount,
           bool_or(in_session) AS in_session,
           bool_or(cancelled) AS cancelled
    FROM o_delivery
    GROUP BY merchant_id, order_id
),
o AS (
    SELECT merchant_id,
           count(*) AS n,
           count(*) FILTER (WHERE CAST(order_ts AS DATE) < first_dt) AS late,
           count(*) FILTER (WHERE bad) AS bad,
           sum(versions - deliveries) AS dups,
           sum(paid_amount::DECIMAL(38, 9)) FILTER (WHERE in_session)::DOUBLE AS gmv_sessions
    FROM o_each GROUP BY merchant_id
),
eligible AS (  -- orders old enough that a fulfilment event should exist
    SELECT e.merchant_id, e.order_id FROM o_each e, p
    WHERE NOT e.cancelled AND e.order_ts < p.grace_cut
),
fulfilled AS (
    SELECT e.merchant_id, count(*) AS n_eligible,
           -- an event is filed on or after its order's day, so only the window's partitions
           -- can hold one: scanning all history made this grow with every night
           count(*) FILTER (WHERE e.order_id IN (
               SELECT f.order_id FROM raw.fulfillment f, p
               WHERE f._dt >= p.lo AND f._dt < p.d)) AS n_with_event
    FROM eligible e GROUP BY e.merchant_id
),
t AS (
    SELECT merchant_id, count(*) AS n,
           count(*) FILTER (WHERE CAST(start_ts AS DATE) < _dt) AS late,
           count(*) FILTER (WHERE end_ts < start_ts OR peak_viewers > total_viewers) AS bad,
           sum(gmv_attributed::DECIMAL(38, 9))::DOUBLE AS gmv_attributed
    FROM raw.traffic, p WHERE _dt >= p.lo AND _dt < p.d GROUP BY merchant_id
),
f AS (
    SELECT merchant_id, count(*) AS n,
           count(*) FILTER (WHERE CAST(event_ts AS DATE) < _dt) AS late
    FROM raw.fulfillment, p WHERE _dt >= p.lo AND _dt < p.d GROUP BY merchant_id
),
q AS (  -- quarantined rows carry the merchant_id they claimed
    SELECT merchant_id, count(*) AS n,
           count(*) FILTER (WHERE reason_code = 'missing_required') AS missing,
           count(*) FILTER (WHERE reason_code IN ('type_error', 'below_min', 'above_max',
                                                  'not_allowed')) AS invalid,
           count(*) FILTER (WHERE reason_code = 'row_check') AS row_check,
           count(*) FILTER (WHERE reason_code = 'duplicate_key') AS dup,
           count(*) FILTER (WHERE reason_code = 'unknown_reference') AS unknown_ref,
           count(*) FILTER (WHERE reason_code = 'outside_partition') AS outside
    FROM meta.quarantine, p
    WHERE dt >= p.lo AND dt < p.d AND merchant_id IS NOT NULL
      AND source IN ('orders', 'traffic', 'fulfillment')
    GROUP BY merchant_id
),
agg AS (
    SELECT m.merchant_id,
           coalesce(o.n, 0) + coalesce(t.n, 0) + coalesce(f.n, 0) + coalesce(q.n, 0) AS n_total,
           coalesce(q.missing, 0) AS missing, coalesce(q.invalid, 0) AS invalid,
           coalesce(o.bad, 0) + coalesce(t.bad, 0) + coalesce(q.row_check, 0) AS bad,
           coalesce(o.dups, 0) + coalesce(q.dup, 0) AS dups,
           coalesce(q.unknown_ref, 0) AS unknown_ref,
           coalesce(o.late, 0) + coalesce(t.late, 0) + coalesce(f.late, 0)
             + coalesce(q.outside, 0) AS late,
           CASE WHEN greatest(coalesce(t.gmv_attributed, 0), coalesce(o.gmv_sessions, 0)) > 0
                THEN 1 - abs(coalesce(t.gmv_attributed, 0) - coalesce(o.gmv_sessions, 0))
                         / greatest(coalesce(t.gmv_attributed, 0), coalesce(o.gmv_sessions, 0))
           END AS gmv_agreement,
           fu.n_with_event / nullif(fu.n_eligible, 0)::DOUBLE AS fulfilment_share
    FROM merchants m
    LEFT JOIN o USING (merchant_id) LEFT JOIN t USING (merchant_id)
    LEFT JOIN f USING (merchant_id) LEFT JOIN q USING (merchant_id)
    LEFT JOIN fulfilled fu USING (merchant_id)
),
dims AS (
    SELECT merchant_id, n_total,
           1 - missing / n_total::DOUBLE AS completeness,
           1 - invalid / n_total::DOUBLE AS validity,
           -- mean of the components that are defined (GMV agreement needs traffic or orders)
           CASE WHEN gmv_agreement IS NULL THEN 1 - bad / n_total::DOUBLE
                ELSE ((1 - bad / n_total::DOUBLE) + gmv_agreement) / 2 END AS accuracy,
           CASE WHEN fulfilment_share IS NULL THEN 1 - unknown_ref / n_total::DOUBLE
                ELSE ((1 - unknown_ref / n_total::DOUBLE) + fulfilment_share) / 2 END
             AS consistency,
           1 - late / n_total::DOUBLE AS timeliness,
           1 - dups / n_total::DOUBLE AS uniqueness
    FROM agg WHERE n_total >= {{ min_rows }}
),
clamped AS (
    SELECT merchant_id, n_total,
           greatest(0.0, least(1.0, completeness)) AS completeness,
           greatest(0.0, least(1.0, validity)) AS validity,
           greatest(0.0, least(1.0, accuracy)) AS accuracy,
           greatest(0.0, least(1.0, consistency)) AS consistency,
           greatest(0.0, least(1.0, timeliness)) AS timeliness,
           greatest(0.0, least(1.0, uniqueness)) AS uniqueness
    FROM dims
)
SELECT merchant_id,
       (SELECT d FROM p) AS as_of_date,
       completeness, validity, accuracy, consistency, timeliness, uniqueness,
       ({{ w_completeness }} * completeness + {{ w_validity }} * validity
        + {{ w_accuracy }} * accuracy + {{ w_consistency }} * consistency
        + {{ w_timeliness }} * timeliness + {{ w_uniqueness }} * uniqueness)
         / ({{ w_completeness }} + {{ w_validity }} + {{ w_accuracy }} + {{ w_consistency }}
            + {{ w_timeliness }} + {{ w_uniqueness }}) AS quality_q,
       n_total AS rows_considered,
       {{ quality_version }} AS quality_version
FROM clamped;
