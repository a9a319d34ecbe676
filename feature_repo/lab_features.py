"""Per-lab rolling aggregates, computed per data interval by the ``features`` DAG.

The offline source is the lake's ``features/lab_features`` folder: one Parquet
file per interval, every row stamped at its interval's end.
"""

import os
from pathlib import Path

from entities import lab
from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64

from ctpipe.datasets import get_dataset
from ctpipe.settings import Settings

dataset = get_dataset()
features_dir = Path(os.environ.get("CTPIPE_FEATURES_DIR") or Settings.from_env().lake_dir / "features")

lab_features_source = FileSource(
    name="lab_features_source",
    path=str(features_dir / dataset.feature_view),
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
