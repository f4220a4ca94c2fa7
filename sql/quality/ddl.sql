-- Tables of the data-quality gate (livefin_etl.quality); see docs/quality.md.
CREATE TABLE IF NOT EXISTS dq.validation_runs (
    run_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    dt DATE NOT NULL,
    suite VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    critical_failed INTEGER NOT NULL,
    warnings_failed INTEGER NOT NULL,
    evaluated INTEGER NOT NULL,
    successful INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    seconds DOUBLE NOT NULL
);
COMMENT ON TABLE dq.validation_runs IS 'One row per GX suite run for a (source, dt): the row suite <source> and the partition-profile suite <source>.profile. History is kept; run_id ties it to dq.expectation_results.';
COMMENT ON COLUMN dq.validation_runs.run_id IS 'Validation run id, shared by both suites of one (source, dt) validation';
COMMENT ON COLUMN dq.validation_runs.source IS 'Source (or merchant_features) validated';
COMMENT ON COLUMN dq.validation_runs.dt IS 'Business date of the partition';
COMMENT ON COLUMN dq.validation_runs.suite IS 'Suite name: <source> (rows) or <source>.profile (partition profile)';
COMMENT ON COLUMN dq.validation_runs.success IS 'True when every expectation of the suite passed';
COMMENT ON COLUMN dq.validation_runs.critical_failed IS 'Failed expectations with severity critical (these fail the gate)';
COMMENT ON COLUMN dq.validation_runs.warnings_failed IS 'Failed expectations with severity warning';
COMMENT ON COLUMN dq.validation_runs.evaluated IS 'Expectations evaluated';
COMMENT ON COLUMN dq.validation_runs.successful IS 'Expectations that passed';
COMMENT ON COLUMN dq.validation_runs.started_at IS 'UTC start of the validation';
COMMENT ON COLUMN dq.validation_runs.seconds IS 'Wall time of the validation; for validate_range the range time divided by the number of dates';

CREATE TABLE IF NOT EXISTS dq.expectation_results (
    run_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    dt DATE NOT NULL,
    expectation_type VARCHAR NOT NULL,
    column_name VARCHAR,
    severity VARCHAR NOT NULL,
    dimension VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    observed_value VARCHAR,
    unexpected_count BIGINT,
    unexpected_percent DOUBLE,
    kwargs VARCHAR NOT NULL,
    suite VARCHAR NOT NULL
);
COMMENT ON TABLE dq.expectation_results IS 'One row per expectation per validation run (see dq.validation_runs).';
COMMENT ON COLUMN dq.expectation_results.run_id IS 'Validation run id';
COMMENT ON COLUMN dq.expectation_results.source IS 'Source validated';
COMMENT ON COLUMN dq.expectation_results.dt IS 'Business date of the partition';
COMMENT ON COLUMN dq.expectation_results.expectation_type IS 'GX expectation type, e.g. expect_column_values_to_be_unique';
COMMENT ON COLUMN dq.expectation_results.column_name IS 'Column(s) checked; helper columns start with _ (_ref_*, _in_window, _pk_first_seen, _check_*)';
COMMENT ON COLUMN dq.expectation_results.severity IS 'critical fails the partition; warning only marks it';
COMMENT ON COLUMN dq.expectation_results.dimension IS 'Quality dimension: completeness, validity, accuracy, consistency, timeliness, uniqueness';
COMMENT ON COLUMN dq.expectation_results.success IS 'Expectation passed';
COMMENT ON COLUMN dq.expectation_results.observed_value IS 'Observed value (profile metrics, types) or up to 5 unexpected values as JSON; error: ... when GX raised';
COMMENT ON COLUMN dq.expectation_results.unexpected_count IS 'Rows violating a row-level expectation (null for aggregate ones)';
COMMENT ON COLUMN dq.expectation_results.unexpected_percent IS 'Percent of non-null rows violating it';
COMMENT ON COLUMN dq.expectation_results.kwargs IS 'Expectation kwargs as JSON (thresholds resolved)';
COMMENT ON COLUMN dq.expectation_results.suite IS 'Suite the expectation belongs to';

