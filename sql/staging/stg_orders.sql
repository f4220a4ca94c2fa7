-- Orders placed in [start_day, end_day], one row each, as first delivered (typically in their
-- order day's export, in their state at that export). raw.orders keeps every delivered version;
-- later state changes (cancellations, refunds) are counted on the day they were delivered, by
-- stg_order_changes, so nothing here is known later than the order's own delivery.
create or replace temp view stg_orders as
with source as (
    select *
    from raw.orders
    -- literal bounds so DuckDB prunes row groups by zone map
    where order_ts >= cast({{ start_day }} as timestamp)
      and order_ts < cast({{ end_day }} as timestamp) + interval 1 day
      -- extract accepts a new order only within 48 h of its day, so its first version is in
      -- one of these partitions: later versions need not be ranked
      and _dt <= cast(order_ts as date) + 2
    qualify row_number() over (
        partition by order_id order by _dt, _line
    ) = 1
),

renamed as (
    select
        order_id,
        merchant_id,
        -- 64-bit key of the buyer identity the mapping declared (docs/contracts.md): the phone
        -- hash, else an opaque id or combined masked fields; null = none, so no buyer grouping
        case when coalesce(buyer_id_hash, buyer_phone_hash) is not null
            then hash(coalesce(buyer_id_hash, buyer_phone_hash)) end as buyer_key,
        order_ts,
        cast(order_ts as date) as order_day,
        _dt as delivered_day,
        hour(order_ts) as order_hour,
        streamer_id,
        session_id is not null as is_live,  -- placed in a live session
        status = 'cancelled' as is_cancelled,
        paid_amount,
        case when status = 'cancelled' then 0.0 else paid_amount end as paid_nc_amount,
        case when status = 'cancelled' then 0.0 else refund_amount end as refund_amount,
        case when status = 'cancelled' then 0.0 else paid_amount - refund_amount end as net_amount
    from source
)

select * from renamed
