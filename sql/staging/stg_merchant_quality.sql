-- Merchant quality coefficient Q from the quality stage (dq.merchant_quality).
-- When that table does not exist yet, stg_merchant_quality_empty.sql stands in for it.
create or replace temp view stg_merchant_quality as
with source as (
    select * from dq.merchant_quality
),

renamed as (
    select
        merchant_id,
        as_of_date,
        quality_q,
        -- the measured dimensions, for the valuation's GB/T 36344 quality (stg_valuation_inputs)
        completeness,
        validity,
        accuracy,
        consistency,
        timeliness
    from source
    where quality_q is not null
)

select * from renamed
