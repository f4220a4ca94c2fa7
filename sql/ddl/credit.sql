-- Tables of the credit model (livefin_etl.credit); see docs/credit_model.md.
create schema if not exists credit;

create table if not exists credit.model_registry (
    model_version varchar, trained_at timestamp, as_of_date date, status varchar, reason varchar,
    auc_oot double, ks_oot double, brier_oot double, psi_score double,
    n_train bigint, n_valid bigint, n_oot bigint, data_fingerprint varchar,
    model_config_version varchar, artifact_path varchar, report_path varchar
);
comment on table credit.model_registry is 'Model inventory: one row per trained PD model version; exactly one champion scores';
comment on column credit.model_registry.model_version is 'm-<as_of YYYYMMDD>-<first 8 hex of sha256(model.json)>';
comment on column credit.model_registry.trained_at is 'UTC time the model was registered';
comment on column credit.model_registry.as_of_date is 'Training cut-off: loans whose default window closed by this date';
comment on column credit.model_registry.status is 'champion (scores nightly) | challenger (kept, not used) | retired';
comment on column credit.model_registry.reason is 'Why the gate (or a person) gave this status';
comment on column credit.model_registry.auc_oot is 'AUC of calibrated PD on the out-of-time window';
comment on column credit.model_registry.ks_oot is 'Kolmogorov-Smirnov statistic on the out-of-time window';
comment on column credit.model_registry.brier_oot is 'Brier score of calibrated PD on the out-of-time window';
comment on column credit.model_registry.psi_score is 'PSI of PD, train window -> out-of-time window';
comment on column credit.model_registry.n_train is 'Loans in the train window';
comment on column credit.model_registry.n_valid is 'Loans in the valid window (early stopping, calibration)';
comment on column credit.model_registry.n_oot is 'Loans in the out-of-time window (evaluation only)';
comment on column credit.model_registry.data_fingerprint is 'sha256 of the modelling frame (features, label, split)';
comment on column credit.model_registry.model_config_version is 'version of config/model.yaml used';
comment on column credit.model_registry.artifact_path is 'Folder with model.json, calibrator.json, features.json, metrics.json';
comment on column credit.model_registry.report_path is 'Self-contained HTML model report';

create table if not exists credit.model_events (
    event_seq bigint, event_at timestamp, model_version varchar, action varchar, from_status varchar,
    to_status varchar, reason varchar
);
comment on table credit.model_events is 'Audit trail of registry status changes (register, gate, promote, rollback)';
comment on column credit.model_events.event_seq is 'Monotone event number (audit order)';
comment on column credit.model_events.action is 'register | promote | supersede | rollback | reinstate';

create table if not exists credit.merchant_scores (
    merchant_id varchar, as_of_date date, pd double, score integer, grade varchar,
    reason_code_1 varchar, reason_code_2 varchar, reason_code_3 varchar, reason_code_4 varchar,
    reason_text_1 varchar, reason_text_2 varchar, reason_text_3 varchar, reason_text_4 varchar,
    reason_shap_1 double, reason_shap_2 double, reason_shap_3 double, reason_shap_4 double,
    model_version varchar, run_id varchar
);
comment on table credit.merchant_scores is 'Champion PD, score, grade and up to 4 adverse-action reasons per merchant and date';
comment on column credit.merchant_scores.pd is 'Calibrated probability of default (60+ dpd within 180 days of a loan taken at as_of_date)';
comment on column credit.merchant_scores.score is 'Scorecard points: 600 at 50:1 good:bad odds, 20 points to double the odds';
comment on column credit.merchant_scores.grade is 'Master-scale grade from PD bands (config/model.yaml master_scale)';
comment on column credit.merchant_scores.reason_code_1 is 'Most important factor that raised PD (TreeSHAP > 0); NULL when none';
comment on column credit.merchant_scores.reason_text_1 is 'Reason text with the merchant''s actual value';
comment on column credit.merchant_scores.reason_shap_1 is 'TreeSHAP contribution of reason 1 in log-odds (always > 0)';
comment on column credit.merchant_scores.model_version is 'Champion model version from credit.model_registry';
comment on column credit.merchant_scores.run_id is 'Scoring run id (lineage)';
comment on column credit.merchant_scores.merchant_id is 'Merchant id';
comment on column credit.merchant_scores.as_of_date is 'Business date D the merchant was scored for (features of data before D)';
comment on column credit.merchant_scores.reason_code_2 is 'Factor ranked 2 among those that raised PD (TreeSHAP > 0); NULL when fewer';
comment on column credit.merchant_scores.reason_text_2 is 'Reason text of reason_code_2 with the merchant''s actual value';
comment on column credit.merchant_scores.reason_shap_2 is 'TreeSHAP contribution of reason 2 in log-odds (always > 0)';
comment on column credit.merchant_scores.reason_code_3 is 'Factor ranked 3 among those that raised PD (TreeSHAP > 0); NULL when fewer';
comment on column credit.merchant_scores.reason_text_3 is 'Reason text of reason_code_3 with the merchant''s actual value';
comment on column credit.merchant_scores.reason_shap_3 is 'TreeSHAP contribution of reason 3 in log-odds (always > 0)';
comment on column credit.merchant_scores.reason_code_4 is 'Factor ranked 4 among those that raised PD (TreeSHAP > 0); NULL when fewer';
comment on column credit.merchant_scores.reason_text_4 is 'Reason text of reason_code_4 with the merchant''s actual value';
comment on column credit.merchant_scores.reason_shap_4 is 'TreeSHAP contribution of reason 4 in log-odds (always > 0)';
