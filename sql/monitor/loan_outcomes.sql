-- One row per loan originated in [{{ from_date }}, {{ as_of_date }}): what is known of its
-- repayment by the night {{ as_of_date }} (rows strictly before it, within the default horizon).
with loans as (
    select loan_id, merchant_id, origination_date, principal
    from raw.loans
    where origination_date >= {{ from_date }}::DATE and origination_date < {{ as_of_date }}::DATE
    qualify row_number() over (partition by loan_id order by origination_date) = 1
), seen as (
    select l.loan_id, r.repay_date, r.dpd, r.outstanding
    from loans l
    join raw.repayments r
      on r.loan_id = l.loan_id
     and r.repay_date >= l.origination_date
     and r.repay_date <= l.origination_date + {{ horizon }}::INTEGER
     and r.repay_date < {{ as_of_date }}::DATE
)
select l.loan_id, l.merchant_id, l.origination_date, l.principal,
       l.origination_date + {{ horizon }}::INTEGER <= {{ as_of_date }}::DATE as matured,
       coalesce(max(s.dpd), 0)::INTEGER as max_dpd,
       min(s.repay_date) filter (where s.dpd >= 30) as first_dpd30,
       min(s.repay_date) filter (where s.dpd >= {{ dpd_threshold }}) as first_default,
       max(s.dpd) >= 60 as ever60,
       max(s.dpd) >= 90 as ever90,
       arg_max(s.outstanding, s.repay_date) as last_outstanding
from loans l
left join seen s on s.loan_id = l.loan_id
group by all
order by l.origination_date, l.loan_id
