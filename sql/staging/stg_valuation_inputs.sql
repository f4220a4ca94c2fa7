-- Valuation inputs for as_of_date D: the merchant's features for D plus the volume and age of its
-- data history (from the daily blocks: every order, session and logistics event before D).
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
        feature_version
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
        sum(records * (cast({{ as_of_date }} as date) - day)) / nullif(sum(records), 0)
            as mean_record_age_days
    from daily
    group by all
),

joined as (
    select
        f.*,
        1 as rows_merchants,  -- the registry row
        coalesce(h.rows_orders, 0) as rows_orders,
        coalesce(h.rows_traffic, 0) as rows_traffic,
        coalesce(h.rows_fulfillment, 0) as rows_fulfillment,
        h.first_record_day,
        coalesce(f.as_of_date - h.first_record_day, 0) as history_days,
        coalesce(h.mean_record_age_days, 0.0) as mean_record_age_days
    from merchant_features as f
    left join history as h on h.merchant_id = f.merchant_id
)

select * from joined
order by merchant_id  -- rows are stored in this order: the same on every run
