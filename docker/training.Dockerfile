# Training image: the pinned environment (CPU PyTorch by default) and the ctpipe package.
# With CTPIPE_TRAINING_BACKEND=kubernetes the training DAG runs it as a KubernetesPodOperator,
# `python -m ctpipe.training --plan '<json>' --result-path /airflow/xcom/return.json`; the
# operator's xcom sidecar reads the result JSON from there.
#
# Build from the repository root:
#   docker build -f docker/training.Dockerfile -t ctpipe-training:0.1.0 .
# For GPU nodes (CTPIPE_TRAINING_GPUS > 0) build against one of PyTorch's CUDA indexes that
# carries the pinned torch version (.../whl/cuXXX instead of .../whl/cpu):
#   docker build -f docker/training.Dockerfile --build-arg TORCH_INDEX_URL=<cuda index> \
#     -t ctpipe-training:0.1.0-cuda .
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    CTPIPE_FEATURE_REPO=/opt/ctpipe/feature_repo

# Same uid/gid as the Airflow image, so both read and write the shared lake alike.
RUN useradd --create-home --uid 50000 --gid 0 ctpipe
WORKDIR /opt/ctpipe

COPY requirements.txt .
# torch first, from the chosen index alone; requirements.txt pins its dependencies and its
# `torch==X` pin is then satisfied by the installed X+cpu (or X+cuXXX) build.
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' requirements.txt)" \
 && pip install -r requirements.txt

COPY pyproject.toml .
COPY include include
COPY feature_repo feature_repo
RUN pip install --no-deps . \
 && python -c "import ctpipe.training, torch, feast, mlflow" \
 && mkdir -p /airflow/xcom \
 && chown 50000:0 /airflow/xcom

USER 50000
ENTRYPOINT ["python", "-m", "ctpipe.training"]
CMD ["--help"]
