-- Every delivered version of the orders placed in [start_day, end_day], each with the day it
-- was delivered and the day the next version was: the version a feature as of D may use is the
-- one with delivered_day < D <= next_delivered_day (the latest delivered before D).
create or replace temp view stg_order_versions as
with source as (
    select *
    from raw.orders
    where order_ts >= cast({{ start_day }} as timestamp)
      and order_ts < cast({{ end_day }} as timestamp) + interval 1 day
),

renamed as (
    select
        order_id,
        merchant_id,
        case when coalesce(buyer_id_hash, buyer_phone_hash) is not null
            then hash(coalesce(buyer_id_hash, buyer_phone_hash)) end as buyer_key,
        cast(order_ts as date) as order_day,
        _dt as delivered_day,
        lead(_dt) over (
            partition by order_id order by _dt, _line
        ) as next_delivered_day,
        status = 'cancelled' as is_cancelled,
        case when status = 'cancelled' then 0.0 else paid_amount - refund_amount end as net_amount
    from source
)

select * from renamed
