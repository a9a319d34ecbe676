"""The service's models follow the aliases on a real MLflow store; a version that cannot answer never serves."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from ctpipe.datasets import get_dataset
from ctpipe.datasets.lab_qc_generator import generate
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.training_set import model_columns, model_input

DATASET = get_dataset("lab_qc")
NAME = "live_models_test"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two versions of a small lab model: one logged as training logs it, one with integer count columns."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from ctpipe.models import SklearnParams, train_sklearn
    from ctpipe.training import SKOPS_TRUSTED_TYPES

    root = tmp_path_factory.mktemp("live")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("live", artifact_location=(root / "artifacts").as_uri())
    samples, results = generate(GeneratorConfig(start=date(2026, 1, 1), days=4, rows_per_day=200, bad_row_share=0))
    frame = samples.merge(results[["sample_id", "qc_outcome"]], on="sample_id")
    rng = np.random.default_rng(0)
    for aggregate in DATASET.aggregates:
        frame[aggregate.name] = rng.integers(0, 50, size=len(frame))  # counts, as Feast may return them
    label = (frame["qc_outcome"] == "failed").astype(int)
    numeric, categorical = model_columns(DATASET)
    uris = []
    for inputs in (model_input(DATASET, frame), frame[numeric + categorical]):  # the second keeps int64 columns
        model = train_sklearn(inputs, label, numeric, categorical, SklearnParams(max_iter=20), 0)
        example = inputs.head(5)
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict_proba(example)),
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
        uris.append(info.model_uri)
    client.create_registered_model(NAME)
    good, bad = (client.create_model_version(NAME, u, u.split("/")[1]).version for u in uris)
    client.set_registered_model_alias(NAME, "champion", good)
    yield client, str(good), str(bad)
    mlflow.set_tracking_uri(None)


def live(client):
    import mlflow

    from ctpipe.serving.app import scores_its_example
    from ctpipe.serving.live_models import LiveModels

    return LiveModels(
        client, NAME, mlflow.pyfunc.load_model, 60.0, check=lambda model: scores_its_example(DATASET, model)
    )


def test_an_alias_move_is_followed_and_a_version_that_cannot_answer_is_refused(registry):
    from ctpipe.serving.traffic import TAG, TrafficPolicy

    client, good, bad = registry
    models = live(client)
    assert models.refresh() and models.snapshot.champion.version == good
    before = models.snapshot
    client.set_registered_model_alias(NAME, "champion", bad)
    with pytest.raises(Exception, match=r"(?i)schema"):  # MLflow refuses the float input of an int64 column
        models.refresh()
    assert models.snapshot is before  # nothing swapped: the good version still answers
    client.set_registered_model_alias(NAME, "champion", good)
    assert not models.refresh()  # back where it was: nothing to change, nothing reloaded
    assert models.snapshot.champion is before.champion

    # A challenger is loaded only when the policy needs one.
    client.set_registered_model_alias(NAME, "challenger", good)
    client.set_registered_model_tag(NAME, TAG, TrafficPolicy("shadow").to_tag())
    models.refresh()
    assert models.snapshot.challenger is None  # the same version as the champion: no challenger
