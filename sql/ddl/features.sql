-- Schema of the feature tables. The tables themselves are created from the mart specs
-- (sql/marts/<model>.yml) by features.ensure_table, which also refuses a drifted schema.
create schema if not exists features;
