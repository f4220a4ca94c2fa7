-- One row per (merchant, day) for days [start_day, end_day]: the daily building block that the
-- 7/30/90/365-day windows of merchant_features are summed from. Orders count on their order day
-- (as first delivered), their later state changes (cancellations, refunds) on the day those were
-- delivered, sessions on their start day, logistics events on their event day.
-- Amounts are summed as DECIMAL(38, 9): exact, so a sum does not depend on the order DuckDB's
-- threads add the rows in (a float sum can differ in the last bit between identical runs).
insert into features.merchant_daily
with orders as (
    select * from stg_orders
    where order_day >= cast({{ start_day }} as date)
),

ledger as (
    -- an order counts on its order day as first delivered; a later state change counts on the
    -- day it was delivered, as the difference it makes (stg_order_changes)
    select
        merchant_id,
        order_day as day,
        1 as orders,
        case when is_cancelled then 0 else 1 end as orders_nc,
        case when is_cancelled then 1 else 0 end as cancelled_orders,
        case when not is_cancelled and refund_amount > 0 then 1 else 0 end as refunded_orders,
        paid_amount as gmv_gross,
        paid_nc_amount as paid_nc,
        refund_amount,
        case when not is_cancelled
              and order_hour >= {{ odd_hour_start }} and order_hour < {{ odd_hour_end }}
            then 1 else 0 end as odd_hour_orders,
        case when not is_cancelled and is_live then 1 else 0 end as live_orders
    from orders
    union all
    select
        merchant_id,
        day,
        0 as orders,
        case when became_cancelled then -1 else 0 end as orders_nc,
        case when became_cancelled then 1 else 0 end as cancelled_orders,
        case when became_refunded then 1 else 0 end as refunded_orders,
        0.0 as gmv_gross,
        paid_nc_delta as paid_nc,
        refund_delta as refund_amount,
        0 as odd_hour_orders,
        0 as live_orders  -- counted as first delivered
    from stg_order_changes
),

order_days as (
    select
        merchant_id,
        day,
        sum(orders) as orders,
        sum(orders_nc) as orders_nc,
        sum(cancelled_orders) as cancelled_orders,
        sum(refunded_orders) as refunded_orders,
        sum(gmv_gross::decimal(38, 9))::double as gmv_gross,
        sum(paid_nc::decimal(38, 9))::double as paid_nc,
        sum(refund_amount::decimal(38, 9))::double as refund_amount,
        sum(paid_nc::decimal(38, 9) - refund_amount::decimal(38, 9))::double as gmv_net,
        sum(odd_hour_orders) as odd_hour_orders,
        sum(live_orders) as live_orders
    from ledger
    group by all
),

suspect_days as (
    select
        merchant_id,
        order_day as day,
        count(*) filter (where is_ring) as ring_orders,
        count(*) filter (where is_burst) as burst_orders,
        count(*) as suspect_orders,
        sum(net_amount::decimal(38, 9))::double as suspect_net
    from features.suspect_orders
    where order_day between cast({{ start_day }} as date) and cast({{ end_day }} as date)
    group by all
),

fulfillment_days as (
    select
        f.merchant_id,
        f.event_day as day,
        count(*) as fulfillment_events,
        count(*) filter (where f.event_type = 'shipped') as shipped,
        count(*) filter (where f.event_type = 'shipped' and f.order_ts is not null) as shipped_timed,
        count(*) filter (
            where f.event_type = 'shipped'
              and f.event_ts <= f.order_ts + to_hours({{ on_time_hours }})
        ) as shipped_on_time,
        count(*) filter (where f.is_empty_parcel) as empty_parcels,
        -- net GMV of empty-parcel orders not already removed as ring/burst orders
        coalesce(sum(f.order_net_amount::decimal(38, 9)) filter (
            where f.is_empty_parcel and s.order_id is null
        )::double, 0.0) as empty_parcel_net,
        count(*) filter (where f.event_type = 'delivered') as delivered,
        count(*) filter (where f.event_type = 'delivered' and f.order_ts is not null) as delivered_timed,
        -- whole microseconds summed as integers (exact), then converted to days once
        coalesce(sum(epoch_us(f.event_ts) - epoch_us(f.order_ts)) filter (
            where f.event_type = 'delivered' and f.order_ts is not null
        )::double / 86400e6, 0.0) as delivery_days_sum,
        count(*) filter (where f.event_type = 'lost') as lost,
        count(*) filter (where f.event_type = 'returned') as returned,
        count(*) filter (where f.event_type = 'complaint') as complaints
    from stg_fulfillment as f
    left join features.suspect_orders as s on s.order_id = f.order_id
    group by all
),

traffic_days as (
    select
        merchant_id,
        session_day as day,
        count(*) as sessions,
        sum(total_viewers) as viewers,
        sum(watch_minutes::decimal(38, 9))::double as watch_minutes
    from stg_traffic
    group by all
),

merchant_days as (
    select merchant_id, day from order_days
    union
    select merchant_id, day from fulfillment_days
    union
    select merchant_id, day from traffic_days
),

joined as (
    select
        k.merchant_id,
        k.day,
        coalesce(o.orders, 0) as orders,
        coalesce(o.orders_nc, 0) as orders_nc,
        coalesce(o.cancelled_orders, 0) as cancelled_orders,
        coalesce(o.refunded_orders, 0) as refunded_orders,
        coalesce(o.gmv_gross, 0.0) as gmv_gross,
        coalesce(o.paid_nc, 0.0) as paid_nc,
        coalesce(o.refund_amount, 0.0) as refund_amount,
        coalesce(o.gmv_net, 0.0) as gmv_net,
        coalesce(o.odd_hour_orders, 0) as odd_hour_orders,
        coalesce(o.live_orders, 0) as live_orders,
        coalesce(s.ring_orders, 0) as ring_orders,
        coalesce(s.burst_orders, 0) as burst_orders,
        coalesce(s.suspect_orders, 0) as suspect_orders,
        coalesce(s.suspect_net, 0.0) as suspect_net,
        coalesce(t.sessions, 0) as sessions,
        coalesce(t.viewers, 0) as viewers,
        coalesce(t.watch_minutes, 0.0) as watch_minutes,
        coalesce(f.fulfillment_events, 0) as fulfillment_events,
        coalesce(f.shipped, 0) as shipped,
        coalesce(f.shipped_timed, 0) as shipped_timed,
        coalesce(f.shipped_on_time, 0) as shipped_on_time,
        coalesce(f.empty_parcels, 0) as empty_parcels,
        coalesce(f.empty_parcel_net, 0.0) as empty_parcel_net,
        coalesce(f.delivered, 0) as delivered,
        coalesce(f.delivered_timed, 0) as delivered_timed,
        coalesce(f.delivery_days_sum, 0.0) as delivery_days_sum,
        coalesce(f.lost, 0) as lost,
        coalesce(f.returned, 0) as returned,
        coalesce(f.complaints, 0) as complaints,
        {{ feature_version }} as feature_version
    from merchant_days as k
    left join order_days as o on o.merchant_id = k.merchant_id and o.day = k.day
    left join suspect_days as s on s.merchant_id = k.merchant_id and s.day = k.day
    left join fulfillment_days as f on f.merchant_id = k.merchant_id and f.day = k.day
    left join traffic_days as t on t.merchant_id = k.merchant_id and t.day = k.day
)

select * from joined
