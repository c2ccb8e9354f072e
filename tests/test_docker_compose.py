"""docker-compose.yaml and Dockerfile: what a deployer relies on, checked without a Docker engine.

The file is read the way `docker compose` reads it: YAML anchors and merge keys resolved
(yaml.safe_load does that), `${VAR...}` interpolated (defaults taken, required variables
left as `<VAR>` placeholders).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# service -> the `airflow` sub-command it runs (the image's entrypoint prefixes `airflow`).
AIRFLOW_COMMANDS = {
    "airflow-init": ["db", "migrate"],
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker-1": ["celery", "worker"],
    "airflow-worker-2": ["celery", "worker"],
}
AIRFLOW_SERVICES = sorted(AIRFLOW_COMMANDS)
OTHER_SERVICES = ["postgres", "redis", "minio", "minio-init"]
ONE_SHOT = {"airflow-init", "minio-init"}
# Variables trailhouse.settings reads that a deployment may leave to Airflow's image.
SETTINGS_VARS_WITH_IMAGE_DEFAULT = {"AIRFLOW_HOME"}
# Only the fault suite sets it; a deployment must leave it unset.
SETTINGS_VARS_NEVER_SET = {"TRAILHOUSE_FAULT"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|PRIVATE_KEY|_KEY$")

_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str) -> str:
    """Compose's interpolation: defaults applied, other references become `<VAR>`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if m.group(2) in (":-", "-"):
            return m.group(3)
        return f"<{name}>"

    return _REF.sub(sub, value)


def is_reference(value: Any) -> bool:
    """The whole value is one `${VAR}` / `${VAR:?msg}` reference with no literal fallback."""
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?])[^}]*)?\}", str(value))
    return m is not None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def raw_env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: interpolate(v) for k, v in raw_env(svc).items()}


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    words = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
    return words[1:] if words[:1] == ["airflow"] else words


