"""Point-in-time training sets: labelled events joined to the entity's features as of each event.

A training set for a cutoff holds the events submitted in ``[cutoff - days,
cutoff)`` whose label was *reported* before the cutoff (a model trained at
the cutoff could not have known later outcomes). Each row gets the entity's
features from Feast's ``get_historical_features`` as of the event's own
timestamp. The newest ``holdout_days`` form the time-based holdout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctpipe.datasets.spec import DatasetSpec
from ctpipe.lake import Lake
from ctpipe.records import Interval, TrainingSetSpec

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

LABEL = "label"  # 1 when the outcome is the dataset's positive label
EVENT_TIMESTAMP = "event_timestamp"


def labelled_events(dataset: DatasetSpec, lake: Lake, window: Interval) -> pd.DataFrame:
    """Validated events stamped in ``window`` with the labels reported before its end."""
    events_spec, labels_spec = dataset.events, dataset.labels
    events = lake.read_window(
        "validated",
        events_spec.name,
        events_spec.timestamp,
        window,
        [events_spec.key, dataset.entity, *dataset.features],
    )
    labels = lake.read_window(
        "validated", labels_spec.name, labels_spec.timestamp, window, [labels_spec.key, dataset.label]
    )
    # A corrected outcome replaces the earlier one; the newest known at the cutoff counts.
    labels = labels.sort_values(labels_spec.timestamp).drop_duplicates(labels_spec.key, keep="last")
    joined = events.merge(
        labels.rename(columns={labels_spec.key: events_spec.key}),
        on=events_spec.key,
        how="inner",
        validate="one_to_one",
    )
    joined[LABEL] = (joined[dataset.label] == dataset.positive_label).astype("int64")
    return joined.rename(columns={events_spec.timestamp: EVENT_TIMESTAMP}).drop(columns=[dataset.label])


def events_with_features(dataset: DatasetSpec, lake: Lake, store: FeatureStore, window: Interval) -> pd.DataFrame:
    """Validated events stamped in ``window``, unlabelled, with features as of each event: what a model sees."""
    from ctpipe.feature_store import historical_features

    spec = dataset.events
    columns = [spec.key, dataset.entity, *dataset.features]
    events = lake.read_window("validated", spec.name, spec.timestamp, window, columns)
    if events.empty:
        raise ValueError(f"no validated events in {window}")
    frame = historical_features(
        store, dataset.feature_service, events.rename(columns={spec.timestamp: EVENT_TIMESTAMP})
    )
    return frame.sort_values([EVENT_TIMESTAMP, spec.key], kind="stable").reset_index(drop=True)


def build_training_set(dataset: DatasetSpec, lake: Lake, store: FeatureStore, spec: TrainingSetSpec) -> pd.DataFrame:
    """Labelled events with the feature service's values as of each event, oldest first.

    Events with no feature row inside the feature view's TTL are dropped by the
    offline store: a model cannot be trained on features that did not exist.
    """
    from ctpipe.feature_store import historical_features

    entity_rows = labelled_events(dataset, lake, spec.window)
    if entity_rows.empty:
        raise ValueError(f"no labelled events in {spec.window}: is the lake populated for that range?")
    frame = historical_features(store, spec.feature_service, entity_rows)
    key = dataset.events.key
    return frame.sort_values([EVENT_TIMESTAMP, key], kind="stable").reset_index(drop=True)


def split_holdout(frame: pd.DataFrame, spec: TrainingSetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything before the holdout start trains; the rest evaluates."""
    late = frame[EVENT_TIMESTAMP] >= spec.holdout_start
    train, holdout = frame[~late], frame[late]
    if train.empty or holdout.empty or train[LABEL].nunique() < 2 or holdout[LABEL].nunique() < 2:
        raise ValueError(
            f"cannot split {len(frame)} rows at {spec.holdout_start}: train has {len(train)} rows, "
            f"holdout {len(holdout)}; both need passed and failed outcomes"
        )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def model_columns(dataset: DatasetSpec) -> tuple[list[str], list[str]]:
    """(numeric, categorical) model inputs: the event's own features plus the entity aggregates."""
    numeric = [c for c in dataset.features if dataset.events.column(c).type in ("float", "int")]
    numeric += [a.name for a in dataset.aggregates]
    categorical = [c for c in dataset.features if dataset.events.column(c).type == "string"]
    return numeric, categorical


def model_input(dataset: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """What a model is given for rows of events with their features, in the model's column order.

    The one assembly of a model's input: training, evaluation, the drift check and the
    prediction service all call it, so a model never sees at serving time what it was not
    trained on. Numeric inputs are float64 (missing: NaN, which the model imputes),
    categorical ones objects (missing: None), whatever types the rows came in with.
    """
    import pandas as pd

    numeric, categorical = model_columns(dataset)
    absent = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if absent:
        raise ValueError(f"rows lack the model inputs {absent} of dataset {dataset.name}")
    import numpy as np

    # Column by column into numpy and one frame at the end: a request of a few rows spends
    # more on pandas' per-column machinery than on its values.
    inputs: dict[str, np.ndarray] = {}
    for c in numeric:
        try:
            inputs[c] = frame[c].to_numpy(dtype="float64", copy=True)
        except (TypeError, ValueError):  # pandas' missing values, or numbers written as text
            inputs[c] = pd.to_numeric(frame[c]).to_numpy(dtype="float64", na_value=np.nan)
    for c in categorical:
        column = frame[c].to_numpy(dtype=object, copy=True)
        column[pd.isna(column)] = None
        inputs[c] = column
    return pd.DataFrame(inputs, index=frame.index, copy=False)


def reference_sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``rows`` rows of a model's holdout days' events: the drift check's reference, logged with the model."""
    return frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)
