"""Datasets the pipeline knows; the setting ``CTPIPE_DATASET`` picks one, ``lab_qc`` by default.

To plug in another dataset, describe it with a ``DatasetSpec`` in a module of your own
package and set ``CTPIPE_DATASET`` to its import path, ``my_package.my_module:MY_SPEC``;
no DAG or package changes. ``DATASETS`` names the ones that ship with the project.
"""

from __future__ import annotations

import importlib

from ctpipe.datasets.spec import Aggregate, Column, DatasetSpec, TableSpec

# name -> "module:attribute", imported on demand
DATASETS = {"lab_qc": "ctpipe.datasets.lab_qc:LAB_QC"}


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called ``name`` (a key of ``DATASETS``), or at ``module:attribute``.

    The deployment's own is ``Settings.from_env().dataset``.
    """
    reference = DATASETS.get(name, name)
    if ":" not in reference:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}, or an import path module:attribute")
    module_name, attribute = reference.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import {module_name!r} for dataset {name!r}: {error}") from error
    if not hasattr(module, attribute):
        raise AttributeError(f"module {module_name!r} has no {attribute!r}")
    spec = getattr(module, attribute)
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"{reference} is a {type(spec).__name__}, not a DatasetSpec")
    return spec


__all__ = ["DATASETS", "Aggregate", "Column", "DatasetSpec", "TableSpec", "get_dataset"]
