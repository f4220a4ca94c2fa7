-- The nightly spine as the pairs merchant_features.sql computes: the active merchants at D
-- (stg_active_merchants). Credit training builds _feature_spine from its own table instead.
create or replace temp table _feature_spine as
select * from stg_active_merchants
