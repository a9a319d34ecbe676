"""The two model families and how a trained model scores rows.

* ``sklearn`` (default): imputation and one-hot encoding, then a histogram
  gradient-boosted tree ensemble, as one scikit-learn ``Pipeline``.
* ``torch``: the same inputs, imputed, scaled and one-hot encoded, into a small
  feed-forward network trained with binary cross-entropy. It runs on a GPU
  when one is present and on the CPU otherwise.

Both predict the probability of the dataset's positive label (a failed QC in the example).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ctpipe.records import FAMILIES, Family

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

__all__ = ["FAMILIES", "Family"]


@dataclass(frozen=True)
class SklearnParams:
    max_iter: int = 300
    learning_rate: float = 0.06
    max_leaf_nodes: int = 31
    l2_regularization: float = 0.0


@dataclass(frozen=True)
class TorchParams:
    hidden_units: int = 64
    hidden_layers: int = 2
    dropout: float = 0.1
    epochs: int = 25
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4


PARAMS = {"sklearn": SklearnParams, "torch": TorchParams}


def model_requirements(family: Family) -> list[str]:
    """What a logged model needs to load, pinned to this environment.

    Stating them spares MLflow a slow inference that loads the model. The torch family's
    classifier class lives in ctpipe: the serving image installs the package.
    """
    from importlib.metadata import version

    pinned = [f"{name}=={version(name)}" for name in ("scikit-learn", "pandas", "numpy", "scipy")]
    return [f"torch=={version('torch').split('+')[0]}", *pinned] if family == "torch" else pinned


def parse_params(family: Family, overrides: dict[str, Any]) -> SklearnParams | TorchParams:
    """The family's hyperparameters, with ``name=value`` overrides cast to each field's type."""
    if family not in PARAMS:
        raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
    cls = PARAMS[family]
    known = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown {family} hyperparameter(s) {unknown}; known: {sorted(known)}")
    cast = {}
    for name, value in overrides.items():
        kind = int if known[name] == "int" else float
        try:
            cast[name] = kind(value)
        except ValueError:
            raise ValueError(f"{family} hyperparameter {name} must be {kind.__name__}, got {value!r}") from None
    return cls(**cast)


def preprocessor(numeric: list[str], categorical: list[str], scale: bool) -> ColumnTransformer:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", add_indicator=True))]
    if scale:
        steps.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [
            ("numeric", Pipeline(steps), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )


def train_sklearn(
    train: pd.DataFrame, label: pd.Series, numeric: list[str], categorical: list[str], params: SklearnParams, seed: int
) -> Pipeline:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    model = Pipeline(
        [
            ("prepare", preprocessor(numeric, categorical, scale=False)),
            ("classify", HistGradientBoostingClassifier(**asdict(params), early_stopping=False, random_state=seed)),
        ]
    )
    return model.fit(train[numeric + categorical], label)


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchTabularClassifier:
    """A fitted preprocessor and a feed-forward network, with ``predict_proba`` like scikit-learn's."""

    def __init__(self, prepare: ColumnTransformer, network: Any, columns: list[str]):
        self.prepare = prepare
        self.network = network
        self.columns = columns

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        import torch

        inputs = torch.as_tensor(self.prepare.transform(frame[self.columns]), dtype=torch.float32)
        self.network.eval()
        with torch.no_grad():
            device = next(self.network.parameters()).device
            positive = torch.sigmoid(self.network(inputs.to(device))).squeeze(1).cpu().numpy()
        return np.column_stack([1 - positive, positive])


def network(inputs: int, params: TorchParams) -> Any:
    from torch import nn

    layers: list[Any] = []
    width = inputs
    for _ in range(params.hidden_layers):
        layers += [nn.Linear(width, params.hidden_units), nn.ReLU(), nn.Dropout(params.dropout)]
        width = params.hidden_units
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def train_torch(
    train: pd.DataFrame, label: pd.Series, numeric: list[str], categorical: list[str], params: TorchParams, seed: int
) -> TorchTabularClassifier:
    import torch

    torch.manual_seed(seed)
    device = torch_device()
    columns = numeric + categorical
    prepare = preprocessor(numeric, categorical, scale=True).fit(train[columns])
    inputs = torch.as_tensor(prepare.transform(train[columns]), dtype=torch.float32)
    targets = torch.as_tensor(label.to_numpy(), dtype=torch.float32).unsqueeze(1)
    net = network(inputs.shape[1], params).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    # Weight the rarer class up, so the network does not settle for predicting the majority.
    positive_weight = torch.tensor([(len(targets) - targets.sum()) / max(targets.sum(), 1.0)], device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=positive_weight)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(net(inputs[batch].to(device)), targets[batch].to(device))
            loss.backward()
            optimiser.step()
    return TorchTabularClassifier(prepare, net.cpu(), columns)


def evaluate(label: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Holdout metrics; ``roc_auc`` is the one promotion compares."""
    from sklearn.metrics import accuracy_score, average_precision_score, brier_score_loss, log_loss, roc_auc_score

    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(roc_auc_score(label, probability)),
        "average_precision": float(average_precision_score(label, probability)),
        "log_loss": float(log_loss(label, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(label, probability)),
        "accuracy": float(accuracy_score(label, probability >= 0.5)),
        "positive_rate": float(np.mean(label)),
        "rows": float(len(label)),
    }


def failure_probability(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """P(positive) from a loaded MLflow pyfunc model of either family."""
    output = np.asarray(model.predict(frame))
    return output[:, 1] if output.ndim == 2 else output.ravel()
