"""Scheduled re-annotation: a KFP recurring run of the pipeline.

A recurring run starts the whole DAG on its cron schedule. Its first step lists the source and is
never cached; every other task keeps the caching compiled into it, so when the listing and the
parameters are unchanged every later task is a cache hit, and when videos were added, removed or
rewritten ingest re-runs and so does everything after it (on the whole corpus: the stages are not
incremental). A changed stage setting (e.g. a new annotator) re-runs that stage and what follows.
The label drift step compares the new labels with the run given as ``label_drift.reference``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mmvideos.config import load_params

#: The service account of manifests/service-account.yaml (bound to kubeflow-edit there).
DEFAULT_SERVICE_ACCOUNT = "mmvideos-pipeline"

_FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")


def check_cron(expression: str) -> str:
    """Validate a KFP cron expression: six fields, seconds first (``0 0 3 * * 0``: Sundays 03:00).

    Raises ``ValueError`` naming the problem; returns the normalised expression.
    """
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        hint = " (KFP cron has a leading seconds field: prefix yours with '0 ')" if len(fields) == 5 else ""
        raise ValueError(f"cron {expression!r} has {len(fields)} fields, KFP needs 6: {', '.join(_FIELDS)}{hint}")
    allowed = set("0123456789*/,-?LW#") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for name, field in zip(_FIELDS, fields):
        if not set(field.upper()) <= allowed:
            raise ValueError(f"cron {expression!r}: the {name} field {field!r} has characters cron does not take")
    return " ".join(fields)


def schedule(host: str, cron: str, name: str = "mmvideos-reannotation", experiment: str = "mmvideos",
             params_path: str | Path | None = None, arguments: dict | None = None,
             namespace: str | None = None, service_account: str | None = DEFAULT_SERVICE_ACCOUNT) -> str:
    """Compile the pipeline and create a recurring run on the KFP API at ``host``; its id.

    ``arguments`` override pipeline parameters (e.g. ``{"source": "gs://bucket/videos"}``).
    Runs never overlap (``max_concurrency=1``) and missed slots are not caught up. Caching is
    left to the compiled tasks (``enable_caching=None``): passing True or False would make the
    client overwrite every task's option, including the source listing's "never cached".
    """
    from kfp import Client, compiler

    from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

    cron = check_cron(cron)
    client = Client(host=host, namespace=namespace)
    exp = client.create_experiment(experiment, namespace=namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(build_pipeline(load_params(params_path)), str(package))
        run = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, max_concurrency=1,
            no_catchup=True, params=arguments or {}, pipeline_package_path=str(package),
            enable_caching=None, service_account=service_account)
    return run.recurring_run_id
