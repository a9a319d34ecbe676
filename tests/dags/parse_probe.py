"""Parse a DAG folder the way the DAG processor does and report what parsing cost and touched.

    python -m tests.dags.parse_probe <dag folder>

Prints one JSON object: DAGs found, import errors, heavy modules that ended up
imported, and seconds spent. Run in a fresh interpreter so that nothing was
imported before.
"""

from __future__ import annotations

import json
import sys
import time

HEAVY = ("feast", "mlflow", "great_expectations", "evidently", "torch", "sklearn")


def main(folder: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=folder)
    seconds = time.perf_counter() - started
    report = {
        "dags": sorted(bag.dags),
        "files": {dag_id: dag.fileloc for dag_id, dag in bag.dags.items()},
        "import_errors": {str(k): v for k, v in bag.import_errors.items()},
        "heavy_modules": sorted(m for m in HEAVY if m in sys.modules),
        "seconds": seconds,
    }
    print("PROBE " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
