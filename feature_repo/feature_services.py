"""Versioned feature services: what a model version reads. Add ``_v2`` beside ``_v1``; never edit a released one."""

from feast import FeatureService
from lab_features import lab_features_fv

from ctpipe.datasets import get_dataset

lab_quality_v1 = FeatureService(
    name=get_dataset().feature_service,
    features=[lab_features_fv],
    description="Lab quality features for the QC-failure model, version 1",
)
