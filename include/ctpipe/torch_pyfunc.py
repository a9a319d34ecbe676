"""The torch family as an MLflow pyfunc model: ``predict`` returns P(positive) for each row.

Imports mlflow at module level; only training and scoring import this module.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import mlflow
import numpy as np

from ctpipe.models import TorchTabularClassifier


class FailureProbabilityModel(mlflow.pyfunc.PythonModel):
    def __init__(self, classifier: TorchTabularClassifier):
        self.classifier = classifier

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.classifier.predict_proba(model_input)[:, 1]


def log_torch_model(classifier: TorchTabularClassifier, signature: Any, input_example: Any) -> Any:
    from ctpipe.training import model_requirements

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=FailureProbabilityModel(classifier),
        signature=signature,
        input_example=input_example,
        # The classifier's class lives in ctpipe: the serving image installs the package.
        pip_requirements=[f"torch=={version('torch').split('+')[0]}", *model_requirements()],
    )
