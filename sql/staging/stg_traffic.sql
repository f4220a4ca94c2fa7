-- Live sessions that started in [start_day, end_day].
create or replace temp view stg_traffic as
with source as (
    select *
    from raw.traffic
    where start_ts >= cast({{ start_day }} as timestamp)
      and start_ts < cast({{ end_day }} as timestamp) + interval 1 day
),

renamed as (
    select
        session_id,
        merchant_id,
        streamer_id,
        start_ts,
        cast(start_ts as date) as session_day,
        total_viewers,
        watch_minutes
    from source
)

select * from renamed
