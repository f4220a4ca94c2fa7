-- The snapshot's own description, created in each new published snapshot (publish.py) and
-- filled with one row: what the analysts are looking at.
create schema if not exists meta;

create table if not exists meta.publication (
    as_of_date date,
    run_id varchar,
    published_at timestamp,
    policy_versions varchar[],
    model_versions varchar[],
    tables json
);
comment on table meta.publication is 'What this snapshot is: business date, run, versions and row counts per table';
comment on column meta.publication.as_of_date is 'Business date D of the published limits';
comment on column meta.publication.run_id is 'Pipeline run that published this snapshot';
comment on column meta.publication.published_at is 'UTC time the snapshot was built';
comment on column meta.publication.policy_versions is 'config/policy.yaml versions of the limits of D';
comment on column meta.publication.model_versions is 'Credit model versions that scored the limits of D';
comment on column meta.publication.tables is 'Rows per copied table, as JSON {"schema.table": rows}';
