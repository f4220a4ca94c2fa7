-- Platform-wide daily net GMV per active merchant, for days [start_day, end_day]: the seasonal
-- index (618, Double 11) that seasonal_trend_ratio divides by.
insert into features.platform_daily
with daily as (
    select * from features.merchant_daily
    where day between cast({{ start_day }} as date) and cast({{ end_day }} as date)
),

platform as (
    select
        day,
        sum(gmv_net::decimal(38, 9))::double as gmv_net,  -- exact: order-independent
        count(*) filter (where orders_nc > 0) as active_merchants
    from daily
    group by all
),

indexed as (
    select
        day,
        gmv_net,
        active_merchants,
        case when active_merchants > 0 then gmv_net / active_merchants else 0.0 end
            as gmv_net_per_active_merchant,
        {{ feature_version }} as feature_version
    from platform
)

select * from indexed
