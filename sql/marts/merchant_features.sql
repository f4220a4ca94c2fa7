-- Point-in-time features for every (merchant_id, as_of_date) in _feature_spine, into the temp
-- table merchant_features_batch (features.py replaces the target rows with it). Every window is
-- [as_of_date - N, as_of_date): only days strictly before as_of_date. The nightly run and the
-- training spine both come through here, so they cannot disagree.
create or replace temp table merchant_features_batch as
with spine as (
    select distinct merchant_id, as_of_date from _feature_spine
),

base as (
    select
        s.merchant_id,
        s.as_of_date,
        m.category,
        m.onboard_date,
        s.as_of_date - m.onboard_date as tenure_days,
        -- days of the merchant's life inside a window (a new merchant is not penalised for the
        -- days before it joined)
        least(90, greatest(coalesce(s.as_of_date - m.onboard_date, 90), 1)) as life_days_90,
        greatest(
            least({{ spike_baseline_days }},
                  coalesce(s.as_of_date - m.onboard_date, 365) - {{ spike_recent_days }}),
            0
        ) as life_days_spike_base,
        greatest(s.as_of_date - 365, coalesce(m.onboard_date, s.as_of_date - 365)) as base_start
    from spine as s
    left join stg_merchants as m
        on m.merchant_id = s.merchant_id and m.onboard_date < s.as_of_date
),

daily as (
    -- consumed once (by windows), so DuckDB streams it instead of materialising 365 x merchants.
    -- Amounts as DECIMAL(38, 9): the window sums are then exact, so they do not depend on the
    -- order DuckDB's threads add the days in (a float sum can differ in its last bit between two
    -- identical runs, and a reason text shows 1,231 or 1,232 for 1231.4999999999998 or 1231.5).
    select
        d.* replace (
            d.gmv_gross::decimal(38, 9) as gmv_gross,
            d.gmv_net::decimal(38, 9) as gmv_net,
            d.paid_nc::decimal(38, 9) as paid_nc,
            d.refund_amount::decimal(38, 9) as refund_amount,
            d.watch_minutes::decimal(38, 9) as watch_minutes,
            d.delivery_days_sum::decimal(38, 9) as delivery_days_sum
        ),
        (d.suspect_net + d.empty_parcel_net)::decimal(38, 9) as suspect_amount,
        (d.gmv_net * d.gmv_net)::decimal(38, 9) as gmv_net_sq,
        b.as_of_date,
        b.base_start,
        b.as_of_date - d.day as age  -- 1 = the day before as_of_date
    from base as b
    join features.merchant_daily as d
        on d.merchant_id = b.merchant_id
       and d.day >= b.as_of_date - 365
       and d.day < b.as_of_date
    where d.day >= cast({{ min_day }} as date) - 365
      and d.day < cast({{ max_day }} as date)
),

