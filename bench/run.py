"""Run every benchmark, one after the other, and gather their figures.

    .venv/bin/python bench/run.py

Installs wrk and nginx through apt when they are missing (the HTTP benchmarks need them), runs
each bench/*.py script (each starts and stops what it needs on 127.0.0.1 and drops its own
database), then writes bench/results/latest.json (every figure, with its baseline and ratio)
and bench/results/latest.md (the same as a table). A script that fails is reported and the
others still run; the exit status says whether all of them finished.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SCRIPTS = ("runbooks", "status_dashboard", "incident_page", "alert_storm", "sse_fanout")


def ensure_tools() -> None:
    missing = [
        tool for tool in ("wrk", "nginx") if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        print(f"installing {', '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)  # noqa: S607 - the system apt
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)  # noqa: S603, S607


def table(rows: list[dict]) -> str:
    lines = [
        "| figure | value | unit | baseline | baseline value | ratio | target | met |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:

        def num(v: object) -> str:
            return "" if v is None else f"{v:,.3f}" if isinstance(v, float) else str(v)

        met = "" if r.get("met") is None else ("yes" if r["met"] else "**NO**")
        lines.append(
            f"| {r['name']} | {num(r.get('value'))} | {r.get('unit') or ''} | {r.get('baseline_name') or ''} "
            f"| {num(r.get('baseline_value'))} | {num(r.get('ratio'))} | {num(r.get('target'))} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ensure_tools()
    RESULTS.mkdir(exist_ok=True)
    figures: list[dict] = []
    failed = []
    for name in SCRIPTS:
        script = BENCH / f"{name}.py"
        if not script.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent, check=False)  # noqa: S603 - ours
        print(
            f"=== {name}: exit {result.returncode} after {time.monotonic() - started:.0f} s ===", flush=True
        )
        output = RESULTS / f"{name}.json"
        if result.returncode != 0 or not output.exists():
            failed.append(name)
            continue
        for row in json.loads(output.read_text()):
            figures.append({"benchmark": name, **row})
    (RESULTS / "latest.json").write_text(json.dumps(figures, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(table(figures))
    print("\n" + table(figures))
    if failed:
        print(f"did not finish: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
