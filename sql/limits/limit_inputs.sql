-- Policy inputs for business date as_of_date: one row per merchant of features.merchant_features
-- with its score, quality, data-asset value, exposure, default flag, failed-partition flag and
-- top streamer (livefin_etl.limits.INPUT_COLUMNS). Only data strictly before as_of_date, except
-- partition status, which counts up to and including it. livefin_etl.limits.load_inputs makes
-- sure every table read here exists (empty if its stage never ran) before running this.
-- Amounts are summed as DECIMAL(38, 9): exact, so exposure and the top streamer do not depend
-- on the order DuckDB's threads add the rows in.
with features as (
    select
        merchant_id,
        category,
        tenure_days,
        gmv_net_adj_30d,
        gmv_net_adj_90d,
        gmv_net_adj_365d,
        gmv_net_365d,
        gmv_cv_90d,
        seasonal_trend_ratio,
        brushing_score,
        top_streamer_share_90d,
        quality_q
    from features.merchant_features
    where as_of_date = {{ as_of_date }}::date
),

scores as (
    select
        merchant_id, pd, score, grade, model_version,
        reason_code_1, reason_code_2, reason_code_3, reason_code_4,
        reason_text_1, reason_text_2, reason_text_3, reason_text_4
    from credit.merchant_scores
    where as_of_date = {{ as_of_date }}::date
    qualify row_number() over (partition by merchant_id order by model_version desc) = 1
),

quality as (
    select merchant_id, any_value(quality_q) as quality_q
    from dq.merchant_quality
    where as_of_date = {{ as_of_date }}::date
    group by merchant_id
),

asset_value as (
    select merchant_id, any_value(reconciled_value) as data_asset_value
    from valuation.data_asset_values
    where as_of_date = {{ as_of_date }}::date
    group by merchant_id
),

latest_repayment as (
    select
        loan_id,
        arg_max(outstanding, repay_date) as outstanding,
        arg_max(dpd, repay_date) as dpd
    from raw.repayments
    where repay_date < {{ as_of_date }}::date
    group by loan_id
),

-- A funded loan without any repayment row yet still owes principal + fee.
loan_status as (
    select
        l.merchant_id,
        coalesce(r.outstanding, l.principal + l.fee_amount) as outstanding,
        coalesce(r.dpd, 0) as dpd
    from raw.loans as l
    left join latest_repayment as r using (loan_id)
    where l.origination_date < {{ as_of_date }}::date
),

exposure as (
    select
        merchant_id,
        coalesce(sum(outstanding::decimal(38, 9)) filter (where outstanding > 0)::double, 0.0)
            as outstanding_exposure,
        bool_or(dpd >= {{ default_dpd }} and outstanding > 0) as in_default
    from loan_status
    group by merchant_id
),

latest_orders as (
    -- each order as the latest version delivered before D (raw.orders keeps every version);
    -- arg_max per order is the window's row_number() = 1 by (_dt, _line) desc without sorting
    -- every version (the window was ~90 % of this query)
    select unnest(arg_max(
        {
            'merchant_id': merchant_id, 'streamer_id': streamer_id, 'status': status,
            'paid_amount': paid_amount, 'refund_amount': refund_amount
        },
        {'dt': _dt, 'line': _line}
    ))
    from raw.orders
    where order_ts >= ({{ as_of_date }}::date - interval {{ streamer_window_days }} day)
        and order_ts < {{ as_of_date }}::date
        and _dt < {{ as_of_date }}::date
    group by order_id
),

streamer_gmv as (
    select
        merchant_id,
        streamer_id,
        sum((paid_amount - coalesce(refund_amount, 0))::decimal(38, 9)) as gmv
    from latest_orders
    where status <> 'cancelled'
        and streamer_id is not null
    group by merchant_id, streamer_id
),

top_streamer as (
    select merchant_id, streamer_id as top_streamer_id
    from streamer_gmv
    where gmv > 0
    qualify row_number() over (partition by merchant_id order by gmv desc, streamer_id) = 1
),

-- The latest status of each (source, dt) partition in the window, when it is failed.
failed_parts as (
    select source, dt
    from dq.partition_status
    where dt >= {{ as_of_date }}::date - interval {{ failed_partition_days }} day
        and dt <= {{ as_of_date }}::date
    qualify row_number() over (partition by source, dt order by updated_at desc) = 1
        and status = 'failed'
),

-- Merchants with rows in such a partition of a source that declines them.
raw_partitions as (
    select 'orders' as source, _dt, merchant_id from raw.orders
    union all
    select 'traffic' as source, _dt, merchant_id from raw.traffic
    union all
    select 'fulfillment' as source, _dt, merchant_id from raw.fulfillment
    union all
    select 'merchants' as source, _dt, merchant_id from raw.merchants
),

failed as (
    select distinct r.merchant_id
    from raw_partitions as r
    inner join failed_parts as p on r.source = p.source and r._dt = p.dt
)

select
    f.merchant_id,
    f.category,
    f.tenure_days,
    f.gmv_net_adj_30d,
    f.gmv_net_adj_90d,
    f.gmv_net_adj_365d,
    f.gmv_net_365d,
    f.gmv_cv_90d,
    f.seasonal_trend_ratio,
    f.brushing_score,
    f.top_streamer_share_90d,
    t.top_streamer_id,
    coalesce(q.quality_q, f.quality_q) as quality_q,
    (x.merchant_id is not null) as failed_partition,
    s.pd,
    s.score,
    s.grade,
    s.model_version,
    s.reason_code_1,
    s.reason_code_2,
    s.reason_code_3,
    s.reason_code_4,
    s.reason_text_1,
    s.reason_text_2,
    s.reason_text_3,
    s.reason_text_4,
    v.data_asset_value,
    coalesce(e.outstanding_exposure, 0) as outstanding_exposure,
    coalesce(e.in_default, false) as in_default
from features as f
left join scores as s using (merchant_id)
left join quality as q using (merchant_id)
left join asset_value as v using (merchant_id)
left join exposure as e using (merchant_id)
left join top_streamer as t using (merchant_id)
left join failed as x using (merchant_id)
order by f.merchant_id
