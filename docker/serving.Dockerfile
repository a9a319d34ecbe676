# Prediction service image: the pinned environment (CPU PyTorch, for models of the torch
# family), the ctpipe package and the Feast feature repo; it runs `python -m ctpipe.serving`
# (FastAPI under uvicorn) on port 8000. Configuration is environment only, as for the DAGs:
# the online store, the MLflow server, the lake (for the prediction log) and the token.
#
# Build from the repository root:
#   docker build -f docker/serving.Dockerfile -t ctpipe-serving:0.1.0 .
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    CTPIPE_FEATURE_REPO=/opt/ctpipe/feature_repo \
    CTPIPE_STATE_DIR=/opt/ctpipe/state

# Same uid/gid as the Airflow and training images, so all of them read and write the lake alike.
RUN useradd --create-home --uid 50000 --gid 0 ctpipe
WORKDIR /opt/ctpipe

COPY requirements.txt .
# torch first, from the chosen index alone; requirements.txt pins its dependencies.
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' requirements.txt)" \
 && pip install -r requirements.txt

COPY pyproject.toml .
COPY include include
COPY feature_repo feature_repo
RUN pip install --no-deps . \
 && python -c "import ctpipe.serving.app, torch, feast, mlflow" \
 && mkdir -p /opt/ctpipe/state \
 && chown 50000:0 /opt/ctpipe/state

USER 50000
EXPOSE 8000
# Ready: a champion loaded and the online store answering (no curl in a slim image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
ENTRYPOINT ["python", "-m", "ctpipe.serving", "--host", "0.0.0.0", "--port", "8000"]
