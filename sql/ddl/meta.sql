-- Load bookkeeping of extract (livefin_etl.extract); see docs/contracts.md.
create schema if not exists meta;

create table if not exists meta.load_manifest (
    source varchar, dt date, file varchar, sha256 varchar, bytes bigint,
    rows_read bigint, rows_loaded bigint, rows_quarantined bigint,
    encoding varchar, mapping varchar, contract_version varchar,
    status varchar, message varchar, loaded_at timestamp
);
comment on table meta.load_manifest is 'One row per landing file load attempt: checksum, rows read/loaded/quarantined';
comment on column meta.load_manifest.rows_read is 'Data rows read from the file';
comment on column meta.load_manifest.rows_loaded is 'Rows loaded into raw.<source>';
comment on column meta.load_manifest.rows_quarantined is 'Rows sent to meta.quarantine (rows_read = loaded + quarantined)';
comment on column meta.load_manifest.status is 'loaded | rejected (whole file refused, partition untouched)';
comment on column meta.load_manifest.sha256 is 'Checksum of the file; an unchanged file is not reloaded';

create table if not exists meta.quarantine (
    source varchar, dt date, file varchar, line bigint, reason_code varchar,
    reason varchar, column_name varchar, merchant_id varchar, raw_values varchar,
    quarantined_at timestamp
);
comment on table meta.quarantine is 'Rows (or whole files, line 0) that broke the source contract, with the reason; PII masked';
comment on column meta.quarantine.reason_code is 'missing_required, type_error, below_min, above_max, not_allowed, duplicate_key, unknown_reference, outside_partition, row_check, file_error, rejected_redelivery';
comment on column meta.quarantine.raw_values is 'The offending row as JSON, with PII columns replaced by their keyed hash';
comment on column meta.quarantine.line is 'Line in the landing file (0 = the whole file)';

-- Calendar and key bookkeeping (livefin_etl.calendar, livefin_etl.pipeline).
create table if not exists meta.calendar_skips (
    dt date not null, source varchar not null, reason varchar not null,
    skipped_by varchar not null, skipped_at timestamp not null,
    primary key (dt, source)
);
comment on table meta.calendar_skips is 'Business dates skipped on purpose (livefin run --allow-gap ... --reason ...): the nightly of a later date runs although these never passed the gate';
comment on column meta.calendar_skips.source is 'Source skipped, or * for every source of the date';
comment on column meta.calendar_skips.reason is 'Why the date was skipped, as the operator gave it';
comment on column meta.calendar_skips.skipped_by is 'OS user who recorded the skip';

create table if not exists meta.pii_key (
    fingerprint varchar not null, key_source varchar not null, first_used_at timestamp not null
);
comment on table meta.pii_key is 'Fingerprint (HMAC of a constant, never the key) of the PII key this warehouse was hashed with; extract refuses any other key';

-- Shape of each loaded file under its mapping (livefin_etl.extract.shape; docs/contracts.md).
create table if not exists meta.load_shape (
    source varchar, dt date, file varchar, mapping varchar, line_rows bigint, rows_read bigint,
    identity varchar, identity_rows bigint, loaded_at timestamp
);
comment on table meta.load_shape is 'Per loaded file: line-item rows aggregated into its rows, and the buyer identity its mapping declares';
comment on column meta.load_shape.line_rows is 'Line-item rows in the file (null: one row per order); rows_read counts the orders they make';
comment on column meta.load_shape.identity is 'Buyer identity the mapping declares: phone, platform_id, masked_combined or none';
comment on column meta.load_shape.identity_rows is 'Rows with a usable buyer identity; 0 = repeat-buyer and ring features are null for them';
