-- The nightly spine: merchants onboarded before D with any activity (orders, sessions or
-- logistics events) in the 365 days before D.
create or replace temp table stg_active_merchants as
with merchants as (
    select * from stg_merchants
    where onboard_date < cast({{ as_of_date }} as date)
),

active as (
    select distinct merchant_id
    from features.merchant_daily
    where day >= cast({{ as_of_date }} as date) - 365
      and day < cast({{ as_of_date }} as date)
),

spine as (
    select
        m.merchant_id,
        cast({{ as_of_date }} as date) as as_of_date
    from merchants as m
    semi join active as a on a.merchant_id = m.merchant_id
)

select * from spine
