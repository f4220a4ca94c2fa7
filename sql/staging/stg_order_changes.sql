-- State changes of orders delivered in [start_day, end_day]: every version after an order's
-- first, as the difference to the version delivered before it. A change counts on the day it
-- was delivered (_dt), which is when a lender learns it: a refund paid weeks after the order
-- lowers net GMV on its delivery day, never on the order day (no look-ahead).
create or replace temp view stg_order_changes as
with changed as (
    -- orders with a version delivered in the range after their order day: only these can have
    -- a change there (the rest are first deliveries), so only their versions are ranked
    select distinct order_id
    from raw.orders
    where _dt >= cast({{ start_day }} as date)
      and _dt <= cast({{ end_day }} as date)
      and cast(order_ts as date) < _dt
      and order_ts >= cast({{ start_day }} as timestamp) - to_days({{ order_lookback_days }})
),

versions as (
    select
        r.order_id,
        r.merchant_id,
        r._dt,
        r._line,
        r.status,
        r.paid_amount,
        r.refund_amount
    from raw.orders as r
    semi join changed as c on c.order_id = r.order_id
    where r.order_ts >= cast({{ start_day }} as timestamp) - to_days({{ order_lookback_days }})
      and r.order_ts < cast({{ end_day }} as timestamp) + interval 1 day
      and r._dt <= cast({{ end_day }} as date)
),

ordered as (
    select
        *,
        row_number() over w as version_no,
        lag(status) over w as prev_status,
        lag(refund_amount) over w as prev_refund_amount
    from versions
    window w as (partition by order_id order by _dt, _line)
),

changes as (
    select
        order_id,
        merchant_id,
        _dt as day,
        status = 'cancelled' and prev_status <> 'cancelled' as became_cancelled,
        prev_status = 'cancelled' as was_cancelled,
        paid_amount,
        refund_amount,
        coalesce(prev_refund_amount, 0.0) as prev_refund_amount
    from ordered
    where version_no > 1
      and _dt >= cast({{ start_day }} as date)
)

select
    order_id,
    merchant_id,
    day,
    became_cancelled,
    -- deltas against the previous version (a cancelled order counts nothing, as on first delivery)
    case when became_cancelled then -paid_amount else 0.0 end as paid_nc_delta,
    case
        when was_cancelled then 0.0
        when became_cancelled then -prev_refund_amount
        else refund_amount - prev_refund_amount
    end as refund_delta,
    not became_cancelled and not was_cancelled
        and refund_amount > 0 and prev_refund_amount = 0 as became_refunded
from changes
