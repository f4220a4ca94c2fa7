-- Orders that look brushed, for order days [start_day, end_day]. A flag uses only the order's own
-- day and earlier days, so it never changes once that day is complete.
--
-- Ring orders (is_ring) come from a buyer account that, at the order day, either (a) ordered >=
-- ring_min_orders times at this merchant within 30 days, or (b) is a repeat buyer here (>=
-- ring_repeat_min orders within ring_window_days) and, within ring_window_days, was a repeat buyer
-- at another merchant too: a brushing ring cycles one account pool through every shop that hires
-- it, so its accounts repeat at several shops; a genuine customer mostly repeats at one shop, or
-- buys once at many, or repeats at a few shops of one category (a loyal cross-shop buyer), so a
-- repeat at another shop of the same category needs ring_same_category_repeat_days repeat days. The history is the daily block features.buyer_daily (already holding
-- [start_day, end_day]), read only for the accounts that ordered in the range: window passes over
-- (merchant, buyer, day) rows, no buyer self-join.
insert into features.suspect_orders
with orders as (
    select * from stg_orders
    where not is_cancelled
      and order_day >= cast({{ start_day }} as date)
),

range_buyers as (
    select distinct buyer_key
    from features.buyer_daily
    where day between cast({{ start_day }} as date) and cast({{ end_day }} as date)
),

categories as (
    select merchant_id, coalesce(category, '') as category
    from raw.merchants
    qualify row_number() over (partition by merchant_id order by _loaded_at desc, _dt desc) = 1
),

history as (
    select d.merchant_id, coalesce(c.category, '') as category, d.buyer_key, d.day, d.orders
    from features.buyer_daily as d
    semi join range_buyers as r on r.buyer_key = d.buyer_key
    left join categories as c on c.merchant_id = d.merchant_id
    where d.day >= cast({{ start_day }} as date) - {{ ring_window_lag_days }}
      and d.day <= cast({{ end_day }} as date)
),

buyer_rolling as (
    select
        merchant_id,
        category,
        buyer_key,
        day,
        sum(orders) over (
            partition by merchant_id, buyer_key order by day
            range between interval 29 days preceding and current row
        ) as here_30d,
        sum(orders) over (
            partition by merchant_id, buyer_key order by day
            range between interval {{ ring_window_lag_days }} days preceding and current row
        ) as here_window
    from history
),

repeat_rolling as (
    -- days on which the account was a repeat buyer at a shop, here and at any shop
    select
        *,
        sum(case when here_window >= {{ ring_repeat_min }} then 1 else 0 end) over (
            partition by merchant_id, buyer_key order by day
            range between interval {{ ring_window_lag_days }} days preceding and current row
        ) as repeat_days_here,
        sum(case when here_window >= {{ ring_repeat_min }} then 1 else 0 end) over (
            partition by buyer_key, category order by day
            range between interval {{ ring_window_lag_days }} days preceding and current row
        ) as repeat_days_category,
        sum(case when here_window >= {{ ring_repeat_min }} then 1 else 0 end) over (
            partition by buyer_key order by day
            range between interval {{ ring_window_lag_days }} days preceding and current row
        ) as repeat_days_anywhere
    from buyer_rolling
),

ring_buyer_days as (
    select merchant_id, buyer_key, day
    from repeat_rolling
    where day >= cast({{ start_day }} as date)
      and (
          here_30d >= {{ ring_min_orders }}
          -- a repeat buyer at a shop of another category: what a ring serving any shop does
          or (here_window >= {{ ring_repeat_min }}
              and repeat_days_anywhere - repeat_days_category >= {{ ring_elsewhere_repeat_days }})
          -- within its category a loyal buyer may repeat at a second shop too (the cross-shop
          -- loyal buyer): only repeating there beyond that counts
          or (here_window >= {{ ring_repeat_min }}
              and repeat_days_category - repeat_days_here >= {{ ring_same_category_repeat_days }})
      )
),

odd_hour_bursts as (
    select merchant_id, order_day, order_hour
    from orders
    where order_hour >= {{ odd_hour_start }}
      and order_hour < {{ odd_hour_end }}
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
        on r.merchant_id = o.merchant_id and r.buyer_key = o.buyer_key and r.day = o.order_day
    left join odd_hour_bursts as b
        on b.merchant_id = o.merchant_id and b.order_day = o.order_day and b.order_hour = o.order_hour
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