def volume_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each mount; long syntax and `src:dst[:mode]` short syntax."""
    mounts = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            mounts.append((str(v.get("source", "")), str(v["target"])))
        else:
            parts = str(v).split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return mounts


def is_named(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~", "$"))


def service_of_host(services: dict[str, dict[str, Any]], host: str | None) -> dict[str, Any]:
    assert host in services, f"host {host!r} is not a service of docker-compose.yaml"
    return services[host]


def image_of(svc: dict[str, Any]) -> str:
    return str(svc.get("image", "")).rsplit("/", 1)[-1]


def project_path() -> PurePosixPath:
    """Where the Dockerfile installs the project (`pip install ... -e PATH`)."""
    m = re.search(r"pip install[^\n]*\s-e\s+(\S+)", DOCKERFILE.read_text())
    assert m, "the Dockerfile must install the project editable (`pip install --no-deps -e /opt/...`)"
    return PurePosixPath(m.group(1))


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


# --- services and commands -----------------------------------------------------------------


def test_every_service_exists(services: dict[str, Any]) -> None:
    missing = sorted(set(AIRFLOW_SERVICES + OTHER_SERVICES) - set(services))
    assert not missing, f"services missing from docker-compose.yaml: {missing}"


def test_airflow_services_share_one_image_built_from_the_dockerfile(compose: dict[str, Any], services: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    build = common.get("build")
    assert build, "x-airflow-common must build the image from the project's Dockerfile"
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE.resolve()
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc.get("build") == build, f"{name} is not built like x-airflow-common"
        assert svc.get("image") == common.get("image"), f"{name} runs another image than x-airflow-common"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_runs_its_command(services: dict[str, Any], name: str) -> None:
    assert command(services[name]) == AIRFLOW_COMMANDS[name]


def test_two_distinct_celery_workers(services: dict[str, Any]) -> None:
    workers = [n for n, s in services.items() if command(s)[:2] == ["celery", "worker"]]
    assert len(workers) == 2, workers
    hostnames = {services[w].get("hostname", w) for w in workers}
    assert len(hostnames) == 2, "two workers with one hostname are one Celery node name"


# --- executor, broker, databases -----------------------------------------------------------


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_celery_executor_with_redis_broker_and_postgres_metadata_db(services: dict[str, Any], name: str) -> None:
    e = env(services[name])
    assert e.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor"

    broker = urlsplit(e["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis"
    assert image_of(service_of_host(services, broker.hostname)).startswith("redis")

    pg = services["postgres"]
    pg_env = env(pg)
    for key, schemes in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", ("postgresql", "postgresql+psycopg2")),
        ("AIRFLOW__CELERY__RESULT_BACKEND", ("db+postgresql", "db+postgresql+psycopg2")),
    ):
        url = urlsplit(e[key])
        assert url.scheme in schemes, f"{key}: {url.scheme}"
        assert image_of(service_of_host(services, url.hostname)).startswith("postgres"), key
        assert url.username == pg_env["POSTGRES_USER"], f"{key} logs in as another role than postgres creates"
        assert url.password == pg_env["POSTGRES_PASSWORD"], f"{key} uses another password than postgres is given"
        assert url.path.lstrip("/") == pg_env["POSTGRES_DB"], f"{key} names a database postgres does not create"


def test_execution_api_url_points_at_the_api_server(services: dict[str, Any]) -> None:
    api = [n for n, s in services.items() if command(s) == ["api-server"]]
    assert len(api) == 1
    for name in AIRFLOW_SERVICES:
        url = urlsplit(env(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == api[0], name
        assert url.path.rstrip("/") == "/execution", name
        # The api-server listens on 8080 inside its container (whatever the host port).
        assert (url.port or 80) == 8080, name


def test_trailhouse_app_db_is_created_by_the_postgres_init_script(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    for name in AIRFLOW_SERVICES:
        url = urlsplit(env(services[name])["TRAILHOUSE_DB_URL"])
        assert url.scheme.startswith("postgresql"), name
        assert image_of(service_of_host(services, url.hostname)).startswith("postgres"), name
        assert url.password == env(pg)["POSTGRES_PASSWORD"], name
        db = url.path.lstrip("/")
    init_scripts = [
        ROOT / src for src, dst in volume_mounts(pg) if dst.startswith("/docker-entrypoint-initdb.d")
    ]
    assert init_scripts, "postgres mounts no script into /docker-entrypoint-initdb.d"
    sql = "\n".join(p.read_text() for p in init_scripts if p.is_file())
    assert re.search(rf"CREATE\s+DATABASE\s+\"?{re.escape(db)}\"?\s*;", sql, re.I), (
        f"no init script creates the database {db!r} that TRAILHOUSE_DB_URL names"
    )


# --- trailhouse's own settings ------------------------------------------------------------


def settings_env_vars() -> set[str]:
    text = (ROOT / "include" / "trailhouse" / "settings.py").read_text()
    names = set(re.findall(r"os\.environ\.get\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))
    assert len(names) >= 5, f"found only {names} in settings.py: has the way it reads the environment changed?"
    return names - SETTINGS_VARS_WITH_IMAGE_DEFAULT - SETTINGS_VARS_NEVER_SET


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_every_setting_trailhouse_reads_is_set(services: dict[str, Any], name: str) -> None:
    e = env(services[name])
    missing = sorted(v for v in settings_env_vars() if not e.get(v))
    assert not missing, f"{name} leaves {missing} to trailhouse's local defaults (under the project checkout)"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_trailhouse_home_is_one_shared_named_volume(services: dict[str, Any], name: str) -> None:
    svc = services[name]
    e = env(svc)
    home = PurePosixPath(e["TRAILHOUSE_HOME"])
    mav_dir = PurePosixPath(e["TRAILHOUSE_MAV_DIR"])
    mounts = {PurePosixPath(dst): src for src, dst in volume_mounts(svc)}
    assert home in mounts and is_named(mounts[home]), (
        f"{name}: TRAILHOUSE_HOME {home} is not a named volume: MAV definitions would differ "
        "between scheduler, dag-processor and workers and vanish with the container"
    )
    assert mav_dir == home or home in mav_dir.parents, f"{name}: TRAILHOUSE_MAV_DIR is outside TRAILHOUSE_HOME's volume"
    # Every component sees the same volume.
    sources = {
        dict((PurePosixPath(d), s) for s, d in volume_mounts(services[n]))[PurePosixPath(env(services[n])["TRAILHOUSE_HOME"])]
        for n in AIRFLOW_SERVICES
    }
    assert sources == {mounts[home]}


def test_warehouse_bucket_exists_on_the_store_the_writers_use(services: dict[str, Any]) -> None:
    init = services["minio-init"]
    init_cmd = " ".join(command(init))
    for name in AIRFLOW_SERVICES:
        e = env(services[name])
        warehouse = urlsplit(e["TRAILHOUSE_WAREHOUSE"])
        assert warehouse.scheme == "s3", name
        assert re.search(rf"mc mb\b[^\n&|;]*/{re.escape(warehouse.hostname or '')}(?=\s|$)", init_cmd), (
            f"minio-init does not create the bucket {warehouse.hostname!r} of TRAILHOUSE_WAREHOUSE"
        )
        endpoint = urlsplit(e["AWS_ENDPOINT_URL"])
        assert image_of(service_of_host(services, endpoint.hostname)).startswith("minio"), name
        assert endpoint.port == 9000, name
        assert e.get("AWS_ALLOW_HTTP") == "true" or endpoint.scheme == "https", name
        # Without this, boto3 also takes AWS_ENDPOINT_URL and reads the MAVs' CloudTrail
        # buckets from MinIO instead of AWS.
        assert e.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") == "true", name
        mc_endpoint = re.search(r"mc alias set \S+ (\S+)", init_cmd)
        assert mc_endpoint and urlsplit(mc_endpoint.group(1)).hostname == endpoint.hostname
        assert depends_on(services[name]).get("minio-init") == "service_completed_successfully", name
    assert depends_on(init).get("minio") == "service_healthy"


# --- DAGs, plugins and the image ------------------------------------------------------------


@pytest.mark.parametrize("key,folder", [("AIRFLOW__CORE__DAGS_FOLDER", "dags"), ("AIRFLOW__CORE__PLUGINS_FOLDER", "plugins")])
def test_dags_and_plugins_folders_are_the_projects(services: dict[str, Any], key: str, folder: str) -> None:
    project = project_path()
    for name in AIRFLOW_SERVICES:
        path = PurePosixPath(env(services[name])[key])
        assert project in path.parents, f"{name}: {key}={path} is outside the project copied to {project}"
        # The same folder the project's local runs use (trailhouse.airflow_env.configure).
        assert path.relative_to(project) == PurePosixPath(folder), f"{name}: {key}={path}"
    if folder == "dags":
        assert list((ROOT / "dags").glob("*.py")), "dags/ holds no DAG file"
    # plugins/ may be absent from a clone (git keeps no empty folder); Airflow then loads
    # no plugins from it, which is what an empty folder means too.


def test_dockerfile_copies_and_installs_the_project() -> None:
    text = DOCKERFILE.read_text()
    project = project_path()
    assert re.search(rf"^COPY\s+(--\S+\s+)*\.\s+{re.escape(str(project))}/?\s*$", text, re.M), (
        f"the Dockerfile does not copy the project to {project}"
    )
    m = re.search(r"^COPY\s+(?:--\S+\s+)*requirements\.txt\s+(\S+)\s*$", text, re.M)
    assert m, "the Dockerfile does not copy requirements.txt"
    dest = m.group(1)
    target = dest + "requirements.txt" if dest.endswith("/") else dest
    assert re.search(rf"pip install[^\n]*\s-r\s+{re.escape(target)}\b", text), "requirements.txt is copied but not installed"
    assert re.search(rf"pip install[^\n]*--no-deps[^\n]*-e\s+{re.escape(str(project))}\b", text)


def test_dockerfile_airflow_version_matches_requirements() -> None:
    m = re.search(r"^FROM\s+apache/airflow:(\d+\.\d+\.\d+)-python(\d+)\.(\d+)\b", DOCKERFILE.read_text(), re.M)
    assert m, "the Dockerfile must build FROM apache/airflow:<version>-python<X.Y>"
    pins = re.findall(r"^apache-airflow==(\S+)\s*$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [m.group(1)], f"image Airflow {m.group(1)} vs requirements.txt {pins}"
    requires = re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires, "pyproject.toml has no requires-python"
    assert (int(m.group(2)), int(m.group(3))) >= (int(requires.group(1)), int(requires.group(2)))


def test_dockerignore_keeps_secrets_and_venv_out_but_not_the_project() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns)

    for path in (".env", ".venv", ".git", ".trailhouse", "tests/artifacts"):
        assert ignored(path), f"{path} would be sent into the image"
    for path in ("dags", "plugins", "include", "include/trailhouse/settings.py", "pyproject.toml", "requirements.txt"):
        assert not ignored(path), f"{path} is needed in the image but .dockerignore drops it"


# --- volumes, dependencies, secrets, ports ----------------------------------------------------


def test_named_volumes_are_declared_and_used(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {src for svc in services.values() for src, _ in volume_mounts(svc) if is_named(src)}
    declared = set(compose.get("volumes") or {})
    assert used - declared == set(), f"used but not declared: {sorted(used - declared)}"
    assert declared - used == set(), f"declared but never used: {sorted(declared - used)}"
    for svc in services.values():
        for src, _ in volume_mounts(svc):
            if src.startswith("."):
                assert (ROOT / src).exists(), f"bind mount source {src} is not in the repo"


def test_dependencies_exist_and_their_conditions_can_be_met(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            target = services[dep]
            if condition == "service_healthy":
                hc = target.get("healthcheck") or {}
                assert hc.get("test") and not hc.get("disable"), f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for {dep} to complete; it is not a one-shot service"
                assert str(target.get("restart", "no")) in ("no", "on-failure"), (
                    f"{dep} restarts after completing: {name} would never start"
                )
    # No cycles (compose refuses them).
    state: dict[str, str] = {}

    def visit(n: str, path: tuple[str, ...]) -> None:
        assert state.get(n) != "open", f"dependency cycle: {' -> '.join(path + (n,))}"
        if state.get(n) == "done":
            return
        state[n] = "open"
        for d in depends_on(services[n]):
            visit(d, path + (n,))
        state[n] = "done"

    for n in services:
        visit(n, ())


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_wait_for_their_backends(services: dict[str, Any], name: str) -> None:
    deps = depends_on(services[name])
    assert deps.get("postgres") == "service_healthy"
    assert deps.get("redis") == "service_healthy"
    if name != "airflow-init":
        assert deps.get("airflow-init") == "service_completed_successfully", f"{name} may start before `db migrate`"
    if command(services[name])[:2] == ["celery", "worker"]:
        assert deps.get("airflow-apiserver") == "service_healthy", "workers run tasks through the api-server"


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if name not in ONE_SHOT:
            assert (svc.get("healthcheck") or {}).get("test"), f"{name} has no healthcheck"


def test_airflow_components_share_their_configuration(services: dict[str, Any]) -> None:
    # One Fernet key, JWT secret, database... on every component; per-service additions only.
    envs = {n: raw_env(services[n]) for n in AIRFLOW_SERVICES}
    shared = set.intersection(*(set(e) for e in envs.values()))
    for key in shared:
        values = {n: e[key] for n, e in envs.items()}
        assert len(set(values.values())) == 1, f"{key} differs between Airflow services: {values}"
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert key in shared, f"{key} is not set on every Airflow service"


def url_passwords(value: str) -> list[str]:
    """The passwords of the URLs in a value (`scheme://user:PASSWORD@host`), as written."""
    # References may hold spaces (`${X:?set X}`): stand them in by tokens to find the URLs.
    refs = re.findall(r"\$\{[^}]*\}", value)
    tokenized = value
    for i, ref in enumerate(refs):
        tokenized = tokenized.replace(ref, f"__ref{i}__", 1)
    passwords = []
    for url in re.findall(r"\b[a-z][a-z0-9+.-]*://\S+", tokenized):
        m = re.match(r"[^:]+://[^:/@]+:(.+)@[^@]+$", url)
        if m:
            passwords.append(re.sub(r"__ref(\d+)__", lambda r: refs[int(r.group(1))], m.group(1)))
    return passwords


def secret_values(services: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(service, variable, raw value) of every secret: secret-named variables, URL passwords."""
    found = []
    for name, svc in services.items():
        for key, value in raw_env(svc).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                found.append((name, key, value))
            found.extend((name, f"{key} (URL password)", pw) for pw in url_passwords(value))
    return found


