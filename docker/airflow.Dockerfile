# Airflow image for production: the pinned environment plus the ctpipe package.
# Build from the repository root:  docker build -f docker/airflow.Dockerfile -t ctpipe-airflow .
FROM apache/airflow:3.3.2-python3.11

USER root
# Build tools for any wheel that has to compile; removed apt lists keep the layer small.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt /opt/ctpipe/requirements.txt
# apache-airflow itself is already in the base image at the pinned version.
RUN grep -v '^apache-airflow==' /opt/ctpipe/requirements.txt > /tmp/requirements.txt \
 && pip install --no-cache-dir "apache-airflow==3.3.2" -r /tmp/requirements.txt

COPY --chown=airflow:root pyproject.toml /opt/ctpipe/
COPY --chown=airflow:root include /opt/ctpipe/include
RUN pip install --no-cache-dir --no-deps /opt/ctpipe

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root feature_repo /opt/airflow/feature_repo

ENV CTPIPE_FEATURE_REPO=/opt/airflow/feature_repo
