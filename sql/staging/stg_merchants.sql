-- Merchant registry: one row per merchant (the latest load wins if a merchant was re-delivered).
create or replace temp view stg_merchants as
with source as (
    select * from raw.merchants
),

renamed as (
    select
        merchant_id,
        category,
        onboard_date
    from source
    qualify row_number() over (partition by merchant_id order by _loaded_at desc, _dt desc) = 1
)

select * from renamed
