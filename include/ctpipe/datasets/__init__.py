"""Datasets the pipeline knows; the setting ``CTPIPE_DATASET`` picks one, ``lab_qc`` by default.

To plug in another dataset, describe it with a ``DatasetSpec`` in a module of
its own and add it to ``DATASETS``; no DAG changes.
"""

from __future__ import annotations

import importlib

from ctpipe.datasets.spec import Aggregate, Column, DatasetSpec, TableSpec

# name -> "module:attribute", imported on demand
DATASETS = {"lab_qc": "ctpipe.datasets.lab_qc:LAB_QC"}


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called ``name``; the deployment's own is ``Settings.from_env().dataset``."""
    try:
        module_name, attribute = DATASETS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
    return getattr(importlib.import_module(module_name), attribute)


__all__ = ["DATASETS", "Aggregate", "Column", "DatasetSpec", "TableSpec", "get_dataset"]
