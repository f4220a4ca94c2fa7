-- limits.portfolio_summary: the book by business date, tier and category.
create or replace view limits.portfolio_summary as
with limits_rows as (
    -- amounts as DECIMAL(38, 9): exact sums, the same on every query whatever the threads do
    select
        * replace (
            limit_amount::decimal(38, 9) as limit_amount,
            expected_loss::decimal(38, 9) as expected_loss,
            outstanding_exposure::decimal(38, 9) as outstanding_exposure
        )
    from limits.financing_limits
)

select
    as_of_date,
    tier,
    category,
    count(*) as merchants,
    count(*) filter (where decision = 'approve') as approved,
    count(*) filter (where decision = 'reduce') as reduced,
    count(*) filter (where decision = 'review') as in_review,
    count(*) filter (where decision = 'decline') as declined,
    -- money as published: DECIMAL(18, 2) (docs/publishing.md "Types")
    sum(limit_amount)::decimal(18, 2) as total_limit,
    sum(expected_loss)::decimal(18, 2) as expected_loss,
    round(sum(expected_loss)::double / nullif(sum(limit_amount), 0)::double, 6) as el_rate,
    sum(outstanding_exposure)::decimal(18, 2) as outstanding_exposure,
    count(*) filter (where guardrail_scale < 1) as guardrail_affected
from limits_rows
group by as_of_date, tier, category;

comment on view limits.portfolio_summary is 'Portfolio by business date, tier and category: counts by decision, total limit, expected loss';
comment on column limits.portfolio_summary.as_of_date is 'Business date';
comment on column limits.portfolio_summary.tier is 'Supervision tier A-E';
comment on column limits.portfolio_summary.category is 'Merchant category';
comment on column limits.portfolio_summary.merchants is 'Merchants evaluated';
comment on column limits.portfolio_summary.approved is 'Merchants approved in full';
comment on column limits.portfolio_summary.reduced is 'Merchants approved with a reduced limit';
comment on column limits.portfolio_summary.in_review is 'Merchants sent to manual review';
comment on column limits.portfolio_summary.declined is 'Merchants declined';
comment on column limits.portfolio_summary.total_limit is 'Sum of limit_amount';
comment on column limits.portfolio_summary.expected_loss is 'Sum of PD x LGD x limit';
comment on column limits.portfolio_summary.el_rate is 'expected_loss / total_limit, rounded to 6 decimal places';
comment on column limits.portfolio_summary.outstanding_exposure is 'Sum of outstanding loan balances';
comment on column limits.portfolio_summary.guardrail_affected is 'Merchants scaled by a portfolio guardrail';
