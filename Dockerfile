# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are collected at build time and served by WhiteNoise from the web process.
RUN DEBUG=true python manage.py collectstatic --noinput
# The translations' .mo files, with the pure-Python compiler: the image has no GNU gettext.
RUN python -m config.po locale

# A fixed uid: Kubernetes checks runAsNonRoot against a number (deploy/k8s runs it as 1000).
RUN useradd --create-home --uid 1000 arena
USER arena
EXPOSE 8000
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.asgi:application"]
