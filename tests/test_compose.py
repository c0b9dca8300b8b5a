"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (none runs here or in CI).

Every service's command (and healthcheck command) is parsed by the real Typer CLI, every environment
variable must be a field of ``phonereader.config.Settings`` and its value must validate, the gateway and
the workers must agree on Redis, prefix and queue, and the images must run as an unprivileged user.
Compose interpolation (``${VAR:-default}``, ``${VAR:?error}``, ``$$``) is reproduced here so that the
values checked are the ones a deployment gets.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from phonereader import ROOT
from phonereader.config import Settings

COMPOSE = ROOT / "docker-compose.yml"
ENV = {"REDIS_PASSWORD": "0123456789abcdef0123456789abcdef"}  # what .env holds in a deployment
# variables read by something else than Settings: redis-cli, Flower, uvicorn
OTHER_VARS = {"redis": {"REDISCLI_AUTH"}, "flower": {"FLOWER_AUTH"}, "gateway": {"FORWARDED_ALLOW_IPS"}}


# --- compose interpolation ---------------------------------------------------------------------------


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's rules: $$ is a literal $, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error}, ${VAR:+alt}; defaults may themselves hold ${...}."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            out.append(_expand(text[i + 2 : j - 1], env))
            i = j
        elif text[i] == "$" and re.match(r"\$[A-Za-z_]", text[i:]):
            name = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", text[i:]).group(1)
            out.append(env.get(name, ""))
            i += 1 + len(name)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand(expr: str, env: dict[str, str]) -> str:
    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", expr, re.S)
    assert m, f"not a compose variable: ${{{expr}}}"
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    value = env.get(name)
    empty = value is None or (op and op.startswith(":") and value == "")
    if op in (":-", "-"):
        return interpolate(arg, env) if empty else value
    if op in (":?", "?"):
        if empty:
            raise MissingVariable(f"{name}: {arg}")
        return value
    if op in (":+", "+"):
        return "" if empty else interpolate(arg, env)
    return value or ""


def resolve(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict:
    return resolve(yaml.safe_load(COMPOSE.read_text()), ENV)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def test_interpolation_follows_compose_rules():
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A}-${B:-b}-${EMPTY:-e}-${EMPTY-e}-$$x-${B:-${A}z}", env) == "a-b-e--$x-az"
    assert interpolate("${A:+--flag=$A}${B:+never}", env) == "--flag=a"
    with pytest.raises(MissingVariable):
        interpolate("${B:?set B}", env)


def test_a_deployment_without_a_redis_password_is_refused():
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD"):
        resolve(yaml.safe_load(COMPOSE.read_text()), {})


# --- the CLI and the settings --------------------------------------------------------------------------


def parse_cli(args: list[str]) -> dict:
    """Parse a `phonereader ...` command line with the real Typer app; returns the leaf's parameters.
    Raises (click's UsageError family) on an unknown command or option or a bad value."""
    from phonereader.cli import app

    cmd = typer.main.get_command(app)
    assert args[0] == "phonereader", args
    rest = args[1:]
    while hasattr(cmd, "resolve_command"):
        ctx = cmd.make_context(cmd.name or "phonereader", list(rest), resilient_parsing=True)
        name, cmd, rest = cmd.resolve_command(ctx, list(rest))
        assert cmd is not None, f"no such command: {name}"
    return cmd.make_context(cmd.name, list(rest)).params


def env_names() -> dict[str, str]:
    """Environment variable -> Settings field, as pydantic-settings reads them."""
    names = {}
    prefix = Settings.model_config["env_prefix"]
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if alias is not None:
            for choice in getattr(alias, "choices", [alias]):
                names[str(choice).upper()] = field_name
        else:
            names[(prefix + field_name).upper()] = field_name
    return names


