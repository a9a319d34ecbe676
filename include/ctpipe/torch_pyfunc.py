"""The torch family as an MLflow pyfunc model: ``predict`` returns P(positive) for each row.

Imports mlflow at module level; only training and scoring import this module.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np

from ctpipe.artifacts import MODEL
from ctpipe.models import TorchTabularClassifier, model_requirements


class FailureProbabilityModel(mlflow.pyfunc.PythonModel):
    def __init__(self, classifier: TorchTabularClassifier):
        self.classifier = classifier

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.classifier.predict_proba(model_input)[:, 1]


def log_torch_model(classifier: TorchTabularClassifier, signature: Any, input_example: Any) -> Any:
    """Log to the active run, as ``mlflow.sklearn.log_model`` does for the other family."""
    return mlflow.pyfunc.log_model(
        name=MODEL,
        python_model=FailureProbabilityModel(classifier),
        signature=signature,
        input_example=input_example,
        pip_requirements=model_requirements("torch"),
    )
