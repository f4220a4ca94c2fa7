-- Tables of the data-quality gate (livefin_etl.quality); see docs/quality.md.
-- Run by warehouse.run_ddl(con, "dq") from quality.ensure_tables (idempotent).
create schema if not exists dq;

create table if not exists dq.validation_runs (
    run_id varchar not null,
    source varchar not null,
    dt date not null,
    suite varchar not null,
    success boolean not null,
    critical_failed integer not null,
    warnings_failed integer not null,
    evaluated integer not null,
    successful integer not null,
    started_at timestamp not null,
    seconds double not null
);
comment on table dq.validation_runs is 'One row per GX suite run for a (source, dt): the row suite <source> and the partition-profile suite <source>.profile. History is kept; run_id ties it to dq.expectation_results.';
comment on column dq.validation_runs.run_id is 'Validation run id, shared by both suites of one (source, dt) validation';
comment on column dq.validation_runs.source is 'Source (or merchant_features) validated';
comment on column dq.validation_runs.dt is 'Business date of the partition';
comment on column dq.validation_runs.suite is 'Suite name: <source> (rows) or <source>.profile (partition profile)';
comment on column dq.validation_runs.success is 'True when every expectation of the suite passed';
comment on column dq.validation_runs.critical_failed is 'Failed expectations with severity critical (these fail the gate)';
comment on column dq.validation_runs.warnings_failed is 'Failed expectations with severity warning';
comment on column dq.validation_runs.evaluated is 'Expectations evaluated';
comment on column dq.validation_runs.successful is 'Expectations that passed';
comment on column dq.validation_runs.started_at is 'UTC start of the validation';
comment on column dq.validation_runs.seconds is 'Wall time of the validation; for validate_range the range time divided by the number of dates';

create table if not exists dq.expectation_results (
    run_id varchar not null,
    source varchar not null,
    dt date not null,
    expectation_type varchar not null,
    column_name varchar,
    severity varchar not null,
    dimension varchar not null,
    success boolean not null,
    observed_value varchar,
    unexpected_count bigint,
    unexpected_percent double,
    kwargs varchar not null,
    suite varchar not null
);
comment on table dq.expectation_results is 'One row per expectation per validation run (see dq.validation_runs).';
comment on column dq.expectation_results.run_id is 'Validation run id';
comment on column dq.expectation_results.source is 'Source validated';
comment on column dq.expectation_results.dt is 'Business date of the partition';
comment on column dq.expectation_results.expectation_type is 'GX expectation type, e.g. expect_column_values_to_be_unique';
comment on column dq.expectation_results.column_name is 'Column(s) checked; helper columns start with _ (_ref_*, _in_window, _pk_first_seen, _check_*)';
comment on column dq.expectation_results.severity is 'critical fails the partition; warning only marks it';
comment on column dq.expectation_results.dimension is 'Quality dimension: completeness, validity, accuracy, consistency, timeliness, uniqueness';
comment on column dq.expectation_results.success is 'Expectation passed';
comment on column dq.expectation_results.observed_value is 'Observed value (profile metrics, types) or up to 5 unexpected values as JSON; error: ... when GX raised';
comment on column dq.expectation_results.unexpected_count is 'Rows violating a row-level expectation (null for aggregate ones)';
comment on column dq.expectation_results.unexpected_percent is 'Percent of non-null rows violating it';
comment on column dq.expectation_results.kwargs is 'Expectation kwargs as JSON (thresholds resolved)';
comment on column dq.expectation_results.suite is 'Suite the expectation belongs to';

create table if not exists dq.partition_status (
    source varchar not null,
    dt date not null,
    status varchar not null,
    run_id varchar not null,
    failed_expectations varchar,
    updated_at timestamp not null,
    primary key (source, dt)
);
comment on table dq.partition_status is 'Gate state per (source, dt), replaced on every validation: passed, warning (only warning expectations failed) or failed (a critical one failed). quality.require_passed reads it.';
comment on column dq.partition_status.source is 'Source';
comment on column dq.partition_status.dt is 'Business date of the partition';
comment on column dq.partition_status.status is 'passed | warning | failed';
comment on column dq.partition_status.run_id is 'Latest validation run (dq.validation_runs)';
comment on column dq.partition_status.failed_expectations is 'JSON list of readable failed expectations, critical first, e.g. orders.expect_column_values_to_be_unique(order_id): 3 unexpected [critical]';
comment on column dq.partition_status.updated_at is 'UTC time the status was written';

create table if not exists dq.merchant_quality (
    merchant_id varchar not null,
    as_of_date date not null,
    completeness double not null,
    validity double not null,
    accuracy double not null,
    consistency double not null,
    timeliness double not null,
    uniqueness double not null,
    quality_q double not null,
    rows_considered bigint not null,
    quality_version varchar not null,
    primary key (merchant_id, as_of_date)
);
comment on table dq.merchant_quality is 'Data-quality coefficient per merchant and as_of_date, from the 30 partition days strictly before as_of_date (raw orders/traffic/fulfillment + their quarantined rows). Q scales the data-asset valuation; see docs/quality.md.';
comment on column dq.merchant_quality.merchant_id is 'Merchant registered before as_of_date';
comment on column dq.merchant_quality.as_of_date is 'Date D; only partitions < D are used';
comment on column dq.merchant_quality.completeness is '1 - rows quarantined missing_required / rows considered';
comment on column dq.merchant_quality.validity is '1 - rows quarantined type_error/below_min/above_max/not_allowed / rows considered';
comment on column dq.merchant_quality.accuracy is 'Mean of 1 - rule-breaking rows share (refund>paid, end<start, peak>total, row_check) and traffic gmv_attributed vs orders GMV agreement';
comment on column dq.merchant_quality.consistency is 'Mean of 1 - unknown_reference share and share of orders older than the grace period with a fulfilment event';
comment on column dq.merchant_quality.timeliness is '1 - (rows delivered after their event day + rows quarantined outside_partition) / rows considered';
comment on column dq.merchant_quality.uniqueness is '1 - (duplicate order ids in raw + rows quarantined duplicate_key) / rows considered';
comment on column dq.merchant_quality.quality_q is 'Weighted mean of the six dimensions, weights in config/quality.yaml merchant_quality.weights';
comment on column dq.merchant_quality.rows_considered is 'Raw orders + traffic + fulfillment rows and quarantined rows of the merchant in the window';
comment on column dq.merchant_quality.quality_version is 'version of config/quality.yaml';
