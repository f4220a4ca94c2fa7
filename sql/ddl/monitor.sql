-- Nightly model monitoring (livefin_etl/credit/monitor.py, stage `monitor`); see
-- docs/credit_model.md "Monitoring". Every row carries as_of_date, model_version, run_id and
-- monitoring_version (config/monitoring.yaml).
create schema if not exists monitor;

create table if not exists monitor.reference (
    model_version varchar, variable varchar, bin integer, upper_edge double, expected_count bigint,
    n_reference bigint, train_from date, train_to date, oot_from date, built_at timestamp,
    monitoring_version varchar
);
comment on table monitor.reference is 'Champion training-window bins (PSI/CSI reference), built once per model version';
comment on column monitor.reference.bin is 'Quantile bin of the train window (0 = lowest); -1 = missing values';
comment on column monitor.reference.upper_edge is 'Exclusive upper edge of the bin; NULL for the top bin and the missing bin';
comment on column monitor.reference.oot_from is 'First origination date of the champion''s out-of-time window: loans from here on were never fitted on';

create table if not exists monitor.stability (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    kind varchar, variable varchar, psi double, band varchar, n_reference bigint, n_actual bigint
);
comment on table monitor.stability is 'Score PSI and per-feature CSI of the night''s scored merchants against the champion''s training window';
comment on column monitor.stability.kind is 'score (PSI of PD) | feature (CSI)';
comment on column monitor.stability.band is 'stable (< watch) | watch | act (>= act), thresholds in config/monitoring.yaml';

create table if not exists monitor.performance (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    population varchar, vintage varchar, n_loans bigint, n_matured bigint,
    expected_default_rate double, expected_auc double, expected_ks double,
    realised_default_rate double, realised_auc double, realised_ks double,
    matured_expected_auc double, backfilled_on date
);
comment on table monitor.performance is 'Champion performance on loans it never fitted on (origination >= oot_from): CBPE estimate from calibrated PDs, realised once loans mature';
comment on column monitor.performance.population is 'all | matured | immature (default window not closed yet)';
comment on column monitor.performance.vintage is 'Origination month YYYY-MM, or ''all''';
comment on column monitor.performance.expected_auc is 'CBPE: AUC expected if each loan defaults with its calibrated PD (no labels needed)';
comment on column monitor.performance.realised_auc is 'AUC on matured loans (default definition of config/model.yaml target); backfilled on earlier nights'' rows as loans mature';
comment on column monitor.performance.matured_expected_auc is 'CBPE AUC on the matured loans of the row (compare with realised_auc)';
-- added by monitoring-v2: the CBPE estimate's 95% interval (additive, for existing warehouses)
alter table monitor.performance add column if not exists expected_auc_lo double;
alter table monitor.performance add column if not exists expected_auc_hi double;
comment on column monitor.performance.expected_auc_lo is 'CBPE: 2.5% quantile of the AUC realised when labels are drawn from the PDs (200 draws); a realised AUC inside [lo, hi] is consistent with the PDs';
comment on column monitor.performance.expected_auc_hi is 'CBPE: 97.5% quantile of the AUC realised when labels are drawn from the PDs (200 draws)';
comment on column monitor.performance.backfilled_on is 'Night whose run filled realised_* on this row (NULL: not matured yet, or filled the same night)';

create table if not exists monitor.loss (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    dimension varchar, bucket varchar, n_loans bigint, n_matured bigint, principal double,
    expected_default_rate double, realised_default_rate double, default_ratio double,
    expected_loss double, realised_loss double, loss_ratio double,
    dpd30_rate double, dpd60_rate double, dpd90_rate double, roll_30_60 double, roll_60_90 double
);
comment on table monitor.loss is 'Realised vs expected default and loss on matured loans by grade, tier and origination month, with 30/60/90 dpd and roll rates';
comment on column monitor.loss.dimension is 'grade (from PD at origination) | tier (limits at origination, ''none'' without a limit row) | vintage (origination month)';
comment on column monitor.loss.expected_loss is 'Sum of PD x LGD (config/policy.yaml lgd) x principal over matured loans';
comment on column monitor.loss.realised_loss is 'Sum of the balance outstanding at the horizon of matured defaulted loans';
comment on column monitor.loss.roll_30_60 is 'Share of loans that reached 30 dpd and went on to 60 dpd (within the horizon)';

create table if not exists monitor.vintage (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    vintage varchar, months_on_book integer, n_loans bigint, cum_default_rate double,
    cum_dpd30_rate double
);
comment on table monitor.vintage is 'Vintage curves: cumulative default (dpd >= target) and 30+ dpd rates by origination month and months on book';

create table if not exists monitor.business (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    metric varchar, value double, numerator double, denominator double
);
comment on table monitor.business is 'Approval, decline and review rates, offer take-up and limit utilisation of the night';
comment on column monitor.business.metric is 'approval_rate | review_rate | decline_rate | take_up_30d | utilisation';

create table if not exists monitor.reason_mix (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    reason_code varchar, rank integer, merchants bigint, share double, first_reason_share double
);
comment on table monitor.reason_mix is 'Mix of adverse-action reason codes among the night''s scores (top N, the rest as OTHER)';

