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
