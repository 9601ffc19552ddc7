# The kami image: `kami serve` against an external PostgreSQL (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package needs: tests, bench and local state stay out of the image.
COPY pyproject.toml ./
COPY domain/ domain/
COPY projections/ projections/
COPY consumers/ consumers/
COPY api/ api/
COPY kami/ kami/
RUN pip install . && rm -rf build *.egg-info

# Never run as root: the API needs no privileges.
RUN useradd --system --create-home --home-dir /home/kami kami
USER kami
WORKDIR /home/kami
ENV KAMI_HOME=/home/kami/.kami

EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# uvicorn stops gracefully on SIGTERM (docker stop); exec form so it receives it.
CMD ["kami", "serve", "--host", "0.0.0.0", "--port", "8000"]
