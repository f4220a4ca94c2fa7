-- The night's offers: decisions, take-up (a loan originated in the 30 days before the night by a
-- merchant offered a limit), utilisation (outstanding exposure over offered limit).
with night as (
    select merchant_id, decision, limit_amount, outstanding_exposure
    from limits.financing_limits
    where as_of_date = {{ as_of_date }}::DATE
), took as (
    select distinct merchant_id
    from raw.loans
    where origination_date >= {{ as_of_date }}::DATE - 30 and origination_date < {{ as_of_date }}::DATE
)
select 'approval_rate' as metric, count(*) filter (where decision in ('approve', 'reduce'))::DOUBLE as numerator, count(*)::DOUBLE as denominator from night
union all
select 'review_rate', count(*) filter (where decision = 'review'), count(*) from night
union all
select 'decline_rate', count(*) filter (where decision = 'decline'), count(*) from night
union all
select 'take_up_30d', count(*) filter (where t.merchant_id is not null), count(*)
from night n left join took t using (merchant_id) where n.limit_amount > 0
union all
select 'utilisation', coalesce(sum(outstanding_exposure), 0), coalesce(sum(limit_amount), 0)
from night where limit_amount > 0