windows as (
    select
        merchant_id,
        as_of_date,
        sum(gmv_gross) filter (where age <= 7)::double as gmv_gross_7d,
        sum(gmv_gross) filter (where age <= 30)::double as gmv_gross_30d,
        sum(gmv_gross) filter (where age <= 90)::double as gmv_gross_90d,
        sum(gmv_gross)::double as gmv_gross_365d,
        sum(gmv_net) filter (where age <= 7)::double as gmv_net_7d,
        sum(gmv_net) filter (where age <= 30)::double as gmv_net_30d,
        sum(gmv_net) filter (where age <= 90)::double as gmv_net_90d,
        sum(gmv_net)::double as gmv_net_365d,
        sum(gmv_net) filter (where day >= base_start)::double as gmv_net_base,
        sum(suspect_amount) filter (where age <= 30)::double as suspect_net_30d,
        sum(suspect_amount) filter (where age <= 90)::double as suspect_net_90d,
        sum(suspect_amount)::double as suspect_net_365d,
        sum(gmv_net) filter (where age between 31 and 60)::double as gmv_net_prev_30d,
        sum(gmv_net) filter (where age between 91 and 180)::double as gmv_net_prev_90d,
        sum(gmv_net_sq) filter (where age <= 90)::double as gmv_net_sq_90d,
        sum(gmv_net) filter (where age <= {{ spike_recent_days }})::double as gmv_net_spike_recent,
        sum(gmv_net) filter (
            where age > {{ spike_recent_days }}
              and age <= {{ spike_recent_days }} + {{ spike_baseline_days }}
        )::double as gmv_net_spike_base,
        sum(orders) filter (where age <= 30) as orders_all_30d,
        sum(orders_nc) filter (where age <= 30) as orders_30d,
        sum(cancelled_orders) filter (where age <= 30) as cancelled_30d,
        sum(paid_nc) filter (where age <= 30)::double as paid_nc_30d,
        sum(refund_amount) filter (where age <= 30)::double as refund_amount_30d,
        sum(odd_hour_orders) filter (where age <= 30) as odd_hour_orders_30d,
        sum(ring_orders) filter (where age <= 30) as ring_orders_30d,
        sum(ring_orders) as ring_orders_365d,
        sum(orders_nc) as orders_365d,
        sum(live_orders) filter (where age <= 30) as live_orders_30d,
        sum(sessions) filter (where age <= 30) as sessions_30d,
        sum(viewers) filter (where age <= 30) as viewers_30d,
        sum(watch_minutes) filter (where age <= 30)::double as watch_minutes_30d,
        sum(shipped) filter (where age <= 30) as shipped_30d,
        sum(shipped_timed) filter (where age <= 30) as shipped_timed_30d,
        sum(shipped_on_time) filter (where age <= 30) as shipped_on_time_30d,
        sum(empty_parcels) filter (where age <= 30) as empty_parcels_30d,
        sum(delivered_timed) filter (where age <= 30) as delivered_timed_30d,
        sum(delivery_days_sum) filter (where age <= 30)::double as delivery_days_sum_30d,
        sum(lost) filter (where age <= 30) as lost_30d,
        sum(returned) filter (where age <= 30) as returned_30d,
        sum(complaints) filter (where age <= 30) as complaints_30d,
        count(*) filter (where age <= 90 and (orders_nc > 0 or sessions > 0)) as active_days_90d,
        min(age) filter (where orders_nc > 0) as days_since_last_order
    from daily
    group by all
),

platform as (
    select day, gmv_net_per_active_merchant::decimal(38, 9) as idx  -- exact sums below
    from features.platform_daily
    where day >= cast({{ min_day }} as date) - 365
      and day < cast({{ max_day }} as date)
),

season_keys as (
    select distinct as_of_date, base_start from base
),

season as (
    -- platform index summed over the recent 30 days and over the merchant's baseline window
    select
        k.as_of_date,
        k.base_start,
        sum(p.idx) filter (where p.day >= k.as_of_date - 30)::double as platform_30d,
        sum(p.idx) filter (where p.day >= k.base_start)::double as platform_base
    from season_keys as k
    join platform as p
        on p.day >= least(k.base_start, k.as_of_date - 30)
       and p.day < k.as_of_date
    group by all
),

buyer_orders as (
    select
        s.merchant_id,
        s.as_of_date,
        o.buyer_key,
        count(*) as orders,
        sum(o.net_amount::decimal(38, 9)) as gmv_net  -- exact, as are the sums of it below
    from spine as s
    join stg_order_versions as o
        on o.merchant_id = s.merchant_id
       and o.order_day >= s.as_of_date - 90
       and o.order_day < s.as_of_date
       -- each order as the latest version delivered before as_of_date
       and o.delivered_day < s.as_of_date
       and coalesce(o.next_delivered_day, s.as_of_date) >= s.as_of_date
    -- orders without a buyer identity (docs/contracts.md) cannot be grouped by buyer
    where not o.is_cancelled and o.buyer_key is not null
    group by all
),

buyers as (
    select
        merchant_id,
        as_of_date,
        count(*) as buyers_90d,
        count(*) filter (where orders >= 2) / count(*) as repeat_buyer_rate_90d,
        case when sum(gmv_net) > 0
            then sum((gmv_net::double * gmv_net::double)::decimal(38, 9))::double
                / pow(sum(gmv_net)::double, 2) end as buyer_hhi_90d
    from buyer_orders
    group by all
),

streamer_window as (
    select
        s.merchant_id,
        s.as_of_date,
        d.streamer_id,
        sum(d.gmv_net::decimal(38, 9)) filter (where s.as_of_date - d.day <= 90)::double
            as gmv_net_90d,
        max(d.day) filter (where d.sessions > 0) as last_session_day,
        max(d.day) filter (where d.orders_nc > 0) as last_order_day
    from spine as s
    join features.merchant_streamer_daily as d
        on d.merchant_id = s.merchant_id
       and d.day >= s.as_of_date - 365
       and d.day < s.as_of_date
    where d.day >= cast({{ min_day }} as date) - 365
      and d.day < cast({{ max_day }} as date)
    group by all
),

