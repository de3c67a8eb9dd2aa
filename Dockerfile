# syntax=docker/dockerfile:1
#
# The production image: `icc serve` against an external PostgreSQL (ICC_DATABASE_URL).
# docker-compose.yml runs it as `icc migrate`, then as two server replicas and `icc worker`.

# --- Browser libraries: htmx, mermaid and Swagger UI from npm, pinned by static/package-lock.json
FROM node:20-slim AS static
WORKDIR /build
COPY static/package.json static/package-lock.json static/
# The package's postinstall copies the files the pages load into static/vendor/.
RUN npm ci --prefix static --no-audit --no-fund

# --- Runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ICC_ENVIRONMENT=production

# Why an editable install at /app: the app finds its files relative to its own source
# directory, not the working directory: app/web.py and app/main.py use
# Path(__file__).resolve().parent.parent / "templates" and / "static", and app/migrate.py
# reads ROOT / "pyproject.toml" for Alembic's script_location (%(here)s/migrations). A plain
# `pip install .` would import `app` from site-packages, where none of those exist. `pip
# install -e .` maps the `app` package to /app/app, so the console script `icc` imports the
# tree copied here and every one of those paths resolves under /app. WORKDIR /app also makes
# the cwd-relative defaults (ICC_RUNBOOKS_DIR=runbooks, ICC_CONFIG=icc.toml) point inside it.
WORKDIR /app

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY app/ app/
RUN pip install --no-deps -e . && pip check

COPY migrations/ migrations/
COPY templates/ templates/
COPY static/css/ static/css/
COPY static/js/ static/js/
COPY static/img/ static/img/
# Built by the node stage; the build context's own static/vendor and node_modules are ignored.
COPY --from=static /build/static/vendor/ static/vendor/
# runbooks/ may hold no file yet (git keeps no empty directory): the wildcard lets BuildKit
# copy nothing instead of failing, and mkdir below makes sure the directory exists.
COPY runbook[s] runbooks/

# Files stay owned by root and read-only to the server's user; compile now because that user
# cannot write __pycache__.
RUN mkdir -p runbooks \
    && python -m compileall -q app migrations \
    && groupadd --system --gid 10001 icc \
    && useradd --system --uid 10001 --gid icc --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin icc

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8000

# The slim image has no curl; the standard library is enough. Any error or non-2xx exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# With ICC_DATABASE_URL set, `icc serve` neither starts an embedded database nor migrates:
# run `icc migrate` first (docker-compose.yml does, as its `migrate` service).
CMD ["icc", "serve", "--host", "0.0.0.0", "--port", "8000"]
