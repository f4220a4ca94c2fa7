-- limits.merchant_360: one row per merchant joining its current limit with the score, data-asset
-- value, data quality and every feature of the same business date.
create or replace view limits.merchant_360 as
with current_limits as (
    select *
    from limits.current
),

quality as (
    select *
    from dq.merchant_quality
),

asset_values as (
    select *
    from valuation.data_asset_values
),

scores as (
    select *
    from credit.merchant_scores
),

features as (
    select *
    from features.merchant_features
)

select
    current_limits.merchant_id,
    current_limits.as_of_date,
    current_limits.category,
    current_limits.decision,
    current_limits.limit_amount,
    current_limits.currency,
    current_limits.tier,
    current_limits.valid_until,
    current_limits.reason_codes,
    current_limits.reason_texts,
    current_limits.expected_loss,
    current_limits.repayment_capacity,
    current_limits.collateral_component,
    current_limits.outstanding_exposure,
    current_limits.guardrail_scale,
    current_limits.policy_version,
    current_limits.top_streamer_id,
    scores.pd,
    scores.score,
    scores.grade,
    scores.model_version,
    asset_values.cost_value,
    asset_values.income_value,
    asset_values.market_value,
    asset_values.reconciled_value,
    quality.completeness,
    quality.validity,
    quality.accuracy,
    quality.consistency,
    quality.timeliness,
    quality.uniqueness,
    quality.quality_q,
    features.* exclude (merchant_id, as_of_date, category, quality_q)
from current_limits
left join scores
    on scores.merchant_id = current_limits.merchant_id
    and scores.as_of_date = current_limits.as_of_date
left join asset_values
    on asset_values.merchant_id = current_limits.merchant_id
    and asset_values.as_of_date = current_limits.as_of_date
left join quality
    on quality.merchant_id = current_limits.merchant_id
    and quality.as_of_date = current_limits.as_of_date
left join features
    on features.merchant_id = current_limits.merchant_id
    and features.as_of_date = current_limits.as_of_date;

comment on view limits.merchant_360 is 'Merchant 360: current limit + score + data-asset value + data quality + all features of the same date';
comment on column limits.merchant_360.merchant_id is 'Merchant id';
comment on column limits.merchant_360.as_of_date is 'Business date of the current limit and of every joined input';
comment on column limits.merchant_360.limit_amount is 'Current financing limit (limits.current)';
comment on column limits.merchant_360.decision is 'approve | reduce | decline | review';
comment on column limits.merchant_360.pd is 'Probability of default (credit.merchant_scores)';
comment on column limits.merchant_360.reconciled_value is 'Reconciled data-asset value (valuation.data_asset_values)';
comment on column limits.merchant_360.quality_q is 'Merchant data-quality coefficient (dq.merchant_quality)';