def set_vars(service: dict, shell: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment as the container sees it: a name without a value is passed through from
    the shell (here: ``shell``) when set there, and otherwise not set at all."""
    shell = shell or {}
    out = {}
    for key, value in service["environment"].items():
        if value is None:
            if key in shell:
                out[key] = shell[key]
        else:
            out[key] = str(value)
    return out


def passthrough(service: dict) -> list[str]:
    return [k for k, v in service["environment"].items() if v is None]


def settings_from(env: dict[str, str], monkeypatch) -> Settings:
    import os

    for key in list(os.environ):
        if key.startswith("PHONEREADER_") or key == "REDIS_URL":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def phonereader_commands(service: dict) -> list[list[str]]:
    """The service's command and its healthcheck command, where they run the phonereader CLI."""
    out = []
    command = service.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if command and command[0] == "phonereader":
        out.append(command)
    test = service.get("healthcheck", {}).get("test", [])
    if test[:2] == ["CMD", "phonereader"]:
        out.append(test[1:])
    return out


PHONEREADER_SERVICES = ("gateway", "worker", "worker-gpu")


@pytest.mark.parametrize("name", PHONEREADER_SERVICES)
def test_commands_parse_with_the_real_cli(services, name):
    commands = phonereader_commands(services[name])
    assert commands, f"{name} runs no phonereader command"
    for command in commands:
        parse_cli(command)


def test_the_cli_check_catches_mistakes():
    with pytest.raises(Exception):
        parse_cli(["phonereader", "gateway", "--workers", "4"])
    with pytest.raises(Exception):
        parse_cli(["phonereader", "workers"])
    with pytest.raises(Exception):
        parse_cli(["phonereader", "gateway", "--port", "eighty"])
    assert parse_cli(["phonereader", "gateway", "--port", "8000"])["port"] == 8000


@pytest.mark.parametrize("name", PHONEREADER_SERVICES)
def test_environment_is_made_of_settings_fields_that_validate(services, name, monkeypatch):
    env = set_vars(services[name])
    known = env_names()
    listed = set(services[name]["environment"])
    unknown = [k for k in listed if k not in known and k not in OTHER_VARS.get(name, set())]
    assert not unknown, f"{name}: not Settings fields (a typo is silently ignored by pydantic-settings): {unknown}"
    settings = settings_from({k: v for k, v in env.items() if k in known}, monkeypatch)
    assert settings.redis_url.startswith("redis://")
    if name.startswith("worker"):
        assert settings.model_path.is_file() or str(settings.model_path).startswith("/app/")


def test_gateway_and_workers_share_one_redis_prefix_and_queue(services, monkeypatch):
    seen = set()
    for name in PHONEREADER_SERVICES:
        env = {k: v for k, v in set_vars(services[name]).items() if k in env_names()}
        s = settings_from(env, monkeypatch)
        seen.add((s.redis_url, s.redis_prefix, s.queue_name))
    assert len(seen) == 1, seen
    redis_url = seen.pop()[0]
    assert re.match(r"^redis://:[^@]+@redis:6379/\d+$", redis_url), "REDIS_URL must name the redis service"
    flower = services["flower"]
    assert flower["environment"]["REDIS_URL"] == redis_url


def test_gateway_listens_where_it_is_published_and_checked(services, monkeypatch):
    gw = services["gateway"]
    params = parse_cli(gw["command"])
    assert params["host"] == "0.0.0.0"
    assert any(str(p).endswith(f":{params['port']}") for p in gw["ports"])
    health = " ".join(gw["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", health)
    assert url and int(url.group(1)) == params["port"]
    import fakeredis

    from api.app import create_app

    app = create_app(Settings(_env_file=None), client=fakeredis.FakeAsyncRedis())
    assert url.group(2) in app.openapi()["paths"], f"{url.group(2)} is not a gateway route"


# --- what the issue asks of each service ------------------------------------------------------------------


def test_every_service_has_a_healthcheck_a_restart_policy_and_an_image_it_builds(services):
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: no restart policy"
        build = svc.get("build")
        assert build, f"{name}: no Dockerfile"
        dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        stages = dockerfile_stages(dockerfile)
        target = build.get("target") or list(stages)[-1]
        assert target in stages, f"{name}: {dockerfile.name} has no stage {target!r}"
        user = final_user(stages, target)
        assert user and user not in ("root", "0"), f"{name}: image {target!r} runs as {user or 'root'}"


def test_redis_persists_with_aof_and_never_evicts(services):
    redis = services["redis"]
    config = (ROOT / "docker" / "redis.conf").read_text()
    args = " ".join(redis["command"])
    settings = dict(re.findall(r"^(\S+)\s+(.+)$", config, re.M))
    settings.update(dict(re.findall(r"--(\S+)\s+(\S+)", args)))
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always", "everysec may reply before writing: a killed Redis loses accepted jobs"
    assert settings["maxmemory-policy"] == "noeviction"
    assert "/usr/local/etc/redis/redis.conf" in args
    assert "redis.conf /usr/local/etc/redis/redis.conf" in (ROOT / "docker" / "redis.Dockerfile").read_text()
    assert any(v.endswith(":/data") for v in redis["volumes"]), "the AOF must live on a volume"
    for name in ("gateway", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_cpu_workers_scale_and_the_gpu_worker_reserves_a_gpu(services, monkeypatch):
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs no fixed name or host port"
    assert "profiles" not in worker
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    env = {k: v for k, v in set_vars(gpu).items() if k in env_names()}
    s = settings_from(env, monkeypatch)
    assert (s.device, s.runtime) == ("cuda", "torch")
    assert services["flower"]["profiles"] == ["monitoring"]


def test_docker_build_context_has_what_the_dockerfiles_copy():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".venv" in ignored and ".git" in ignored
    for dockerfile in (ROOT / "Dockerfile", ROOT / "docker" / "redis.Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+$", line)
            if m:
                for src in m.group(1).split():
                    assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src}: not in the repository"
                    assert src not in ignored, f"{dockerfile.name}: COPY {src}, but .dockerignore drops it"


# --- Dockerfile parsing -----------------------------------------------------------------------------------


def dockerfile_stages(path: Path) -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined); the base stage name is kept as 'FROM x'."""
    stages: dict[str, list[str]] = {}
    current = None
    text = re.sub(r"\\\n", " ", path.read_text())
    for n, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(2) or f"stage{n}"
            stages[current] = [f"FROM {m.group(1)}"]
        elif current:
            stages[current].append(line)
    return stages


def final_user(stages: dict[str, list[str]], target: str) -> str | None:
    """The USER a container of ``target`` runs as, following FROM chains to earlier stages."""
    user = None
    lines = stages[target]
    for line in reversed(lines):
        if line.upper().startswith("USER "):
            return line.split()[1]
    parent = lines[0].split()[1]
    if parent in stages:
        return final_user(stages, parent)
    return user


def test_passed_through_variables_validate_when_an_operator_sets_them(services, monkeypatch):
    """What a README example puts in .env must be accepted by Settings, in the form the README shows."""
    shell = {"PHONEREADER_API_KEYS": "acme:0123456789abcdef0123,ops:fedcba9876543210fedc",
             "PHONEREADER_RATE_LIMIT_PER_MINUTE": "600", "PHONEREADER_RATE_LIMITS": "ops:6000",
             "PHONEREADER_CORS_ORIGINS": "https://forms.example.com,https://app.example.com",
             "PHONEREADER_QUEUE_LIMIT": "5000", "PHONEREADER_WORKER_CONCURRENCY": "8",
             "PHONEREADER_WORKER_TASK_EVENTS": "true", "PHONEREADER_BATCH_MAX_DELAY_MS": "2"}
    for name in PHONEREADER_SERVICES:
        service = services[name]
        assert passthrough(service), f"{name}: expected tunables passed through from .env"
        env = {k: v for k, v in set_vars(service, shell).items() if k in env_names()}
        s = settings_from(env, monkeypatch)
        if name == "gateway":
            assert s.rate_limits == {"ops": 6000} and len(s.api_keys) == 2 and s.queue_limit == 5000
            assert s.cors_origins == ["https://forms.example.com", "https://app.example.com"]
        else:
            assert s.worker_task_events and s.batch_max_delay_ms == 2


def test_flower_can_be_given_task_events():
    from worker.celery_app import make_celery

    assert make_celery(Settings(_env_file=None)).conf.worker_send_task_events is False
    assert make_celery(Settings(worker_task_events=True, _env_file=None)).conf.worker_send_task_events is True
