"""ctpipe: the continuous-training pipeline's logic, importable without Airflow.

Modules are named after the stage they serve: ``ingest`` (extraction of one
data interval), ``validation`` (the Great Expectations gate), ``features``
(point-in-time aggregates) and ``feature_store`` (Feast). ``datasets``
describes the data, ``source`` the SQL source, ``lake`` where partitions live,
``settings`` how a deployment is configured and ``dag_policy`` what every DAG
shares. ``seed`` and ``local_run`` are the command-line entry points.
"""
