-- One row per (merchant, day, streamer) for days [start_day, end_day]: net GMV of the orders a
-- streamer's sessions sold and the sessions they hosted (streamer concentration, last session).
insert into features.merchant_streamer_daily
with order_streamers as (
    select
        merchant_id,
        order_day as day,
        streamer_id,
        count(*) filter (where not is_cancelled) as orders_nc,
        sum(net_amount::decimal(38, 9))::double as gmv_net  -- exact: order-independent
    from stg_orders
    where order_day >= cast({{ start_day }} as date)
      and streamer_id is not null
    group by all
),

session_streamers as (
    select
        merchant_id,
        session_day as day,
        streamer_id,
        count(*) as sessions
    from stg_traffic
    where streamer_id is not null
    group by all
),

joined as (
    select
        coalesce(o.merchant_id, s.merchant_id) as merchant_id,
        coalesce(o.day, s.day) as day,
        coalesce(o.streamer_id, s.streamer_id) as streamer_id,
        coalesce(o.orders_nc, 0) as orders_nc,
        coalesce(o.gmv_net, 0.0) as gmv_net,
        coalesce(s.sessions, 0) as sessions,
        {{ feature_version }} as feature_version
    from order_streamers as o
    full outer join session_streamers as s
        on s.merchant_id = o.merchant_id and s.day = o.day and s.streamer_id = o.streamer_id
)

select * from joined
