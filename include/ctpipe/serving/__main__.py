"""``python -m ctpipe.serving [--host H] [--port P]``: the prediction service under uvicorn (``make serve``).

uvicorn handles SIGTERM gracefully: it stops accepting connections, lets the requests in
flight finish (up to ``--graceful-seconds``), then the app's shutdown writes the prediction
log's buffer.

The models run on one OpenMP thread unless ``OMP_NUM_THREADS`` says otherwise
(``ctpipe.settings.single_threaded_models``).
"""

from __future__ import annotations

import argparse
import logging

from ctpipe.settings import single_threaded_models


def main(argv: list[str] | None = None) -> None:
    single_threaded_models()  # before any model library is imported
    import uvicorn

    from ctpipe.serving.json_logs import log_config

    parser = argparse.ArgumentParser(description="Run the prediction service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--graceful-seconds", type=float, default=20.0, help="for requests in flight at SIGTERM")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.captureWarnings(True)  # a library's warning is a JSON line too
    uvicorn.run(
        "ctpipe.serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=log_config(args.log_level.upper()),
        timeout_graceful_shutdown=args.graceful_seconds,
        access_log=False,
    )


if __name__ == "__main__":
    main()
