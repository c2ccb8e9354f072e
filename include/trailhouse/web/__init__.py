"""trailhouse's web UI: a FastAPI app that Airflow's API server mounts under /trailhouse (plugins/trailhouse_plugin.py).

Airflow does not authenticate plugin apps: `auth.AuthMiddleware` authenticates every request
itself with Airflow's own tokens, then maps the user to a trailhouse role. See docs/web.md.
"""

MOUNT_PATH = "/trailhouse"
