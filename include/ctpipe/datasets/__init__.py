"""Datasets the pipeline knows; the setting ``CTPIPE_DATASET`` picks one, ``lab_qc`` by default.

To plug in another dataset, describe it with a ``DatasetSpec`` in a module of your own
package and set ``CTPIPE_DATASET`` to its import path, ``my_package.my_module:MY_SPEC``;
no DAG or package changes. ``DATASETS`` names the built-in one; ``shop_returns.py``
is a second example, plugged in by its import path only, as yours would be.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ctpipe.datasets.spec import Aggregate, Column, DatasetSpec, TableSpec

if TYPE_CHECKING:  # pandas, which a generator needs, stays out of DAG parsing
    from ctpipe.datasets.synthetic import Generator

# name -> "module:attribute", imported on demand
DATASETS = {"lab_qc": "ctpipe.datasets.lab_qc:LAB_QC"}


def _imported(reference: str, what: str) -> Any:
    """The object at ``module:attribute``; errors name ``what`` was being looked up."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import {module_name!r} for {what}: {error}") from error
    if not hasattr(module, attribute):
        raise AttributeError(f"module {module_name!r} has no {attribute!r} (for {what})")
    return getattr(module, attribute)


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called ``name`` (a key of ``DATASETS``), or at ``module:attribute``.

    The deployment's own is ``Settings.from_env().dataset``.
    """
    reference = DATASETS.get(name, name)
    if ":" not in reference:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}, or an import path module:attribute")
    spec = _imported(reference, f"dataset {name!r}")
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"{reference} is a {type(spec).__name__}, not a DatasetSpec")
    return spec


def get_generator(dataset: DatasetSpec) -> Generator:
    """The synthetic generator ``dataset`` ships (``DatasetSpec.generator``), imported."""
    if dataset.generator is None:
        raise ValueError(
            f"dataset {dataset.name!r} ships no synthetic generator (DatasetSpec.generator is None): "
            "load its source tables yourself and run the main job with --no-seed"
        )
    if ":" not in dataset.generator:
        raise ValueError(f"dataset {dataset.name!r}: generator {dataset.generator!r} is not module:function")
    generate = _imported(dataset.generator, f"the generator of dataset {dataset.name!r}")
    if not callable(generate):
        raise TypeError(f"{dataset.generator} is a {type(generate).__name__}, not a function")
    return generate


__all__ = ["DATASETS", "Aggregate", "Column", "DatasetSpec", "TableSpec", "get_dataset", "get_generator"]