CREATE TABLE IF NOT EXISTS dq.partition_status (
    source VARCHAR NOT NULL,
    dt DATE NOT NULL,
    status VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    failed_expectations VARCHAR,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source, dt)
);
COMMENT ON TABLE dq.partition_status IS 'Gate state per (source, dt), replaced on every validation: passed, warning (only warning expectations failed) or failed (a critical one failed). quality.require_passed reads it.';
COMMENT ON COLUMN dq.partition_status.source IS 'Source';
COMMENT ON COLUMN dq.partition_status.dt IS 'Business date of the partition';
COMMENT ON COLUMN dq.partition_status.status IS 'passed | warning | failed';
COMMENT ON COLUMN dq.partition_status.run_id IS 'Latest validation run (dq.validation_runs)';
COMMENT ON COLUMN dq.partition_status.failed_expectations IS 'JSON list of readable failed expectations, critical first, e.g. orders.expect_column_values_to_be_unique(order_id): 3 unexpected [critical]';
COMMENT ON COLUMN dq.partition_status.updated_at IS 'UTC time the status was written';

CREATE TABLE IF NOT EXISTS dq.merchant_quality (
    merchant_id VARCHAR NOT NULL,
    as_of_date DATE NOT NULL,
    completeness DOUBLE NOT NULL,
    validity DOUBLE NOT NULL,
    accuracy DOUBLE NOT NULL,
    consistency DOUBLE NOT NULL,
    timeliness DOUBLE NOT NULL,
    uniqueness DOUBLE NOT NULL,
    quality_q DOUBLE NOT NULL,
    rows_considered BIGINT NOT NULL,
    quality_version VARCHAR NOT NULL,
    PRIMARY KEY (merchant_id, as_of_date)
);
COMMENT ON TABLE dq.merchant_quality IS 'Data-quality coefficient per merchant and as_of_date, from the 30 partition days strictly before as_of_date (raw orders/traffic/fulfillment + their quarantined rows). Q scales the data-asset valuation; see docs/quality.md.';
COMMENT ON COLUMN dq.merchant_quality.merchant_id IS 'Merchant registered before as_of_date';
COMMENT ON COLUMN dq.merchant_quality.as_of_date IS 'Date D; only partitions < D are used';
COMMENT ON COLUMN dq.merchant_quality.completeness IS '1 - rows quarantined missing_required / rows considered';
COMMENT ON COLUMN dq.merchant_quality.validity IS '1 - rows quarantined type_error/below_min/above_max/not_allowed / rows considered';
COMMENT ON COLUMN dq.merchant_quality.accuracy IS 'Mean of 1 - rule-breaking rows share (refund>paid, end<start, peak>total, row_check) and traffic gmv_attributed vs orders GMV agreement';
COMMENT ON COLUMN dq.merchant_quality.consistency IS 'Mean of 1 - unknown_reference share and share of orders older than the grace period with a fulfilment event';
COMMENT ON COLUMN dq.merchant_quality.timeliness IS '1 - (rows delivered after their event day + rows quarantined outside_partition) / rows considered';
COMMENT ON COLUMN dq.merchant_quality.uniqueness IS '1 - (duplicate order ids in raw + rows quarantined duplicate_key) / rows considered';
COMMENT ON COLUMN dq.merchant_quality.quality_q IS 'Weighted mean of the six dimensions, weights in config/quality.yaml merchant_quality.weights';
COMMENT ON COLUMN dq.merchant_quality.rows_considered IS 'Raw orders + traffic + fulfillment rows and quarantined rows of the merchant in the window';
COMMENT ON COLUMN dq.merchant_quality.quality_version IS 'version of config/quality.yaml';
