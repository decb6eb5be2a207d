# syntax=docker/dockerfile:1
# leopard-etl as a site runs it: the wheel (with mappings/ and sql/ inside), installed
# into a virtual environment of a slim Python image, run as a non-root user.
#
#   docker build -t leopard-etl:0.1.0 .
#   docker run --rm -v "$PWD/site:/config:ro" -v "$PWD/out:/out" \
#       -e LEOPARD_WAREHOUSE_PASSWORD leopard-etl:0.1.0 run --config /config/leopard.yaml
#
# No secret is baked in: passwords, tokens and the pseudonymisation key come from the
# environment or files named in the config (docs/configuration.md) at run time.
# tests/packaging/ runs the same build and install commands in a fresh venv.

ARG PYTHON_VERSION=3.11

# ---- build: sdist, then the wheel from the sdist (python -m build does both) --------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m pip install "build>=1"
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src/ src/
COPY mappings/ mappings/
COPY sql/ sql/
RUN python -m build --outdir /dist .

# ---- runtime -------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG EXTRAS=postgres
LABEL org.opencontainers.image.title="leopard-etl" \
      org.opencontainers.image.description="FHIR R4 / OMOP CDM to the LEOPARD cohort" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PATH=/opt/leopard/bin:$PATH
COPY --from=build /dist/ /tmp/dist/
RUN python -m venv /opt/leopard \
    && /opt/leopard/bin/pip install "$(ls /tmp/dist/leopard_etl-*.whl)[${EXTRAS}]" \
    && rm -rf /tmp/dist \
    && groupadd --system --gid 10001 leopard \
    && useradd --system --uid 10001 --gid leopard --create-home --home-dir /home/leopard leopard \
    && mkdir -p /config /out \
    && chown leopard:leopard /out
# the loop the Docker Compose service runs on a schedule (docker/README.md); git keeps it executable
COPY docker/schedule.sh /usr/local/bin/leopard-etl-schedule
USER 10001:10001
WORKDIR /out
# /config: leopard.yaml and site mapping folders (mount read-only); /out: outputs (and a DuckDB warehouse)
VOLUME ["/config", "/out"]
ENTRYPOINT ["leopard-etl"]
CMD ["run", "--config", "/config/leopard.yaml"]
