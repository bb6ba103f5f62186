"""The mmvideos Kubeflow pipeline (one DAG: run locally by ``kfp.local`` or compiled to IR)."""
