# alb-jobs-exporter container image.
#
#   docker build -t alb-jobs-exporter .
#   docker run --read-only -p 9868:9868 \
#     -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET alb-jobs-exporter
#   docker run --read-only -p 9868:9868 alb-jobs-exporter --demo   # no credentials needed
#
# Stage 1 builds the project wheel and installs it into /opt/venv; stage 2 copies
# only that venv onto a clean python:3.11-slim. Both stages use the same base
# image, so the venv's interpreter symlinks stay valid.
#
# Build hosts that cannot reach Docker Hub (many in mainland China) take the same image
# from a mirror, e.g. one synced into their ACR instance, and pip's index likewise:
#   docker build --build-arg BASE_IMAGE=registry.cn-hangzhou.aliyuncs.com/<ns>/python:3.11-slim \
#     --build-arg PIP_INDEX_URL=https://mirrors.aliyun.com/pypi/simple/ -t alb-jobs-exporter .

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build

# "" keeps pip's default index (PyPI).
ARG PIP_INDEX_URL=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# The wheel is built from the sources alone (no editable install, no build
# artefacts copied), then installed with its runtime dependencies only; pip and
# setuptools leave the venv, the runtime does not need them.
RUN if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels /src \
    && /opt/venv/bin/pip install /wheels/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/alb-jobs-exporter --version

FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="alb-jobs-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Alibaba Cloud ALB asynchronous jobs (ListAsynJobs)" \
      org.opencontainers.image.licenses="Apache-2.0"

# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only; pip already
# compiled the bytecode at install time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=build /opt/venv /opt/venv
COPY docker/config.yaml /etc/alb-jobs-exporter/config.yaml

# nobody:nogroup, numeric so that Kubernetes runAsNonRoot can verify it.
USER 65534:65534
EXPOSE 9868

# No curl in the image: the interpreter does the probe. Override HEALTHCHECK_URL
# when you change --web.listen-address.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:9868/-/healthy'), timeout=4)"]

ENTRYPOINT ["/opt/venv/bin/alb-jobs-exporter"]
CMD ["--config.file=/etc/alb-jobs-exporter/config.yaml"]
