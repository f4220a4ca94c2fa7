-- Credit applications filed in [start_day, end_day], with the legacy decision. Refused ones are
-- kept: they are the rest of the through-the-door population (their outcomes are unknown).
create or replace temp view stg_applications as
with source as (
    select *
    from raw.applications
    where applied_at >= cast({{ start_day }} as timestamp)
      and applied_at < cast({{ end_day }} as timestamp) + interval 1 day
),

renamed as (
    select
        application_id,
        merchant_id,
        applied_at,
        cast(applied_at as date) as applied_day,
        requested_amount,
        decision,
        decision_reason,
        nullif(trim(loan_id), '') as loan_id,
        decision = 'approved' as is_approved
    from source
)

select * from renamed