create table if not exists monitor.verdicts (
    as_of_date date, model_version varchar, run_id varchar, monitoring_version varchar,
    check_name varchar, value double, watch double, act double, verdict varchar, action varchar,
    message varchar
);
comment on table monitor.verdicts is 'Monitoring verdicts of the night: stable | watch | act | n/a; `livefin status` lists watch and act';
comment on column monitor.verdicts.action is 'What the stage did: none | logged | warned | failed';

-- Every column of the published monitoring tables has a comment (docs/publishing.md).
comment on column monitor.business.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.business.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.business.run_id is 'Pipeline run that wrote the row';
comment on column monitor.business.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.business.value is 'Metric value: numerator / denominator (a rate or share, not an amount)';
comment on column monitor.business.numerator is 'Numerator of the metric (merchants for rates; CNY for utilisation)';
comment on column monitor.business.denominator is 'Denominator of the metric (merchants for rates; CNY of limits for utilisation)';
comment on column monitor.loss.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.loss.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.loss.run_id is 'Pipeline run that wrote the row';
comment on column monitor.loss.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.loss.bucket is 'Grade, tier or origination month of the row, per dimension';
comment on column monitor.loss.n_loans is 'Loans of the bucket';
comment on column monitor.loss.n_matured is 'Loans whose default window has closed';
comment on column monitor.loss.principal is 'Principal of the matured loans (CNY)';
comment on column monitor.loss.expected_default_rate is 'Mean calibrated PD at origination of the matured loans';
comment on column monitor.loss.realised_default_rate is 'Share of matured loans that defaulted';
comment on column monitor.loss.default_ratio is 'realised_default_rate / expected_default_rate';
comment on column monitor.loss.loss_ratio is 'realised_loss / expected_loss';
comment on column monitor.loss.dpd30_rate is 'Share of matured loans that reached 30 days past due';
comment on column monitor.loss.dpd60_rate is 'Share of matured loans that reached 60 days past due';
comment on column monitor.loss.dpd90_rate is 'Share of matured loans that reached 90 days past due';
comment on column monitor.loss.roll_60_90 is 'Share of loans that reached 60 dpd and went on to 90 dpd (within the horizon)';
comment on column monitor.performance.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.performance.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.performance.run_id is 'Pipeline run that wrote the row';
comment on column monitor.performance.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.performance.n_loans is 'Loans of the population and vintage';
comment on column monitor.performance.n_matured is 'Loans whose default window has closed';
comment on column monitor.performance.expected_default_rate is 'CBPE: mean calibrated PD of the loans';
comment on column monitor.performance.expected_ks is 'CBPE: KS statistic expected if each loan defaults with its calibrated PD';
comment on column monitor.performance.realised_default_rate is 'Share of matured loans that defaulted (NULL until some mature)';
comment on column monitor.performance.realised_ks is 'KS statistic on matured loans';
comment on column monitor.reason_mix.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.reason_mix.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.reason_mix.run_id is 'Pipeline run that wrote the row';
comment on column monitor.reason_mix.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.reason_mix.reason_code is 'Adverse-action reason code, or OTHER for the codes beyond the top N';
comment on column monitor.reason_mix.rank is 'Rank of the code by merchants (1 = most frequent)';
comment on column monitor.reason_mix.merchants is 'Scored merchants with the code among their reasons';
comment on column monitor.reason_mix.share is 'merchants / scored merchants of the night';
comment on column monitor.reason_mix.first_reason_share is 'Share of scored merchants whose first reason is the code';
comment on column monitor.stability.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.stability.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.stability.run_id is 'Pipeline run that wrote the row';
comment on column monitor.stability.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.stability.variable is 'pd for the score PSI, else the feature of the CSI';
comment on column monitor.stability.psi is 'Population stability index against the champion training window (monitor.reference bins)';
comment on column monitor.stability.n_reference is 'Rows of the training window';
comment on column monitor.stability.n_actual is 'Merchants scored this night';
comment on column monitor.verdicts.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.verdicts.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.verdicts.run_id is 'Pipeline run that wrote the row';
comment on column monitor.verdicts.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.verdicts.check_name is 'Check: score_psi, csi:<feature>, auc, default ratio, business rates, ...';
comment on column monitor.verdicts.value is 'Observed value of the check';
comment on column monitor.verdicts.watch is 'Watch threshold (config/monitoring.yaml)';
comment on column monitor.verdicts.act is 'Act threshold (config/monitoring.yaml)';
comment on column monitor.verdicts.verdict is 'stable | watch | act | n/a';
comment on column monitor.verdicts.message is 'Readable verdict line';
comment on column monitor.vintage.as_of_date is 'Business date D of the monitoring run';
comment on column monitor.vintage.model_version is 'Champion model version monitored (credit.model_registry)';
comment on column monitor.vintage.run_id is 'Pipeline run that wrote the row';
comment on column monitor.vintage.monitoring_version is 'version of config/monitoring.yaml used';
comment on column monitor.vintage.vintage is 'Origination month YYYY-MM';
comment on column monitor.vintage.months_on_book is 'Months since origination';
comment on column monitor.vintage.n_loans is 'Loans of the vintage';
comment on column monitor.vintage.cum_default_rate is 'Cumulative share of the vintage defaulted (dpd >= target) by months_on_book';
comment on column monitor.vintage.cum_dpd30_rate is 'Cumulative share of the vintage 30+ days past due by months_on_book';
