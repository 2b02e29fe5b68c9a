# VisitFlow image: one image for `visitflow migrate`, `visitflow worker` and `visitflow api`
# (see docker-compose.yml). Build: docker build -t visitflow:local .

# --- htmx for the UI, from package.json (node_modules is not in the repository) ------------------
FROM node:22-bookworm-slim AS htmx
WORKDIR /app
# pyproject.toml makes the COPY valid when there is no package.json at all.
COPY pyproject.toml package*.json ./
RUN if [ -f package.json ]; then \
        if [ -f package-lock.json ]; then npm ci --omit=dev --no-audit --no-fund; \
        else npm install --omit=dev --no-audit --no-fund; fi; \
    fi \
    && mkdir -p node_modules

# --- the package, into a virtualenv ---------------------------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    # Bytecode now, as root: the runtime user cannot write it, and the workflow sandbox re-imports the
    # workflow module for every workflow run, so missing .pyc files would mean a compile each time.
    && python -m compileall -q /opt/venv/lib

# --- runtime ----------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VISITFLOW_DATA_DIR=/app/data \
    VISITFLOW_EMBEDDED_TEMPORAL=false \
    VISITFLOW_API_HOST=0.0.0.0
RUN groupadd --system --gid 10001 visitflow \
    && useradd --system --uid 10001 --gid visitflow --home-dir /app --shell /usr/sbin/nologin visitflow
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# The UI looks for node_modules/htmx.org/dist/htmx.min.js under the working directory.
COPY --from=htmx /app/node_modules ./node_modules
RUN mkdir -p /app/data && chown visitflow:visitflow /app/data
USER visitflow
EXPOSE 8000
CMD ["visitflow", "api"]
