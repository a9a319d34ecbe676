"""ctpipe: the continuous-training pipeline's logic, importable without Airflow.

Modules are named after the stage they serve: ``ingest`` (extraction of one data
interval), ``validation`` (the Great Expectations gate), ``features`` (point-in-time
aggregates), ``feature_store`` (Feast), ``training`` (the entrypoint), ``evaluation``,
``promotion``, ``registry`` and ``review`` (from a trained model to champion), ``drift`` and
``monitoring``. What they share: ``records`` (what tasks hand each other), ``settings``
(every setting, read in one place), ``services`` (is a service there?), ``artifacts``
(where every report lives), ``lake``, ``source``, ``datasets`` and ``dag_policy``. ``seed``,
``local_run``, ``registry`` and ``settings`` also run as ``python -m`` commands.
"""
