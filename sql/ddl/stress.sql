-- Results of limit stress scenarios (livefin_etl.limits.stress); see docs/policy.md.
create schema if not exists stress;

create table if not exists stress.stress_results (
    scenario_id varchar not null,
    as_of_date date not null,
    gmv_shock double not null,
    streamer_exit boolean not null,
    params varchar not null,
    merchant_id varchar not null,
    category varchar,
    top_streamer_id varchar,
    limit_before double not null,
    limit_after double not null,
    limit_change double not null,
    decision_before varchar not null,
    decision_after varchar not null,
    el_before double not null,
    el_after double not null,
    reason_codes_after varchar[] not null,
    policy_version varchar not null,
    created_at timestamp not null,
    primary key (scenario_id, merchant_id)
);
comment on table stress.stress_results is 'Per-merchant limits before/after a stress scenario (GMV shock, streamer exit)';
comment on column stress.stress_results.scenario_id is 'Scenario key: date, shock and streamer-exit flag; a rerun replaces it';
comment on column stress.stress_results.as_of_date is 'Business date D of the inputs';
comment on column stress.stress_results.gmv_shock is 'Relative change applied to every net GMV input (-0.3 = 30% drop)';
comment on column stress.stress_results.streamer_exit is 'Whether dependent merchants lost their top streamer''s share of GMV';
comment on column stress.stress_results.params is 'Scenario parameters as JSON';
comment on column stress.stress_results.merchant_id is 'Merchant id';
comment on column stress.stress_results.category is 'Merchant category';
comment on column stress.stress_results.top_streamer_id is 'Top streamer by 90-day GMV';
comment on column stress.stress_results.limit_before is 'Limit under the unshocked inputs (same policy code path)';
comment on column stress.stress_results.limit_after is 'Limit under the scenario';
comment on column stress.stress_results.limit_change is 'limit_after - limit_before';
comment on column stress.stress_results.decision_before is 'Decision under the unshocked inputs';
comment on column stress.stress_results.decision_after is 'Decision under the scenario';
comment on column stress.stress_results.el_before is 'Expected loss before';
comment on column stress.stress_results.el_after is 'Expected loss after';
comment on column stress.stress_results.reason_codes_after is 'Reason codes under the scenario';
comment on column stress.stress_results.policy_version is 'config/policy.yaml version';
comment on column stress.stress_results.created_at is 'When the row was written (UTC)';
