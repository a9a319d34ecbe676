# MLflow tracking server and model registry: PostgreSQL backend store, artifacts served
# by the server itself from /mlartifacts (a volume). The MLflow and psycopg versions, and
# everything they pull in, come from requirements.txt, so the server runs the same MLflow
# as the pipeline's clients.
#
# Build from the repository root:
#   docker build -f docker/mlflow.Dockerfile -t ctpipe-mlflow:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY requirements.txt /opt/mlflow/requirements.txt
# requirements.txt as constraints: only mlflow, the psycopg driver and the Prometheus exporter
# that `mlflow server --expose-prometheus` uses are installed, each at its pinned version, with
# their dependencies at theirs.
RUN pip install -c /opt/mlflow/requirements.txt "mlflow[auth]" "psycopg[binary]" prometheus-flask-exporter \
 && useradd --create-home --uid 10001 --gid 0 mlflow \
 && mkdir -p /mlartifacts /mlflow-auth \
 && chown 10001:0 /mlartifacts /mlflow-auth

USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]
