# One image for both roles; the command picks one:
#   docker run -p 127.0.0.1:8000:8000 mlplab            # the API (the default command: mlplab api)
#   docker run mlplab mlplab worker                     # a training worker
# docker-compose.yml runs both on one volume (and PostgreSQL with --profile postgres).

# --- build: a virtual environment with the CPU build of torch and mlplab, nothing else ---------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# torch first, from PyTorch's CPU index: PyPI's Linux wheel is the CUDA build (several GB more).
# Its own layer, so changing mlplab's code does not download it again. pyproject pins torch==2.13.0,
# which this 2.13.0+cpu satisfies: the next step keeps it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Every other dependency has a binary wheel for CPython 3.11 (psycopg[binary] bundles libpq):
# no compiler is needed here, and none reaches the final image anyway.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
RUN pip install . \
 && pip uninstall -y pip setuptools wheel

# --- the image: the environment, a user, and nothing to build with ------------------------------
FROM python:3.11-slim-bookworm

RUN groupadd --system --gid 10001 mlplab \
 && useradd --system --uid 10001 --gid mlplab --home-dir /data --no-create-home --shell /usr/sbin/nologin mlplab \
 && mkdir -p /data/datasets \
 && chown -R mlplab:mlplab /data

COPY --from=build /opt/venv /opt/venv

# MLPLAB_HOST=0.0.0.0: inside a container the API must listen on every interface to be reached
# through a published port. Publishing it beyond this machine? Set MLPLAB_API_TOKEN.
# /data is owned by the mlplab user, so a named volume mounted there starts writable: the SQLite
# file and the datasets (downloaded on first use, or mounted read-only at /data/datasets) live there.
# /data/datasets exists from the start: `docker compose cp ./mnist api:/data/datasets/` needs it.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLPLAB_HOST=0.0.0.0 \
    MLPLAB_PORT=8000 \
    MLPLAB_DATABASE_URL=sqlite:////data/mlplab.db \
    MLPLAB_DATA_DIR=/data/datasets

USER mlplab
WORKDIR /data
EXPOSE 8000

# The API's readiness (service/health.py: light to import, urllib as the image has no curl). A worker serves
# no HTTP: docker-compose.yml gives the worker service its own check (`python -m service.health --worker`).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "service.health"]

CMD ["mlplab", "api"]
