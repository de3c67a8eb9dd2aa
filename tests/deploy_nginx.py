"""docs/deploy/nginx.conf made runnable on loopback, for tests/test_topology.py and bench/.

Only what ties the file to docker-compose.yml changes: the two upstream addresses, `listen 80`
and the /var/... paths. Everything else (SSE settings, the status micro-cache) is the file as
deployed. Standard library only, so a benchmark can import it without the test fixtures.
"""

import re
from pathlib import Path

NGINX_CONF = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "nginx.conf"


def render_nginx_conf(directory: Path, *, upstreams: tuple[str, str], port: int) -> Path:
    """Write the loopback copy under `directory` (with its logs/ and cache/) and return its path.
    `upstreams` stand for app1 and app2, as host:port."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    replacements = {
        "server app1:8000": f"server {upstreams[0]}",
        "server app2:8000": f"server {upstreams[1]}",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "/var/log/nginx/": f"{directory}/logs/",
        "/var/run/nginx.pid": f"{directory}/nginx.pid",
        "/var/cache/nginx/": f"{directory}/cache/",
    }
    for old, new in replacements.items():
        assert old in text, f"docs/deploy/nginx.conf no longer contains {old!r}: update {__file__}"
        text = text.replace(old, new)
    assert "/var/" not in re.sub(r"#.*", "", text), "a path of docs/deploy/nginx.conf that is not redirected"
    (directory / "logs").mkdir(parents=True)
    (directory / "cache").mkdir()
    conf = directory / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    return conf
