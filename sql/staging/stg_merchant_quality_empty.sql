-- Stand-in for stg_merchant_quality before the quality stage has ever run (no
-- dq.merchant_quality yet): the same columns, no rows, so every merchant gets the default Q.
create or replace temp view stg_merchant_quality as
select
    cast(null as varchar) as merchant_id,
    cast(null as date) as as_of_date,
    cast(null as double) as quality_q,
    cast(null as double) as completeness,
    cast(null as double) as validity,
    cast(null as double) as accuracy,
    cast(null as double) as consistency,
    cast(null as double) as timeliness
where false
