"""livefin_stress: on demand, recompute limits under a GMV shock and/or top-streamer exit.

Writes ``stress.stress_results`` through a locked pipeline session; the published limits are
untouched. Trigger from the UI form (params) or ``airflow dags trigger livefin_stress --conf``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from livefin_common import DAG_ARGS, TAGS, business_date_param, log


@dag(
    dag_id="livefin_stress",
    schedule=None,
    **DAG_ARGS,
    tags=[*TAGS, "stress"],
    params={
        "business_date": business_date_param("Limits date to stress (default: latest limits)"),
        "gmv_shock": Param(
            -0.3,
            type="number",
            minimum=-1.0,
            maximum=10.0,
            description="Relative GMV change, -0.3 = GMV down 30%",
        ),
        "streamer_exit": Param(
            False, type="boolean", description="Each merchant loses its top streamer"
        ),
    },
    doc_md=__doc__,
)
def livefin_stress() -> None:
    @task
    def stress() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from livefin_dates import parse_date

        from livefin_etl import limits, pipeline

        params = get_current_context()["params"]
        with pipeline.session() as (settings, con):
            if params.get("business_date"):
                day = parse_date(params["business_date"])
            else:
                sql = "select max(as_of_date) from limits.financing_limits"
                day = con.execute(sql).fetchone()[0]
                if day is None:
                    raise AirflowFailException("no limits yet: run livefin_nightly first")
            result = limits.stress(
                con,
                settings,
                day,
                gmv_shock=float(params["gmv_shock"]),
                streamer_exit=bool(params["streamer_exit"]),
            )
        log.info(
            "stress %s: %s",
            result.get("scenario_id"),
            {k: v for k, v in result.items() if k != "top_affected"},
        )
        return result

    stress()


livefin_stress()
