"""livefin_stress: on demand, recompute limits under a GMV shock and/or top-streamer exit.

Calls ``pipeline.stress`` (the same function as ``livefin stress``), which writes
``stress.stress_results``; the published limits are untouched. Trigger from the UI form (params) or
``airflow dags trigger livefin_stress --conf``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from livefin_common import DAG_ARGS, TAGS, business_date_param, guarded, log


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
        from livefin_dates import parse_date

        from livefin_etl import pipeline

        params = get_current_context()["params"]
        requested = params.get("business_date")
        result = guarded(
            pipeline.stress,
            parse_date(requested) if requested else None,
            gmv_shock=float(params["gmv_shock"]),
            streamer_exit=bool(params["streamer_exit"]),
        )
        log.info("stress %s:\n%s", result.get("scenario_id"), result.pop("text", ""))
        return result

    stress()


livefin_stress()
