"""The prediction service: champion and challenger answering requests with Feast features.

``python -m ctpipe.serving`` (``make serve``) runs ``app.create_app()`` under uvicorn. Each
module has one role:

* ``schema.py``: the request and response bodies, generated from the dataset spec;
* ``traffic.py``: the traffic policy (champion only, shadow, canary, A/B), kept as a tag on
  the registered model, and the sticky assignment of an entity to a variant;
* ``live_models.py``: the models behind the ``champion`` and ``challenger`` aliases, reloaded
  in the background and swapped atomically when an alias or the policy moves;
* ``prediction_log.py``: every prediction appended to hourly Parquet partitions of the lake;
* ``metrics.py``: the Prometheus metrics; ``json_logs.py``: one JSON object per log line;
* ``app.py``: the FastAPI application that ties them together;
* ``upstream.py``: the service run as its own process, and events sent to it as a caller
  would (the main job and the tests use both).

The model input is assembled by ``ctpipe.training_set.model_input``, the function training
calls, from the event in the request and the entity's online features.
"""
