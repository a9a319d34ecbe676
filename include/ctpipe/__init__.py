"""ctpipe: the continuous-training pipeline's logic, importable without Airflow.

Modules are named after the stage they serve: ``ingest``, ``validation``,
``features``, ``feature_store``; ``datasets`` describes the data, ``lake`` where
it is kept, ``settings`` how a deployment is configured.
"""