streamer_ranked as (
    select
        *,
        row_number() over (
            partition by merchant_id, as_of_date order by gmv_net_90d desc, streamer_id
        ) as rank_90d
    from streamer_window
    where gmv_net_90d > 0
),

streamers as (
    select
        merchant_id,
        as_of_date,
        count(*) as streamer_count_90d,
        sum((gmv_net_90d * gmv_net_90d)::decimal(38, 9))::double as streamer_sq_90d,
        max(gmv_net_90d) filter (where rank_90d = 1) as top_streamer_net_90d,
        max(streamer_id) filter (where rank_90d = 1) as top_streamer_id,
        max(coalesce(last_session_day, last_order_day)) filter (where rank_90d = 1)
            as top_streamer_last_day
    from streamer_ranked
    group by all
),

quality as (
    select
        s.merchant_id,
        s.as_of_date,
        q.quality_q,
        q.as_of_date as quality_date
    from spine as s
    asof left join stg_merchant_quality as q
        on q.merchant_id = s.merchant_id
       and s.as_of_date >= q.as_of_date
),

joined as (
    select
        b.*,
        w.* exclude (merchant_id, as_of_date),
        se.platform_30d,
        se.platform_base,
        bu.buyers_90d,
        bu.repeat_buyer_rate_90d,
        bu.buyer_hhi_90d,
        st.streamer_count_90d,
        st.streamer_sq_90d,
        st.top_streamer_net_90d,
        st.top_streamer_id,
        st.top_streamer_last_day,
        q.quality_q as measured_q,
        q.quality_date
    from base as b
    left join windows as w on w.merchant_id = b.merchant_id and w.as_of_date = b.as_of_date
    left join season as se on se.as_of_date = b.as_of_date and se.base_start = b.base_start
    left join buyers as bu on bu.merchant_id = b.merchant_id and bu.as_of_date = b.as_of_date
    left join streamers as st on st.merchant_id = b.merchant_id and st.as_of_date = b.as_of_date
    left join quality as q on q.merchant_id = b.merchant_id and q.as_of_date = b.as_of_date
),

