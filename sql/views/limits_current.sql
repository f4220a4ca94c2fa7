-- limits.current: the latest limit per merchant that is still valid on the latest run date.
create or replace view limits.current as
with latest_run as (
    select max(as_of_date) as as_of_date
    from limits.financing_limits
),

latest_per_merchant as (
    select *
    from limits.financing_limits
    qualify row_number() over (partition by merchant_id order by as_of_date desc) = 1
)

select latest_per_merchant.*
from latest_per_merchant
cross join latest_run
where latest_per_merchant.valid_until > latest_run.as_of_date;

comment on view limits.current is 'Latest financing limit per merchant, still valid (valid_until after the latest run date); same columns as limits.financing_limits';
comment on column limits.current.merchant_id is 'Merchant id';
comment on column limits.current.as_of_date is 'Business date of the run that set this limit';
comment on column limits.current.limit_amount is 'Financing limit offered (principal); 0 on decline';
comment on column limits.current.decision is 'approve | reduce | decline | review';
comment on column limits.current.valid_until is 'Limit expires on this day unless a later run replaces it';
comment on column limits.current.reason_codes is 'Policy rules that fired, then up to 4 model reason codes';
