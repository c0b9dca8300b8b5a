# syntax=docker/dockerfile:1.7
# One Dockerfile, four images (build one with `docker build --target NAME .`, or let docker compose do it):
#   cpu         the gateway and the CPU worker: ONNX Runtime, no torch (about 400 MB instead of 3 GB)
#   worker-gpu  the CUDA worker: the same code plus torch (its PyPI wheel brings the CUDA libraries)
#   flower      optional Celery monitoring, with the same Celery version as the workers
# Build stages hold pip, compilers' leftovers and caches; the final images hold a venv and the code only,
# and run as an unprivileged user that cannot write to the code or the model.

ARG PYTHON=python:3.11-slim-bookworm

# --- build: a virtualenv with the serving dependencies, then the project installed editable -------------
FROM ${PYTHON} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY phonereader phonereader
COPY api api
COPY worker worker
COPY training training
COPY bench bench
COPY web web
COPY models models
# Editable, so the package finds models/ and web/ beside it (phonereader.ROOT) exactly as in a checkout.
RUN pip install --no-deps -e . && python -m compileall -q /app \
    && chmod -R a+rX,go-w /app /opt/venv  # readable by the runtime user, writable by root only

FROM build AS build-gpu
RUN pip install "torch>=2.4" "safetensors>=0.4" && chmod -R a+rX,go-w /opt/venv

FROM build AS build-flower
RUN pip install "flower>=2.0" && chmod -R a+rX,go-w /opt/venv

# --- runtime: the venv and the code, read-only for the user that runs them -----------------------------
FROM ${PYTHON} AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /home/phonereader --create-home phonereader
# MALLOC_ARENA_MAX: glibc gives every busy thread its own malloc arena; a worker's task threads then creep up
# in resident memory (measured by `phonereader bench soak`). Two arenas cost nothing measurable.
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    PHONEREADER_HOST=0.0.0.0 PHONEREADER_PORT=8000 PHONEREADER_STATE_DIR=/home/phonereader/state
WORKDIR /app
EXPOSE 8000

FROM runtime AS cpu
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
USER phonereader
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=3)"]
CMD ["phonereader", "gateway"]

FROM runtime AS worker-gpu
COPY --from=build-gpu /opt/venv /opt/venv
COPY --from=build-gpu /app /app
ENV PHONEREADER_DEVICE=cuda PHONEREADER_RUNTIME=torch
USER phonereader
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 CMD ["phonereader", "worker-health"]
CMD ["phonereader", "worker"]

FROM runtime AS flower
COPY --from=build-flower /opt/venv /opt/venv
USER phonereader
EXPOSE 5555
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5555/healthcheck', timeout=3)"]
CMD ["sh", "-c", "exec celery --broker \"$REDIS_URL\" flower --port=5555 ${FLOWER_AUTH:+--basic-auth=$FLOWER_AUTH}"]
