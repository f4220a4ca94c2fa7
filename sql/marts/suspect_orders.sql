-- Orders that look brushed, for order days [start_day, end_day]. Needs stg_orders from
-- start_day - (ring_window_days - 1) so that each order sees its buyer's trailing window. A flag
-- uses only the order's own day and earlier days, so it never changes once that day is complete.
--
-- Ring orders (is_ring) come from a buyer account that, in the ring_window_days up to the order
-- day, either (a) ordered >= ring_min_orders times at this merchant within 30 days, or (b) is a
-- repeat buyer here (>= ring_repeat_min orders) and also bought at another merchant (>=
-- ring_elsewhere_min orders): brushing rings cycle one account pool through the shops that hire
-- them, while a genuine loyal customer of a shop rarely repeats there and shows up elsewhere too.
-- Two window passes over (merchant, buyer, day) counts: no buyer self-join.
insert into features.suspect_orders
with orders as (
    select * from stg_orders
    where not is_cancelled
),

buyer_days as (
    select merchant_id, buyer_key, order_day, count(*) as orders
    from orders
    where buyer_key is not null  -- no buyer identity: no ring
    group by all
),

buyer_rolling as (
    select
        merchant_id,
        buyer_key,
        order_day,
        sum(orders) over (
            partition by merchant_id, buyer_key
            order by order_day
            range between interval 29 days preceding and current row
        ) as here_30d,
        sum(orders) over (
            partition by merchant_id, buyer_key
            order by order_day
            range between interval {{ ring_window_lag_days }} days preceding and current row
        ) as here_window,
        sum(orders) over (
            partition by buyer_key
            order by order_day
            range between interval {{ ring_window_lag_days }} days preceding and current row
        ) as everywhere_window
    from buyer_days
),

ring_buyer_days as (
    select merchant_id, buyer_key, order_day
    from buyer_rolling
    where order_day >= cast({{ start_day }} as date)
      and (
          here_30d >= {{ ring_min_orders }}
          or (here_window >= {{ ring_repeat_min }}
              and everywhere_window - here_window >= {{ ring_elsewhere_min }})
      )
),

odd_hour_bursts as (
    select merchant_id, order_day, order_hour
    from orders
    where order_hour >= {{ odd_hour_start }}
      and order_hour < {{ odd_hour_end }}
      and order_day >= cast({{ start_day }} as date)
    group by all
    having count(*) >= {{ burst_min_orders }}
),

flagged as (
    select
        o.order_id,
        o.merchant_id,
        o.order_day,
        o.net_amount,
        r.buyer_key is not null as is_ring,
        b.order_hour is not null as is_burst
    from orders as o
    left join ring_buyer_days as r
        on r.merchant_id = o.merchant_id and r.buyer_key = o.buyer_key and r.order_day = o.order_day
    left join odd_hour_bursts as b
        on b.merchant_id = o.merchant_id and b.order_day = o.order_day and b.order_hour = o.order_hour
    where o.order_day >= cast({{ start_day }} as date)
)

select
    order_id,
    merchant_id,
    order_day,
    net_amount,
    is_ring,
    is_burst,
    {{ feature_version }} as feature_version
from flagged
where is_ring or is_burst
