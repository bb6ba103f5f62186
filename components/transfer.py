"""Transfer components: one per model and benchmark (in parallel), then the results table."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer(benchmark: str, data_roots: dict, compiled_benchmarks: list, model: Input[Model], params: dict,
             results: Output[Dataset], metrics: Output[Metrics], confusion: Output[ClassificationMetrics],
             first_seed: int = 0):
    """Classifier on the 128-d embeddings (and two baselines) under the benchmark's protocol.

    ``data_roots`` maps benchmark names to their data (params.yaml ``benchmarks``); its names
    must be the ``compiled_benchmarks`` the DAG has one task for (the roots may change per run).
    A model of a pre-training seed other than ``first_seed`` (``pretrain.seeds``) gets only its
    pre-trained rows: the others do not depend on the pre-training, and the first seed's task has them.
    """
    import json

    from mmvideos.cluster.kfp_io import log_transfer
    from mmvideos.config import check_compiled, from_dict
    from mmvideos.demo.benchmark import resolve_benchmark
    from mmvideos.stages.transfer import TransferConfig
    from mmvideos.stages.transfer import transfer as run

    check_compiled("the benchmark names in benchmarks", sorted(data_roots), sorted(compiled_benchmarks))
    with open(f"{model.path}/model.json") as card:
        rows = "all" if json.load(card).get("seed", first_seed) == first_seed else "pretrained"
    run(benchmark, resolve_benchmark(benchmark, data_roots.get(benchmark)), model.path, results.path,
        from_dict(TransferConfig, params), progress=True, rows=rows)
    log_transfer(results.path, metrics, confusion)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def collect(results: Input[List[Dataset]], model: Input[Model], collected: Output[Dataset]):
    """One model's transfer results over every benchmark, in one folder for the report, with the
    model's card completed by them (``MODEL_CARD.md``)."""
    from mmvideos.model_card import CARD, write_model_card
    from mmvideos.stages.report import collect as run

    collected.metadata["results"] = run([r.path for r in results], collected.path)
    write_model_card(model.path, transfers=[r.path for r in results], target=f"{collected.path}/{CARD}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report(results: Input[List[Dataset]], table: Output[Dataset], page: Output[Markdown],
           metrics: Output[Metrics], plot: Output[HTML]):
    """One table in the style of the paper's Tables 2-4 over every model and benchmark, with the
    paper's figures beside ours, plus a bar plot."""
    import json

    from mmvideos.cluster.kfp_io import copy_page, log_metrics
    from mmvideos.stages.report import report as run

    run([r.path for r in results], table.path)
    log_metrics(metrics, json.loads(open(f"{table.path}/metrics.json").read()))
    copy_page(f"{table.path}/results.md", page.path)
    copy_page(f"{table.path}/results.html", plot.path)