computed as (
    select
        merchant_id,
        as_of_date,
        category,
        onboard_date,
        tenure_days,
        coalesce(gmv_gross_7d, 0.0) as gmv_gross_7d,
        coalesce(gmv_gross_30d, 0.0) as gmv_gross_30d,
        coalesce(gmv_gross_90d, 0.0) as gmv_gross_90d,
        coalesce(gmv_gross_365d, 0.0) as gmv_gross_365d,
        coalesce(gmv_net_7d, 0.0) as gmv_net_7d,
        coalesce(gmv_net_30d, 0.0) as gmv_net_30d,
        coalesce(gmv_net_90d, 0.0) as gmv_net_90d,
        coalesce(gmv_net_365d, 0.0) as gmv_net_365d,
        greatest(coalesce(gmv_net_30d, 0.0) - coalesce(suspect_net_30d, 0.0), 0.0) as gmv_net_adj_30d,
        greatest(coalesce(gmv_net_90d, 0.0) - coalesce(suspect_net_90d, 0.0), 0.0) as gmv_net_adj_90d,
        greatest(coalesce(gmv_net_365d, 0.0) - coalesce(suspect_net_365d, 0.0), 0.0) as gmv_net_adj_365d,
        case when gmv_net_prev_30d > 0 then gmv_net_30d / gmv_net_prev_30d - 1 end as gmv_growth_30d,
        case when gmv_net_prev_90d > 0 then gmv_net_90d / gmv_net_prev_90d - 1 end as gmv_growth_90d,
        case when gmv_net_90d > 0 then
            sqrt(greatest(
                gmv_net_sq_90d / life_days_90 - pow(gmv_net_90d / life_days_90, 2), 0.0
            )) / (gmv_net_90d / life_days_90)
        end as gmv_cv_90d,
        case when gmv_net_base > 0 and platform_30d > 0 and platform_base > 0 then
            (gmv_net_30d / platform_30d) / (gmv_net_base / platform_base)
        end as seasonal_trend_ratio,
        coalesce(orders_30d, 0) as orders_30d,
        case when orders_30d > 0 then paid_nc_30d / orders_30d end as aov_30d,
        case when paid_nc_30d > 0 then refund_amount_30d / paid_nc_30d end as refund_rate_30d,
        case when shipped_30d > 0 then returned_30d / shipped_30d end as return_rate_30d,
        case when orders_all_30d > 0 then cancelled_30d / orders_all_30d end as cancel_rate_30d,
        case when shipped_timed_30d > 0 then shipped_on_time_30d / shipped_timed_30d end
            as on_time_ship_rate_30d,
        case when delivered_timed_30d > 0 then delivery_days_sum_30d / delivered_timed_30d end
            as mean_delivery_days_30d,
        case when shipped_30d > 0 then lost_30d / shipped_30d end as lost_rate_30d,
        case when orders_30d > 0 then complaints_30d / orders_30d end as complaint_rate_30d,
        coalesce(sessions_30d, 0) as sessions_30d,
        coalesce(viewers_30d, 0) as viewers_30d,
        case when viewers_30d > 0 then orders_30d / viewers_30d end as conversion_rate_30d,
        coalesce(watch_minutes_30d, 0.0) as watch_minutes_30d,
        coalesce(streamer_count_90d, 0) as streamer_count_90d,
        case when gmv_net_90d > 0 then streamer_sq_90d / (gmv_net_90d * gmv_net_90d) end
            as streamer_hhi_90d,
        top_streamer_id,
        case when gmv_net_90d > 0 then top_streamer_net_90d / gmv_net_90d end
            as top_streamer_share_90d,
        as_of_date - top_streamer_last_day as days_since_top_streamer,
        coalesce(buyers_90d, 0) as buyers_90d,
        buyer_hhi_90d,
        repeat_buyer_rate_90d,
        case when quality_date >= as_of_date - {{ quality_max_age_days }} then measured_q
             else {{ default_q }} end as quality_q,
        case when quality_date >= as_of_date - {{ quality_max_age_days }} then 'measured'
             else 'default' end as quality_source,
        case when orders_30d > 0 then ring_orders_30d / orders_30d end as brush_ring_density_30d,
        case when orders_365d > 0 then ring_orders_365d / orders_365d end as ring_account_share_365d,
        -- live orders later cancelled stay counted, so clamp at 0
        case when orders_30d > 0 then greatest(orders_30d - live_orders_30d, 0) / orders_30d end
            as non_live_share_30d,
        case when shipped_30d > 0 then empty_parcels_30d / shipped_30d end as no_track_share_30d,
        case when orders_30d > 0 then odd_hour_orders_30d / orders_30d end as odd_hour_share_30d,
        case when life_days_spike_base > 0 and gmv_net_spike_base > 0 then least(
            (gmv_net_spike_recent / {{ spike_recent_days }})
                / (gmv_net_spike_base / life_days_spike_base),
            {{ spike_cap }}
        ) end as gmv_spike_ratio,
        coalesce(active_days_90d, 0) as active_days_90d,
        days_since_last_order
    from joined
),

scored as (
    select
        * exclude (days_since_last_order),
        -- missing signals (no orders, no shipments, no baseline) add nothing to the score
        1.0 / (1.0 + exp(-(
            {{ w_intercept }}
            + {{ w_ring_density }} * coalesce(brush_ring_density_30d, 0.0)
            + {{ w_ring_account }}
                * ln(1.0 + {{ ring_account_scale }} * coalesce(ring_account_share_365d, 0.0))
            + {{ w_non_live_share }} * coalesce(non_live_share_30d, 0.0)
            + {{ w_no_track_share }} * coalesce(no_track_share_30d, 0.0)
            + {{ w_odd_hour_share }} * coalesce(odd_hour_share_30d, 0.0)
            + {{ w_log_spike }} * ln(greatest(coalesce(gmv_spike_ratio, 1.0), 1.0))
        ))) as brushing_score,
        days_since_last_order
    from computed
)

select
    * exclude (days_since_last_order, brushing_score, active_days_90d),
    brushing_score,
    active_days_90d,
    days_since_last_order,
    case when gmv_net_30d > 0 then 1 - gmv_net_adj_30d / gmv_net_30d end as suspect_gmv_share_30d,
    {{ feature_version }} as feature_version,
    cast(current_timestamp as timestamp) as built_at
from scored
order by merchant_id, as_of_date  -- rows are stored in this order: the same on every run
