# The code location's image: Dagster's gRPC code server for zenskar_pipeline.definitions on port 4000. On
# Kubernetes every run is a pod of this same image (K8sRunLauncher), which loads the definitions again.
#
# Build from the repository root once the discovery cache exists (docs/deploying.md):
#   zenskar-pipeline discover          # writes .zenskar-pipeline/discovery.json beside streams.yaml
#   docker build -t <registry>/zenskar-pipeline:<tag> .
#
# The discovery cache is made before the build, by whoever has Databricks credentials (CI), and copied in;
# not at build time, not at start:
# - at start, each pod would discover for itself: the code server's cache would be missing in the run pods,
#   or differ from it when the source changed in between, and every pod would need Databricks to start;
# - at build time, the Databricks credentials would be in the build, where its cache and logs keep them.
# So the code server and every run pod load identical definitions with no call to Databricks; a schema change
# means discover, rebuild and redeploy. The build fails when the cache is missing or does not fit the streams
# file (the last RUN loads the definitions).
#
# Nothing of the dev tools comes in: the image installs requirements-deploy.lock (the product and its k8s
# extra) and then the product alone, not its dev extra nor devtools/ (the local warehouse, sqlglot).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
RUN python -m venv /opt/venv
COPY requirements-deploy.lock ./
# The lock pins every dependency, so nothing is resolved; `pip check` fails the build if it misses one.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -r requirements-deploy.lock
COPY pyproject.toml README.md ./
COPY zenskar_pipeline ./zenskar_pipeline
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . && /opt/venv/bin/pip check

FROM python:3.11-slim
LABEL org.opencontainers.image.title="zenskar-pipeline"
# A fixed numeric user, so that Kubernetes can check runAsNonRoot. DAGSTER_HOME is the Helm chart's default
# (global.dagsterHome), where run pods get the instance's dagster.yaml.
RUN useradd --uid 10001 --user-group --create-home zenskar \
    && mkdir -p /opt/dagster/dagster_home && chown 10001:10001 /opt/dagster/dagster_home
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ZENSKAR_PIPELINE_CONFIG=/opt/zenskar-pipeline/streams.yaml
WORKDIR /opt/zenskar-pipeline
# Another streams file: --build-arg STREAMS_FILE=... DISCOVERY_CACHE=... (and let both through .dockerignore).
# The cache stays beside the streams file, where the definitions look for it: ZENSKAR_PIPELINE_STATE unset.
ARG STREAMS_FILE=streams.yaml
ARG DISCOVERY_CACHE=.zenskar-pipeline/discovery.json
COPY ${STREAMS_FILE} ./streams.yaml
COPY ${DISCOVERY_CACHE} ./.zenskar-pipeline/discovery.json
# Loads the definitions as the code server will (with a throwaway instance: DAGSTER_HOME unset).
RUN env -u DAGSTER_HOME dagster definitions validate --module-name zenskar_pipeline.definitions
USER 10001
EXPOSE 4000
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "4000", "--module-name", "zenskar_pipeline.definitions"]
