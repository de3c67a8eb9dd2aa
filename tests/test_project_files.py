"""The files around the code say the same thing as the code: the Dockerfile, docker-compose.yml,
the README's commands and .ci/run only name settings, commands and paths that exist.

No Docker engine is needed: the files are read as text (the Dockerfile) and YAML (compose).
"""

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml  # PyYAML: a runtime dependency already, through uvicorn[standard]
from typer.testing import CliRunner

from app import cli
from app import main as app_main
from app import migrate as app_migrate
from app import web as app_web
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
ICC_VARIABLE = re.compile(r"\bICC_[A-Z0-9_]+\b")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a server in a container must listen beyond itself
APP_REPLICAS = ("app1", "app2")
NGINX_CONF = ROOT / "docs" / "deploy" / "nginx.conf"


# --- reading the files -------------------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def dockerfile_text() -> str:
    return (ROOT / "Dockerfile").read_text()


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (comments dropped, lines joined)."""
    lines = [line for line in dockerfile_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[Stage] = []
    for line in joined.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if not keyword:
            continue
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(text: str) -> list[str]:
    """A CMD/RUN argument list in either the JSON (exec) or the shell form."""
    return json.loads(text) if text.startswith("[") else shlex.split(text)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_service(name: str) -> dict:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no `{name}` service"
    return services[name]


def compose_command(name: str) -> list[str]:
    command = compose_service(name)["command"]
    return command if isinstance(command, list) else shlex.split(command)


def readme() -> str:
    return (ROOT / "README.md").read_text()


def readme_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme(), re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def readme_configuration_variables() -> set[str]:
    return set(re.findall(r"^\| `(ICC_[A-Z0-9_]+)` \|", readme_section("Configuration"), re.M))


def container_commands() -> dict[str, list[str]]:
    """Every command the container files run, by where it comes from."""
    (cmd,) = dockerfile_stages()[-1].all("CMD")
    return {
        "Dockerfile CMD": exec_form(cmd),
        "compose service migrate": compose_command("migrate"),
        **{f"compose service {name}": compose_command(name) for name in APP_REPLICAS},
        "compose service worker": compose_command("worker"),
    }


def subcommand(argv: list[str]) -> list[str]:
    """['icc', 'serve', '--host', 'x'] -> ['serve']; ['icc', 'user', 'create'] -> ['user', 'create']."""
    words = []
    for word in argv[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def icc_commands_listed() -> set[str]:
    """The command names `icc --help` lists (rich's boxed table or click's plain one)."""
    result = CliRunner().invoke(cli.app, ["--help"], prog_name="icc")
    assert result.exit_code == 0, result.output
    _, _, commands_box = result.output.partition("Commands")
    return set(re.findall(r"^(?:│ | {2})([a-z][\w-]*)", commands_box, re.M))


# --- settings ----------------------------------------------------------------------------------


def test_every_icc_variable_in_the_dockerfile_and_compose_file_is_a_setting_documented_in_the_readme():
    named = set(ICC_VARIABLE.findall(dockerfile_text())) | set(
        ICC_VARIABLE.findall((ROOT / "docker-compose.yml").read_text())
    )
    assert {"ICC_DATABASE_URL", "ICC_SECRET_KEY", "ICC_ENVIRONMENT"} <= named
    assert Settings.model_config["env_prefix"] == "ICC_"
    settings_fields = {"ICC_" + name.upper() for name in Settings.model_fields}
    assert named - settings_fields == set(), "not fields of app.config.Settings"
    assert named - readme_configuration_variables() == set(), "not in README.md's configuration table"


def test_the_compose_environment_is_accepted_by_the_settings_in_production(monkeypatch):
    for service in ("migrate", *APP_REPLICAS, "worker"):
        environment = compose_service(service)["environment"]
        assert environment["ICC_ENVIRONMENT"] == "production"
        # The secret comes from the host and compose refuses to start without it.
        assert re.fullmatch(r"\$\{ICC_SECRET_KEY:\?[^}]+\}", environment["ICC_SECRET_KEY"])
        for name, value in environment.items():
            # ${NAME:-default} is the default where the host does not set NAME, as compose reads it.
            monkeypatch.setenv(name, re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value))
        monkeypatch.setenv("ICC_SECRET_KEY", "s" * 48)
        settings = Settings()
        assert settings.environment == "production"
        assert settings.database_url == environment["ICC_DATABASE_URL"].replace(
            "postgresql://", "postgresql+psycopg://", 1
        )


def test_every_compose_service_states_the_cookie_security_that_production_requires():
    for service in ("migrate", *APP_REPLICAS, "worker"):
        value = compose_service(service)["environment"].get("ICC_SECURE_COOKIES")
        # Plain HTTP on 127.0.0.1:8000 by default; the host may say true behind a TLS proxy.
        assert value == "${ICC_SECURE_COOKIES:-false}", service


def test_the_deployment_guide_sets_secure_cookies_for_the_kubernetes_replicas():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    (kubernetes,) = re.findall(r"Kubernetes, for the app Deployment:\n\n```yaml\n(.*?)```", guide, re.S)
    assert '{name: ICC_SECURE_COOKIES, value: "true"}' in kubernetes


def test_the_database_url_points_at_the_compose_postgres_service_and_its_credentials():
    postgres = compose_service("postgres")
    expected = postgres["environment"]
    for service in ("migrate", *APP_REPLICAS, "worker"):
        url = urlsplit(compose_service(service)["environment"]["ICC_DATABASE_URL"])
        assert url.hostname == "postgres", service
        assert (url.username, url.password, url.path.lstrip("/")) == (
            expected["POSTGRES_USER"],
            expected["POSTGRES_PASSWORD"],
            expected["POSTGRES_DB"],
        ), service


def test_the_image_defaults_to_production():
    runtime = dockerfile_stages()[-1]
    env_words = [word for rest in runtime.all("ENV") for word in shlex.split(rest)]
    assert "ICC_ENVIRONMENT=production" in env_words


# --- commands ----------------------------------------------------------------------------------


def test_the_commands_the_containers_run_are_icc_subcommands_documented_in_the_readme():
    command_line = readme_section("Command line")
    for source, argv in container_commands().items():
        assert argv[0] == "icc", source
        words = subcommand(argv)
        assert words, f"{source}: {argv} names no subcommand"
        # --help is eager but the options are parsed first, so an unknown option fails here too.
        result = CliRunner().invoke(cli.app, [*argv[1:], "--help"], prog_name="icc")
        assert result.exit_code == 0, f"{source}: {' '.join(argv)}\n{result.output}"
        assert f"Usage: icc {' '.join(words)}" in result.output, source
        usage = [line for line in command_line.splitlines() if line.startswith(f"icc {' '.join(words)}")]
        assert usage, f"{source}: `icc {' '.join(words)}` is not in README.md's command line section"
        for option in (word for word in argv if word.startswith("--")):
            assert option in usage[0], f"{source}: {option} is not in README.md's `{usage[0]}`"


def test_the_image_and_the_compose_app_serve_on_all_interfaces_on_the_exposed_port():
    runtime = dockerfile_stages()[-1]
    (exposed,) = runtime.all("EXPOSE")
    for source in ("Dockerfile CMD", *(f"compose service {name}" for name in APP_REPLICAS)):
        argv = container_commands()[source]
        assert subcommand(argv) == ["serve"], source
        assert argv[argv.index("--host") + 1] == ALL_INTERFACES, source
        assert argv[argv.index("--port") + 1] == exposed, source
    for name in APP_REPLICAS:
        # Reachable by nginx on the compose network, not published on the host.
        assert exposed in [str(port) for port in compose_service(name)["expose"]], name
        assert "ports" not in compose_service(name), name


def test_icc_help_lists_serve_migrate_user_token_and_seed():
    assert {"serve", "migrate", "user", "token", "seed"} <= icc_commands_listed()


def test_every_icc_command_is_in_the_readmes_command_line_section():
    listed = icc_commands_listed()
    command_line = readme_section("Command line")
    assert listed
    assert {name for name in listed if f"icc {name}" not in command_line} == set()


def test_the_icc_console_script_is_the_cli_main_function():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["icc"] == "app.cli:main"
    assert callable(cli.main)


# --- the Dockerfile ----------------------------------------------------------------------------


def test_the_dockerfile_builds_the_browser_libraries_in_a_node_stage_and_runs_python_slim():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(stage.name for stage in stages), "every stage is named: FROM image AS name"
    node = stages[0]
    assert node.image == "node:20-slim"
    assert any("npm ci --prefix static" in run for run in node.all("RUN"))
    assert stages[-1].image == "python:3.11-slim"
    vendor_copies = [
        rest
        for rest in stages[-1].all("COPY")
        if f"--from={node.name}" in rest.split() and "static/vendor" in rest
    ]
    assert vendor_copies, f"the runtime stage copies static/vendor from the {node.name} stage"


def test_the_image_installs_the_browser_libraries_with_the_readmes_npm_command():
    quick_start = readme_section("Quick start")
    npm = {part.strip() for part in quick_start.split("&&") if part.strip().startswith("npm ci")}
    assert len(npm) == 1, npm
    assert npm <= set(dockerfile_stages()[0].all("RUN"))


def test_the_image_runs_as_a_user_other_than_root():
    users = dockerfile_stages()[-1].all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0", ""}
    # The numeric id is the one the stage creates.
    if user.isdigit():
        assert any(f"--uid {user}" in run for run in dockerfile_stages()[-1].all("RUN"))


async def test_the_image_health_check_asks_healthz_with_python_on_the_served_port():
    runtime = dockerfile_stages()[-1]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[0] == "python"  # the slim image has no curl or wget
    (exposed,) = runtime.all("EXPOSE")
    assert f"http://127.0.0.1:{exposed}/healthz" in " ".join(argv)
    # And the app answers it without a database round trip (no lifespan, no connection).
    transport = httpx.ASGITransport(app=app_main.create_app("postgresql+psycopg://nobody@localhost/none"))
    async with httpx.AsyncClient(transport=transport, base_url="http://icc") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200


def test_the_image_copies_every_path_the_app_reads_from_its_source_tree():
    """The app finds templates, static files and the Alembic config next to its package, and the
    runbooks relative to the working directory: each must be copied to the same place."""
    runtime = dockerfile_stages()[-1]
    (workdir,) = runtime.all("WORKDIR")
    assert app_web.TEMPLATES_DIR.parent == app_main.STATIC_DIR.parent == app_migrate.ROOT == ROOT
    static_dirs = {
        f"static/{p.name}"
        for p in app_main.STATIC_DIR.iterdir()
        if p.is_dir() and p.name not in {"node_modules", "vendor"}
    }
    alembic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["alembic"]["script_location"]
    needed = {
        "app",
        "pyproject.toml",
        app_web.TEMPLATES_DIR.name,
        alembic.removeprefix("%(here)s/"),
        str(Settings.model_fields["runbooks_dir"].default),
        *static_dirs,
    }
    copies = []  # (source pattern, destination) from the build context
    for rest in runtime.all("COPY"):
        if any(word.startswith("--from=") for word in shlex.split(rest)):
            continue
        *sources, destination = [word for word in shlex.split(rest) if not word.startswith("--")]
        copies += [(source.rstrip("/"), destination.rstrip("/")) for source in sources]
    for path in sorted(needed):
        where = [dest for source, dest in copies if fnmatch.fnmatch(path, source)]
        assert where, f"the Dockerfile does not copy {path}/"
        # The same place under WORKDIR: a directory by its own name, a file by name or into WORKDIR.
        places = {path, f"{workdir}/{path}"} | ({".", workdir} if (ROOT / path).is_file() else set())
        assert where[0] in places, f"the Dockerfile copies {path} to {where[0]}, not to {workdir}/{path}"


def test_the_dockerfile_serves_with_icc_and_exposes_8000():
    runtime = dockerfile_stages()[-1]
    assert runtime.all("EXPOSE") == ["8000"]
    (cmd,) = runtime.all("CMD")
    assert exec_form(cmd) == ["icc", "serve", "--host", ALL_INTERFACES, "--port", "8000"]


# --- README and CI -----------------------------------------------------------------------------


def quick_start_commands() -> list[str]:
    blocks = re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", readme_section("Quick start"), re.M | re.S)
    return [block.strip() for block in blocks]


def test_the_readme_quick_start_has_a_start_command_and_a_test_command():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in command for command in commands), "each is one line to paste"
    assert sum(command.endswith("icc serve --demo") for command in commands) == 1
    assert sum(command.endswith("pytest") for command in commands) == 1


def test_ci_runs_the_readme_test_command_verbatim():
    (test_command,) = [command for command in quick_start_commands() if command.endswith("pytest")]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_migrates_after_postgres_is_healthy_and_serves_after_the_migration_succeeded():
    postgres = compose_service("postgres")
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    migrate = compose_service("migrate")
    assert subcommand(compose_command("migrate")) == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (*APP_REPLICAS, "worker"):
        depends_on = compose_service(name)["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_keeps_the_database_in_a_named_volume():
    volumes = compose_service("postgres")["volumes"]
    named = {entry.split(":")[0] for entry in volumes}
    assert any(":/var/lib/postgresql/data" in entry for entry in volumes)
    assert named <= set(compose().get("volumes") or {}), "declared under the top-level volumes:"


def test_compose_migrate_and_app_run_the_image_built_from_this_dockerfile():
    images = set()
    for service in ("migrate", *APP_REPLICAS, "worker"):
        spec = compose_service(service)
        build = spec["build"]
        context = build if isinstance(build, str) else build["context"]
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).resolve() == ROOT / "Dockerfile", service
        images.add(spec.get("image"))
    assert len(images) == 1 and None not in images, "one named image, built once and run by every service"


# --- the replicated topology: two app replicas, the worker, nginx ------------------------------


def nginx_conf() -> str:
    return re.sub(r"#.*", "", NGINX_CONF.read_text())


def nginx_location(pattern: str) -> str:
    """The body of the `location` block whose header matches `pattern`."""
    match = re.search(rf"location\s+{pattern}\s*{{(.*?)}}", nginx_conf(), re.S)
    assert match, f"docs/deploy/nginx.conf has no location matching {pattern!r}"
    return match.group(1)


def test_the_app_replicas_leave_the_scheduler_to_the_worker_service():
    for name in APP_REPLICAS:
        assert compose_service(name)["environment"]["ICC_RUN_SCHEDULER"] == "false", name
    assert compose_command("worker") == ["icc", "worker"]
    # The worker serves no HTTP: the image's health check (GET /healthz) would mark it unhealthy.
    assert compose_service("worker")["healthcheck"] == {"disable": True}
    assert "ICC_RUN_SCHEDULER" not in compose_service("worker")["environment"]


def test_compose_runs_nginx_with_the_repos_config_in_front_of_both_replicas():
    nginx = compose_service("nginx")
    assert nginx["image"].startswith("nginx:")
    mounts = {entry.split(":")[0]: entry.split(":")[1] for entry in nginx["volumes"]}
    assert mounts.get("./docs/deploy/nginx.conf") == "/etc/nginx/nginx.conf"
    assert NGINX_CONF.is_file()
    assert nginx["ports"] == ["8000:80"]
    assert set(nginx["depends_on"]) == set(APP_REPLICAS)
    (upstream,) = re.findall(r"upstream\s+(\w+)\s*{(.*?)}", nginx_conf(), re.S)
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream[1], re.M)
    assert sorted(servers) == [(name, "8000") for name in APP_REPLICAS]
    assert re.search(r"^\s*listen\s+80;", nginx_conf(), re.M)
    assert f"proxy_pass http://{upstream[0]};" in nginx_location("/")


def test_nginx_streams_server_sent_events_unbuffered_with_a_long_read_timeout():
    assert "proxy_http_version 1.1;" in nginx_conf()
    assert 'proxy_set_header Connection "";' in nginx_conf()
    for pattern in (r"=\s*/events", re.escape("~ ^/incidents/[^/]+/events$")):
        block = nginx_location(pattern)
        assert "proxy_buffering off;" in block
        assert "proxy_cache off;" in block
        (timeout,) = re.findall(r"proxy_read_timeout\s+(\d+)([smh]);", block)
        seconds = int(timeout[0]) * {"s": 1, "m": 60, "h": 3600}[timeout[1]]
        assert seconds >= 60, "well above the app's 15 s heartbeat"


def test_nginx_micro_caches_the_public_status_view_and_says_so():
    block = nginx_location(
        re.escape(
            "~ ^(/status|/status/feed\\.atom|/api/v1/status"
            "|/api/v2/(summary|status|components|incidents/unresolved)\\.json)$"
        )
    )
    assert re.search(r"proxy_cache\s+\w+;", block)
    (valid,) = re.findall(r"proxy_cache_valid\s+200\s+(\d+)s;", block)
    assert 5 <= int(valid) <= 10
    assert "proxy_ignore_headers" not in block, "the app's Cache-Control decides"
    # A signed-in copy is neither served from nor stored in the cache, whichever the cookie's name.
    assert "proxy_cache_bypass $icc_signed_in" in block and "proxy_no_cache $icc_signed_in" in block
    (pattern,) = re.findall(r'map \$http_cookie \$icc_signed_in \{[^}]*"~([^"]+)" 1;', nginx_conf())
    signed_in = re.compile(pattern)
    for cookie in ("icc_session=abc", "theme=dark; __Host-icc_session=abc", "__Host-icc_session=abc"):
        assert signed_in.search(cookie), cookie
    for cookie in ("", "icc_login_csrf=abc", "not_icc_session=abc"):
        assert not signed_in.search(cookie), cookie
    assert "X-Cache-Status $upstream_cache_status" in block


def test_nginx_does_not_expose_the_per_process_metrics():
    assert "return 404;" in nginx_location(r"=\s*/metrics")
