# trailhouse on the official Airflow image: every Airflow service in docker-compose.yaml
# (api-server, scheduler, dag-processor, triggerer, Celery workers, init) runs this image.
# Keep the tag's Airflow version equal to the apache-airflow pin in requirements.txt
# (tests/test_docker_compose.py checks it).
FROM apache/airflow:3.3.2-python3.11

# The project's home (MAV definitions, staging) is a named volume mounted here; a fresh
# named volume takes the ownership of the image's directory, so create it for the
# `airflow` user now or the tasks cannot write to it.
USER root
RUN mkdir -p /opt/trailhouse-home/mavs && chown -R airflow:root /opt/trailhouse-home
# gcc builds trailhouse's C column builder (include/trailhouse/ingest/_fastjson.c) at the install
# below; the image's Python already carries its headers.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
USER airflow

# Dependencies first, in their own layer: code changes do not reinstall them. The official
# image must be extended as the `airflow` user (pip refuses to run as root there).
COPY --chown=airflow:root requirements.txt /opt/trailhouse/requirements.txt
RUN pip install --no-cache-dir -r /opt/trailhouse/requirements.txt
# requirements.txt pins the project's own stack; CeleryExecutor additionally needs the
# celery provider and the redis client, which the base image ships. Fail the build, not
# the first task, if an install above ever removed them.
RUN pip show apache-airflow-providers-celery >/dev/null && pip show redis >/dev/null

COPY --chown=airflow:root . /opt/trailhouse
RUN pip install --no-cache-dir --no-deps -e /opt/trailhouse
# setup.py makes the extension optional (ingest falls back to Python, several times slower):
# fail the build instead of shipping the slow path.
RUN python -c "import trailhouse.ingest._fastjson"
