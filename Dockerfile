# syntax=docker/dockerfile:1
# Multi-stage: build a wheel with the toolchain, run it on a slim image as a non-root user.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY clients/python ./clients/python
# The Python client comes along: `lossmon demo` streams through it.
RUN pip wheel --wheel-dir /wheels . ./clients/python

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LOSSMON_HOST=0.0.0.0 \
    LOSSMON_PORT=8000 \
    LOSSMON_CONFIG_FILE=/app/config/lossmon.toml \
    LOSSMON_DATABASE_URL=sqlite:////data/lossmon.db
RUN groupadd --system lossmon && useradd --system --gid lossmon --home-dir /app lossmon \
    && mkdir -p /app /data && chown lossmon:lossmon /data
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY config ./config
USER lossmon
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LOSSMON_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["lossmon"]
CMD ["serve"]
