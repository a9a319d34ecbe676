# Training image: the pinned environment (CPU torch by default) and the ctpipe package.
# The training DAG runs it as `python -m ctpipe.training --plan '<json>'` through the
# KubernetesPodOperator; the result JSON lands in /airflow/xcom/return.json.
# Build from the repository root:  docker build -f docker/training.Dockerfile -t ctpipe-training .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CTPIPE_FEATURE_REPO=/opt/ctpipe/feature_repo

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libgomp1 \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 50000 ctpipe
WORKDIR /opt/ctpipe

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY pyproject.toml .
COPY include include
COPY feature_repo feature_repo
RUN pip install --no-deps . && mkdir -p /airflow/xcom && chown ctpipe /airflow/xcom

USER ctpipe
ENTRYPOINT []
CMD ["python", "-m", "ctpipe.training", "--help"]
