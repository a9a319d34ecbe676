"""The dataset's features, declared for Feast: entity, source, feature view, feature service.

Purely declarative, in one module as in Feast's own templates. Every name follows the
dataset spec (``CTPIPE_DATASET``), so another dataset gets its entity, view and service
without editing this file. The source path is relative: Feast resolves it against the
store's repo path, which the pipeline sets to the lake's features folder
(``CTPIPE_FEATURES_DIR``), where the ``features`` DAG writes one Parquet file per data
interval, every row stamped at its interval's end; the source reads those partitions
gathered one file per month (``ctpipe.features.offline_source``), which materialization
keeps up to date.
"""

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

from ctpipe.features import offline_source
from ctpipe.settings import Settings

dataset = Settings.from_env().dataset

entity = Entity(
    name=dataset.entity.removesuffix("_id"),
    join_keys=[dataset.entity],
    value_type=ValueType.STRING,
    description=f"What {dataset.events.name} belong to, and the features describe",
)

source = FileSource(
    name=f"{dataset.feature_view}_source",
    path=offline_source(dataset.feature_view),
    timestamp_field="event_timestamp",
    description=f"Per-{entity.name} aggregates of validated {dataset.events.name} and {dataset.labels.name}, "
    "one file per month of data intervals",
)

feature_view = FeatureView(
    name=dataset.feature_view,
    entities=[entity],
    ttl=dataset.feature_ttl,
    schema=[
        Field(name=a.name, dtype=Int64 if a.type == "int" else Float64, description=a.description)
        for a in dataset.aggregates
    ],
    source=source,
    online=True,
    description=f"Rolling per-{entity.name} aggregates: " + ", ".join(a.name for a in dataset.aggregates),
)

# Versioned feature services: what a model version reads. Add a _v2 beside _v1; never edit a released one.
feature_service = FeatureService(
    name=dataset.feature_service,
    features=[feature_view],
    description=f"The features of the {dataset.model_name} model",
)
