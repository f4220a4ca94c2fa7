-- Tables of the financing-limits stage (livefin_etl.limits); see docs/policy.md.
create schema if not exists limits;

create table if not exists limits.financing_limits (
    merchant_id varchar not null,
    as_of_date date not null,
    limit_amount double not null,
    currency varchar not null,
    decision varchar not null,
    pd double,
    score double,
    grade varchar,
    tier varchar not null,
    expected_loss double not null,
    data_asset_value double,
    repayment_capacity double not null,
    collateral_component double not null,
    outstanding_exposure double not null,
    reason_codes varchar[] not null,
    reason_texts varchar[] not null,
    guardrail_scale double not null,
    model_version varchar,
    policy_version varchar not null,
    valid_from date not null,
    valid_until date not null,
    run_id varchar not null,
    category varchar,
    top_streamer_id varchar,
    top_streamer_share_90d double,
    forecast_daily_gmv double not null,
    proposed_limit double not null,
    tier_cap double not null,
    sales_cap double not null,
    lgd double not null,
    review_days integer not null,
    manual_review boolean not null,
    policy_fingerprint varchar not null,
    created_at timestamp not null,
    primary key (merchant_id, as_of_date)
);
comment on table limits.financing_limits is 'Financing limit per merchant and business date (config/policy.yaml); history kept, a rerun of a date replaces that date';
comment on column limits.financing_limits.merchant_id is 'Merchant id';
comment on column limits.financing_limits.as_of_date is 'Business date D; only data strictly before D was used';
comment on column limits.financing_limits.limit_amount is 'Financing limit offered (principal), floored to the policy round amount; 0 on decline';
comment on column limits.financing_limits.currency is 'Currency of all amounts';
comment on column limits.financing_limits.decision is 'approve | reduce (a cap, exposure or guardrail lowered it) | decline | review (tier needs a human)';
comment on column limits.financing_limits.pd is 'Probability of default from credit.merchant_scores';
comment on column limits.financing_limits.score is 'Credit score from credit.merchant_scores';
comment on column limits.financing_limits.grade is 'Master-scale grade from credit.merchant_scores';
comment on column limits.financing_limits.tier is 'Supervision tier A-E: grade''s tier, one step down per tier flag';
comment on column limits.financing_limits.expected_loss is 'EL = pd x lgd x limit_amount';
comment on column limits.financing_limits.data_asset_value is 'Reconciled data-asset value from valuation.data_asset_values';
comment on column limits.financing_limits.repayment_capacity is 'Forecast net GMV over the term x withhold rate';
comment on column limits.financing_limits.collateral_component is 'Advance rate x data_asset_value (data-asset pledge)';
comment on column limits.financing_limits.outstanding_exposure is 'Outstanding balance of open loans (latest repayment row before D), subtracted';
comment on column limits.financing_limits.reason_codes is 'Policy rules that fired, then up to 4 model reason codes';
comment on column limits.financing_limits.reason_texts is 'Texts for reason_codes, same order';
comment on column limits.financing_limits.guardrail_scale is 'Factor applied by portfolio guardrails (1 = untouched)';
comment on column limits.financing_limits.model_version is 'Credit model version that produced pd';
comment on column limits.financing_limits.policy_version is 'config/policy.yaml version';
comment on column limits.financing_limits.valid_from is 'First day the limit is valid (= as_of_date)';
comment on column limits.financing_limits.valid_until is 'Limit expires on this day (as_of_date + tier review_days) unless re-run';
comment on column limits.financing_limits.run_id is 'Pipeline run that wrote the row';
comment on column limits.financing_limits.category is 'Merchant category (features)';
comment on column limits.financing_limits.top_streamer_id is 'Streamer with most net GMV in the 90 days before D (raw.orders)';
comment on column limits.financing_limits.top_streamer_share_90d is 'Share of 90-day GMV from the top streamer (features)';
comment on column limits.financing_limits.forecast_daily_gmv is 'De-seasonalised brushing-adjusted daily net GMV forecast';
comment on column limits.financing_limits.proposed_limit is 'Capacity principal x risk multiplier + collateral, before caps';
comment on column limits.financing_limits.tier_cap is 'Absolute cap of the tier';
comment on column limits.financing_limits.sales_cap is 'Sales-share cap: share x trailing 12-month net sales';
comment on column limits.financing_limits.lgd is 'Loss given default assumed by the policy';
comment on column limits.financing_limits.review_days is 'Review frequency of the tier, days';
comment on column limits.financing_limits.manual_review is 'Whether the tier requires a human reviewer';
comment on column limits.financing_limits.policy_fingerprint is 'Content hash of the policy file (detects edits without a version bump)';
comment on column limits.financing_limits.created_at is 'When the row was written (UTC)';

-- Sharded runs: the policy inputs (livefin_etl.limits.INPUT_COLUMNS) of each merchant-hash
-- shard wait here until limits_finalize applies the portfolio guardrails to the whole book.
create table if not exists limits.limit_inputs_staging (
    staged_as_of date not null,
    staged_run_id varchar not null,
    staged_shard integer not null,
    staged_shards integer not null,
    merchant_id varchar not null,
    category varchar,
    tenure_days integer,
    gmv_net_adj_30d double,
    gmv_net_adj_90d double,
    gmv_net_adj_365d double,
    gmv_net_365d double,
    gmv_cv_90d double,
    seasonal_trend_ratio double,
    brushing_score double,
    top_streamer_share_90d double,
    top_streamer_id varchar,
    quality_q double,
    failed_partition boolean,
    pd double,
    score double,
    grade varchar,
    model_version varchar,
    reason_code_1 varchar,
    reason_code_2 varchar,
    reason_code_3 varchar,
    reason_code_4 varchar,
    reason_text_1 varchar,
    reason_text_2 varchar,
    reason_text_3 varchar,
    reason_text_4 varchar,
    data_asset_value double,
    outstanding_exposure double,
    in_default boolean
);
comment on table limits.limit_inputs_staging is 'Per-shard limit-policy inputs awaiting portfolio guardrails (limits_finalize); transient';
comment on column limits.limit_inputs_staging.staged_as_of is 'Business date D the inputs are for';
comment on column limits.limit_inputs_staging.staged_run_id is 'Pipeline run that staged the shard; finalize reads only its own run';
comment on column limits.limit_inputs_staging.staged_shard is 'Merchant-hash shard index';
comment on column limits.limit_inputs_staging.staged_shards is 'Number of shards of the run';
