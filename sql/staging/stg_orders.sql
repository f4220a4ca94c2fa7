-- Orders placed in [start_day, end_day], typed for the feature marts.
-- Status and refund_amount are as exported on the order day (the platform export carries the
-- status at export time), so everything here is known at order_ts: no look-ahead.
create or replace temp view stg_orders as
with source as (
    select *
    from raw.orders
    -- literal bounds so DuckDB prunes row groups by zone map
    where order_ts >= cast({{ start_day }} as timestamp)
      and order_ts < cast({{ end_day }} as timestamp) + interval 1 day
),

renamed as (
    select
        order_id,
        merchant_id,
        -- 64-bit key of the buyer's phone hash: buyer grouping on an integer is much cheaper
        hash(buyer_phone_hash) as buyer_key,
        order_ts,
        cast(order_ts as date) as order_day,
        hour(order_ts) as order_hour,
        streamer_id,
        status = 'cancelled' as is_cancelled,
        paid_amount,
        case when status = 'cancelled' then 0.0 else paid_amount end as paid_nc_amount,
        case when status = 'cancelled' then 0.0 else refund_amount end as refund_amount,
        case when status = 'cancelled' then 0.0 else paid_amount - refund_amount end as net_amount
    from source
)

select * from renamed
