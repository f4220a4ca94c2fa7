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
