"""Both model families train and predict on the CPU, from generated data."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ctpipe.datasets import get_dataset
from ctpipe.datasets.lab_qc_generator import generate
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.models import (
    SklearnParams,
    TorchParams,
    evaluate,
    parse_params,
    torch_device,
    train_sklearn,
    train_torch,
)
from ctpipe.training_set import model_columns

DATASET = get_dataset("lab_qc")
NUMERIC, CATEGORICAL = model_columns(DATASET)


@pytest.fixture(scope="module")
def frames():
    samples, results = generate(GeneratorConfig(start=date(2026, 1, 1), days=10, rows_per_day=300, bad_row_share=0))
    frame = samples.merge(results[["sample_id", "qc_outcome"]], on="sample_id")
    rng = np.random.default_rng(0)
    for aggregate in DATASET.aggregates:  # the lab aggregates Feast would add
        frame[aggregate.name] = rng.normal(size=len(frame))
    frame["label"] = (frame["qc_outcome"] == "failed").astype(int)
    cut = int(len(frame) * 0.8)
    return frame.iloc[:cut], frame.iloc[cut:]


def test_sklearn_learns_the_signal(frames):
    train, holdout = frames
    model = train_sklearn(train, train["label"], NUMERIC, CATEGORICAL, SklearnParams(max_iter=60), seed=0)
    probability = model.predict_proba(holdout[NUMERIC + CATEGORICAL])[:, 1]
    metrics = evaluate(holdout["label"].to_numpy(), probability)
    assert metrics["roc_auc"] > 0.65, metrics
    assert 0 <= probability.min() and probability.max() <= 1


def test_torch_trains_and_predicts_on_the_cpu(frames):
    train, holdout = frames
    assert torch_device() == ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    model = train_torch(train, train["label"], NUMERIC, CATEGORICAL, TorchParams(epochs=8), seed=0)
    probability = model.predict_proba(holdout[NUMERIC + CATEGORICAL])
    assert probability.shape == (len(holdout), 2)
    assert np.allclose(probability.sum(axis=1), 1)
    assert evaluate(holdout["label"].to_numpy(), probability[:, 1])["roc_auc"] > 0.6
    # Unknown categories and missing values at prediction time do not break it.
    odd = holdout.head(3).copy()
    odd["courier"] = "Drone Drop"
    odd["rin"] = np.nan
    assert np.isfinite(model.predict_proba(odd)).all()


def test_torch_training_is_reproducible(frames):
    train, holdout = frames
    first = train_torch(train, train["label"], NUMERIC, CATEGORICAL, TorchParams(epochs=2), seed=3)
    second = train_torch(train, train["label"], NUMERIC, CATEGORICAL, TorchParams(epochs=2), seed=3)
    columns = NUMERIC + CATEGORICAL
    assert np.allclose(first.predict_proba(holdout[columns]), second.predict_proba(holdout[columns]))


def test_hyperparameters_are_typed_and_checked():
    assert parse_params("sklearn", {"max_iter": "50", "learning_rate": "0.1"}) == SklearnParams(
        max_iter=50, learning_rate=0.1
    )
    assert parse_params("torch", {"epochs": "3"}).epochs == 3
    with pytest.raises(ValueError, match=r"unknown torch hyperparameter\(s\) \['max_iter'\]"):
        parse_params("torch", {"max_iter": "3"})


def test_metrics_of_a_perfect_and_a_useless_scorer():
    label = np.array([0, 0, 1, 1])
    assert evaluate(label, np.array([0.1, 0.2, 0.8, 0.9]))["roc_auc"] == 1.0
    assert evaluate(label, np.full(4, 0.5))["roc_auc"] == 0.5
    assert pd.Series(evaluate(label, np.full(4, 0.5))).notna().all()