def test_no_secret_literals(services: dict[str, Any]) -> None:
    found = secret_values(services)
    assert {k for _, k, _ in found} >= {
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "POSTGRES_PASSWORD",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (URL password)",
    }
    literal = [(n, k) for n, k, v in found if not is_reference(v)]
    assert not literal, f"secret values written into docker-compose.yaml: {literal}"


def test_env_example_lists_every_required_variable() -> None:
    text = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    assert required, "docker-compose.yaml requires no variable: are the secrets hard-coded?"
    example = (ROOT / ".env.example").read_text()
    listed = dict(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", example, re.M))
    assert required <= set(listed), f"missing from .env.example: {sorted(required - set(listed))}"
    filled = sorted(k for k in required if listed[k].strip())
    assert not filled, f".env.example must not carry values for secrets: {filled}"


def host_ports(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(host ip, host port) of each published port."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            if p.get("published"):
                out.append((str(p.get("host_ip", "0.0.0.0")), str(p["published"])))
            continue
        parts = interpolate(str(p)).split("/")[0].split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1]))
        elif len(parts) == 2:
            out.append(("0.0.0.0", parts[0]))
    return out


def test_published_ports_do_not_collide(services: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for name, svc in services.items():
        for _ip, port in host_ports(svc):
            assert port not in seen, f"host port {port} is published by both {seen[port]} and {name}"
            seen[port] = name
    assert "8080" in seen and seen["8080"] == "airflow-apiserver"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_no_fault_injection_in_the_deployment(services: dict[str, Any], name: str) -> None:
    assert not env(services[name]).get("TRAILHOUSE_FAULT"), f"{name} sets TRAILHOUSE_FAULT: it kills tasks on purpose"
