-- Schema of the data-asset values. valuation.data_asset_values itself is created from its mart
-- spec (sql/marts/data_asset_values.yml) by features.ensure_table.
create schema if not exists valuation;
