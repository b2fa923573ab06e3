# syntax=docker/dockerfile:1
# The mssql2pg pipeline image, used by compose/compose.yaml (service `pipeline`).
#
#   docker build -t mssql2pg:local .
#   docker run --rm mssql2pg:local --help
#
# Two stages: the first builds and installs the package (and its pure-Python dependencies) into a prefix;
# the second copies only that prefix onto a clean slim base, so no build tool ends up in the image.
# The base is pinned to an exact Python patch release and Debian release; bump both on purpose.

FROM python:3.12.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --prefix=/install .

FROM python:3.12.11-slim-bookworm
LABEL org.opencontainers.image.title="mssql2pg" \
      org.opencontainers.image.description="Exactly-once, transaction-atomic CDC from SQL Server into PostgreSQL" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
# A fixed, unprivileged uid: the process never needs root, and secrets mounted 0644 stay readable.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mssql2pg
USER 10001:10001
WORKDIR /tmp
# /metrics, /healthz, /readyz (the `http` section of the config).
EXPOSE 9400
# python-slim has no curl: probe liveness with the standard library.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=6 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=3).status != 200)"]
ENTRYPOINT ["mssql2pg"]
CMD ["run", "--config", "/etc/mssql2pg/pipeline.yaml"]
