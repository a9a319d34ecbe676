# Airflow image for production: Airflow 3.3 with the pinned environment (CPU PyTorch),
# the ctpipe package, the DAGs and the Feast feature repo baked in. Every Airflow component
# (api-server, scheduler, dag-processor, triggerer, KubernetesExecutor worker pods) and the
# Feast feature server run this image.
#
# Build from the repository root (docker/airflow.Dockerfile.dockerignore keeps state/ and
# .venv/ out of the build context):
#   docker build -f docker/airflow.Dockerfile -t ctpipe-airflow:0.1.0 .
# The base tag must match the apache-airflow pin in requirements.txt (tests/deploy checks it).
FROM apache/airflow:3.3.2-python3.11

# PyPI's Linux torch wheels bundle CUDA (several GB); Airflow's workers only need the CPU
# build of the same version. Point this at another PyTorch index to change the build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# The base image installs Python packages into the airflow user's virtualenv (~/.local);
# its pip refuses to run as root, so everything below runs as airflow (uid 50000, gid 0).
USER 50000

COPY --chown=50000:0 requirements.txt /opt/ctpipe/requirements.txt
# torch first, from the CPU index alone and without dependencies (requirements.txt pins them);
# its `torch==X` pin is then satisfied by the installed X+cpu build. apache-airflow is named
# again at the base image's version so that nothing can move Airflow itself.
RUN pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" \
        "$(grep '^torch==' /opt/ctpipe/requirements.txt)" \
 && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/ctpipe/requirements.txt

COPY --chown=50000:0 pyproject.toml /opt/ctpipe/pyproject.toml
COPY --chown=50000:0 include /opt/ctpipe/include
RUN pip install --no-cache-dir --no-deps /opt/ctpipe \
 && python -c "import ctpipe.training, ctpipe.feature_store, torch, feast, mlflow" \
 && mkdir -p /opt/ctpipe/state

COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins
COPY --chown=50000:0 feature_repo /opt/airflow/feature_repo

# feature_repo/ lives apart from the installed package; settings.py reads its place from here.
# /opt/ctpipe/state exists, owned by airflow, so a named volume mounted there starts writable.
ENV CTPIPE_FEATURE_REPO=/opt/airflow/feature_repo \
    CTPIPE_STATE_DIR=/opt/ctpipe/state \
    CTPIPE_LAKE_DIR=/opt/ctpipe/state/lake
