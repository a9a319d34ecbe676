"""The lab quality features, declared for Feast: entity, source, feature view, feature service.

Purely declarative, in one module as in Feast's own templates. Names follow the dataset
spec, so another dataset gets its view and service without editing this file. The source
path is relative: Feast resolves it against the store's repo path, which the pipeline
sets to the lake's features folder (``CTPIPE_FEATURES_DIR``), where the ``features`` DAG
writes one Parquet file per data interval, every row stamped at its interval's end.
"""

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

from ctpipe.settings import Settings

dataset = Settings.from_env().dataset

lab = Entity(
    name="lab",
    join_keys=[dataset.entity],
    value_type=ValueType.STRING,
    description="A laboratory that submits samples",
)

lab_features_source = FileSource(
    name="lab_features_source",
    path=dataset.feature_view,
    timestamp_field="event_timestamp",
    description="Validated lab aggregates, one file per data interval",
)

lab_features_fv = FeatureView(
    name=dataset.feature_view,
    entities=[lab],
    ttl=dataset.feature_ttl,
    schema=[
        Field(name=a.name, dtype=Int64 if a.type == "int" else Float64, description=a.description)
        for a in dataset.aggregates
    ],
    source=lab_features_source,
    online=True,
    description="Rolling per-lab submission, failure and handling statistics",
)

# Versioned feature services: what a model version reads. Add a _v2 beside _v1; never edit a released one.
lab_quality_v1 = FeatureService(
    name=dataset.feature_service,
    features=[lab_features_fv],
    description="Lab quality features for the QC-failure model, version 1",
)
