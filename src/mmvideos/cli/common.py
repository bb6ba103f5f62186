"""What the command groups share: parameter loading, output folders and common options."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from mmvideos.cluster.schedule import DEFAULT_SERVICE_ACCOUNT, SA_TOKEN_PATH
from mmvideos.config import from_dict
from mmvideos.data import storage
from mmvideos.settings import load_params


def params(args: argparse.Namespace, name: str, cls):
    """Section ``name`` of the parameter file (``--params``) as the settings dataclass ``cls``."""
    return from_dict(cls, load_params(args.params).get(name))


def root(args: argparse.Namespace):
    """The data root: ``--data-root``, else ``data.root`` of the parameter file."""
    from mmvideos.data.dataroot import DataRoot

    return DataRoot(args.data_root or (load_params(args.params).get("data") or {}).get("root") or "")


#: The small results of a stage that ``--results`` moves out of its output folder: what
#: ``dvc.yaml`` keeps in git (results/), apart from the tables and models DVC caches.
MERGE_LABELS_RESULTS = ("summary.json", "stats.md", "stats.html", "samples_per_category.png",
                        "labels_per_clip.png", "top_categories.png", "audit.html")
PRETRAIN_RESULTS = ("summary.json", "metrics.json", "curves.png", "curves.html", "environment.json")


@contextlib.contextmanager
def outputs(args: argparse.Namespace, results: tuple[str, ...]) -> Iterator[Path]:
    """The local folder a stage writes into, placed at ``--output``; with ``--results``, the
    files named in ``results`` go there instead (both may be local or gs://)."""
    with storage.output_folder(args.output) as out:
        if not args.results:
            yield out
            return
        with storage.output_folder(args.results) as res:
            yield out
            for name in results:
                if (out / name).exists():
                    shutil.move(out / name, res / name)


def results_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--results``: where ``what`` goes instead of ``--output``."""
    p.add_argument("--results", default=None,
                   help=f"put {what} here instead of --output (local or gs://; dvc.yaml: results/, kept in git)")


def slot(args: argparse.Namespace) -> dict:
    """``--slot`` and ``--slots`` as a map stage's keyword arguments, checked."""
    if not 0 <= args.slot < args.slots:
        raise ValueError(f"--slot must lie in [0, --slots), got {args.slot} of {args.slots}")
    return {"slot": args.slot, "slots": args.slots}


def print_summary(summary: dict) -> None:
    """A stage's summary on stdout, as indented JSON."""
    print(json.dumps(summary, indent=2))


def data_root_option(p: argparse.ArgumentParser) -> None:
    """``--data-root``."""
    p.add_argument("--data-root", default=None,
                   help="where shards live: a folder, or gs://bucket/prefix (default: data.root in params.yaml)")


def pipeline_root_option(p: argparse.ArgumentParser) -> None:
    """``--pipeline-root``."""
    p.add_argument("--pipeline-root", default=None,
                   help="where the cluster keeps the runs' artifacts, e.g. gs://bucket/pipeline-root (default: the "
                        "namespace's kfp-launcher ConfigMap, manifests/base/kfp-launcher.yaml)")


def cluster_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a run on a cluster: the KFP endpoint, the run's inputs, and authentication."""
    host_option(p)
    p.add_argument("--source", help="the run's source (e.g. a gs:// prefix); on a cluster the demo corpus is refused")
    p.add_argument("--data-root", default=None, help="the run's data root, e.g. gs://bucket/mmvideos")
    pipeline_root_option(p)
    p.add_argument("--experiment", default="mmvideos", help="KFP experiment (default: %(default)s)")
    p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    p.add_argument("--service-account", default=DEFAULT_SERVICE_ACCOUNT,
                   help="Kubernetes service account the run's pods use (default: %(default)s, from manifests/base)")
    auth_options(p)


def host_option(p: argparse.ArgumentParser) -> None:
    """``--host``, the KFP API endpoint."""
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")


def auth_options(p: argparse.ArgumentParser) -> None:
    """How to authenticate to the KFP API (``kfp.Client``'s conventions)."""
    auth = p.add_argument_group("authentication (kfp.Client's; at most one)")
    auth.add_argument("--token", default=None, help="bearer token, e.g. $(gcloud auth print-identity-token)")
    auth.add_argument("--cookies", default=None, help="session cookies, e.g. 'authservice_session=...' (Dex)")
    auth.add_argument("--sa-token", nargs="?", const=SA_TOKEN_PATH, default=None, metavar="PATH",
                      help=f"in-cluster service account token file (default path: {SA_TOKEN_PATH})")
    auth.add_argument("--ssl-ca-cert", default=None, help="CA bundle of the endpoint")


def map_options(p: argparse.ArgumentParser) -> None:
    """The options of a map stage: the data root and this task's slot."""
    data_root_option(p)
    p.add_argument("--slot", type=int, default=0, help="this task's slot (default 0)")
    p.add_argument("--slots", type=int, default=1, help="task slots sharing the work; 1 does it all (default 1)")
