-- Logistics events in [start_day, end_day], each with the time and net amount of its order.
-- Events are counted on their own day (event_ts), so a shipment is only known once it happened.
create or replace temp view stg_fulfillment as
with source as (
    select *
    from raw.fulfillment
    where event_ts >= cast({{ start_day }} as timestamp)
      and event_ts < cast({{ end_day }} as timestamp) + interval 1 day
),

orders as (
    select
        order_id,
        order_ts,
        case when status = 'cancelled' then 0.0 else paid_amount - refund_amount end as net_amount
    from raw.orders
    -- only the orders these events name: ranking every order of the lookback (60 days of
    -- versions, ~14 M rows at 100k merchants) was most of a nightly daily-block build
    semi join (select distinct order_id from source) as e using (order_id)
    where order_ts >= cast({{ start_day }} as timestamp) - to_days({{ order_lookback_days }})
      and order_ts < cast({{ end_day }} as timestamp) + interval 1 day
    -- each order once, as first delivered (raw.orders keeps every version of an order)
    qualify row_number() over (partition by order_id order by _dt, _line) = 1
),

renamed as (
    select
        f.event_id,
        f.order_id,
        f.merchant_id,
        f.event_type,
        f.event_ts,
        cast(f.event_ts as date) as event_day,
        o.order_ts,
        o.net_amount as order_net_amount,
        -- empty parcel: shipped without a real track, or (almost) nothing inside
        f.event_type = 'shipped'
            and (
                coalesce(trim(f.tracking_no), '') = ''
                or coalesce(f.parcel_weight_g, 1e12) < {{ empty_parcel_max_g }}
            ) as is_empty_parcel
    from source as f
    left join orders as o on o.order_id = f.order_id
)

select * from renamed
