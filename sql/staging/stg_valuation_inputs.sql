-- Valuation inputs for as_of_date D: the merchant's features for D plus the volume and age of its
-- data history (from the daily blocks: every order, session and logistics event before D), the
-- days since its last order, and six measured GB/T 36344 quality shares (docs/valuation.md):
--   conformity    rows that passed the type/range/allowed-value checks (dq validity)
--   completeness  rows with every required field (dq) and shipped parcels with a complete
--                 logistics trail (1 - lost rate, 30 days)
--   accuracy      values that pass the row checks and agree across sources (dq) and recorded
--                 sales that stand (1 - refund rate - cancel rate, 30 days)
--   consistency   orders with a fulfilment record and known references (dq)
--   timeliness    rows filed on their event day (dq) and orders shipped on time (30 days)
--   accessibility days of the last 90 (or of tenure, if shorter) with the merchant's data
-- Needs stg_merchant_quality (or its empty stand-in): dq figures as of the latest quality date.
create or replace temp table stg_valuation_inputs as
with merchant_features as (
    select
        merchant_id,
        as_of_date,
        category,
        tenure_days,
        quality_q,
        quality_source,
        gmv_net_adj_365d,
        brushing_score,
        feature_version,
        on_time_ship_rate_30d,
        lost_rate_30d,
        refund_rate_30d,
        cancel_rate_30d,
        active_days_90d
    from features.merchant_features
    where as_of_date = cast({{ as_of_date }} as date)
),

daily as (
    select
        d.merchant_id,
        d.day,
        d.orders,
        d.sessions,
        d.fulfillment_events,
        d.orders + d.sessions + d.fulfillment_events as records
    from features.merchant_daily as d
    semi join merchant_features as f on f.merchant_id = d.merchant_id
    where d.day < cast({{ as_of_date }} as date)
),

history as (
    select
        merchant_id,
        sum(orders) as rows_orders,
        sum(sessions) as rows_traffic,
        sum(fulfillment_events) as rows_fulfillment,
        min(day) filter (where records > 0) as first_record_day,
        max(day) filter (where orders > 0) as last_order_day,
        sum(records * (cast({{ as_of_date }} as date) - day)) / nullif(sum(records), 0)
            as mean_record_age_days
    from daily
    group by all
),

dq as (
    select q.*
    from stg_merchant_quality as q
    semi join merchant_features as f on f.merchant_id = q.merchant_id
    where q.as_of_date <= cast({{ as_of_date }} as date)
    qualify row_number() over (partition by q.merchant_id order by q.as_of_date desc) = 1
),

joined as (
    select
        f.* exclude (quality_source, on_time_ship_rate_30d, lost_rate_30d, refund_rate_30d,
                     cancel_rate_30d, active_days_90d),
        -- Q is recomputed from the six dimensions below (livefin_etl.valuation.gbt_quality)
        'gbt36344' as quality_source,
        coalesce(q.validity, 1.0) as conformity,
        (coalesce(q.completeness, 1.0) + 1 - coalesce(f.lost_rate_30d, 0.0)) / 2 as completeness,
        (coalesce(q.accuracy, 1.0)
         + greatest(0.0, 1 - coalesce(f.refund_rate_30d, 0.0) - coalesce(f.cancel_rate_30d, 0.0)))
            / 2 as accuracy,
        coalesce(q.consistency, 1.0) as consistency,
        (coalesce(q.timeliness, 1.0) + coalesce(f.on_time_ship_rate_30d, 0.0)) / 2 as timeliness,
        least(1.0, coalesce(f.active_days_90d, 0)
                   / greatest(1, least(90, coalesce(f.tenure_days, 90)))) as accessibility,
        cast({{ as_of_date }} as date) - h.last_order_day as days_since_last_order,
        1 as rows_merchants,  -- the registry row
        coalesce(h.rows_orders, 0) as rows_orders,
        coalesce(h.rows_traffic, 0) as rows_traffic,
        coalesce(h.rows_fulfillment, 0) as rows_fulfillment,
        h.first_record_day,
        coalesce(f.as_of_date - h.first_record_day, 0) as history_days,
        coalesce(h.mean_record_age_days, 0.0) as mean_record_age_days
    from merchant_features as f
    left join history as h on h.merchant_id = f.merchant_id
    left join dq as q on q.merchant_id = f.merchant_id
)

select * from joined
order by merchant_id  -- rows are stored in this order: the same on every run
