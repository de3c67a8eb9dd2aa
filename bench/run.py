"""Run every benchmark, one after the other, and gather their figures.

    .venv/bin/python bench/run.py

Installs wrk, nginx and pgbench (postgresql-client) through apt when they are missing, runs each
bench/*.py script (each starts and stops what it needs on 127.0.0.1 and drops its own database),
then writes bench/results/latest.json (every figure, with its baseline and ratio) and
bench/results/latest.md (the same as a table). A script that fails is reported and the others
still run; the exit status says whether all of them finished.
"""

import json
import subprocess
import sys
import time

import common

SCRIPTS = ("runbooks", "status_dashboard", "incident_page", "alert_storm", "sse_fanout")
# sse_fanout.py states its targets as upper limits on the value (its own table prints them as ≤).
VALUE_LIMITS = ("sse_fanout",)


def ensure_tools() -> None:
    missing = [tool for tool in common.TOOLS if common.tool_path(tool) is None]
    if missing:
        packages = sorted({common.TOOLS[tool] for tool in missing})
        print(f"installing {', '.join(packages)} with apt-get (for {', '.join(missing)})", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)  # noqa: S607 - the system apt
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True)  # noqa: S603, S607


def main() -> int:
    ensure_tools()
    common.RESULTS_DIR.mkdir(exist_ok=True)
    figures: list[dict] = []
    failed = []
    started = time.monotonic()
    for name in SCRIPTS:
        script = common.ROOT / "bench" / f"{name}.py"
        if not script.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        began = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=common.ROOT, check=False)  # noqa: S603 - ours
        print(f"=== {name}: exit {result.returncode} after {time.monotonic() - began:.0f} s ===", flush=True)
        output = common.RESULTS_DIR / f"{name}.json"
        if result.returncode != 0 or not output.exists():
            failed.append(name)
            continue
        for row in json.loads(output.read_text()):
            figures.append({"benchmark": name, **row})
    limits = frozenset(r["name"] for r in figures if r["benchmark"] in VALUE_LIMITS)
    table = common.markdown_table(figures, limits) + "\n"
    (common.RESULTS_DIR / "latest.json").write_text(json.dumps(figures, indent=2) + "\n")
    (common.RESULTS_DIR / "latest.md").write_text(table)
    print("\n" + table)
    if failed:
        print(f"did not finish: {', '.join(failed)}")
    print(f"all benchmarks took {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
