-- Non-cancelled orders per (merchant, buyer account, day) for days [start_day, end_day], as first
-- delivered: the buyer-shop graph the ring flags of suspect_orders look back over, kept as a daily
-- block so a nightly build reads a year of buyer history without re-reading raw.orders.
insert into features.buyer_daily
select merchant_id, buyer_key, order_day as day, count(*) as orders, {{ feature_version }} as feature_version
from stg_orders
where not is_cancelled
  and buyer_key is not null  -- no buyer identity: no graph
  and order_day >= cast({{ start_day }} as date)
group by all
