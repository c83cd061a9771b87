# One image for every process of the service (web, worker, beat, fake provider); docker-compose.yml
# picks the command. Settings come from the environment, as everywhere (see .env.example).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_STATIC_ROOT=/app/static

WORKDIR /app
RUN useradd --system --user-group --uid 10001 --home-dir /app --no-create-home app

# Requirements first, so that a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# Static files are part of the image. var/ starts empty, writable by the app user: it holds beat's
# schedule and, in docker-compose.yml (a volume there), the local secret key.
RUN python manage.py collectstatic --noinput -v 0 && mkdir var metrics && chown app:app var metrics

USER app
EXPOSE 8000
# No access log: ops.middleware logs each request once, with its id and without the query string.
CMD ["gunicorn", "mailing_service.wsgi", "--bind", "0.0.0.0:8000"]
