# Stevedores Dashboard: the core and every plugin, served by gunicorn as a non-root user.
# Build:  docker build -t stevedores-dashboard .
# Run:    docker run -p 8000:8000 -e FLASK_ENV=production -e SECRET_KEY=... -e DATABASE_URL=... stevedores-dashboard

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.txt ./
COPY core ./core
COPY plugins ./plugins
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile -r requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    FLASK_ENV=production \
    LOG_FILE=none
RUN groupadd --system stevedores && useradd --system --gid stevedores --home-dir /app stevedores
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py wsgi.py ./
RUN mkdir -p /app/instance /app/logs && chown -R stevedores:stevedores /app
USER stevedores
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health/live\", timeout=4)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:application"]
