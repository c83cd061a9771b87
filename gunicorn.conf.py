# Read by gunicorn from the directory it starts in (the image's /app, docker-compose, Kubernetes).
# The access log shows the path without its query string: a query may carry a phone (a filter) and
# no log line may show one in clear.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'
