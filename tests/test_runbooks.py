"""Runbooks: the renderer, the index, search, suggestions and the pages."""

import os
import re
from pathlib import Path

import nh3
import pytest

from app.incidents import service as incidents
from app.runbooks import service
from app.runbooks.render import render_runbook, sanitise, split_front_matter
from tests.conftest import sign_in

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "runbooks"
PROJECT_RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared corpus is missing at {CORPUS}; CI must have it")
        pytest.skip(f"the shared corpus of real runbooks is not at {CORPUS}")
    return sorted(CORPUS.glob("*.md"))


# ---------------------------------------------------------------- the renderer


def test_headings_get_github_style_slugs_and_a_table_of_contents():
    r = render_runbook("# Runbook\n\n## Severities and SLAs\n\n## Escalation\n\n## Escalation\n")
    assert '<h2 id="severities-and-slas">Severities and SLAs</h2>' in r.html
    assert [(h.level, h.slug) for h in r.toc] == [
        (1, "runbook"),
        (2, "severities-and-slas"),
        (2, "escalation"),
        (2, "escalation-1"),
    ]
    assert r.title == "Runbook"


def test_in_document_links_point_at_the_heading_slugs():
    r = render_runbook("[Severities and SLAs](#severities-and-slas)\n\n## Severities and SLAs\n")
    assert 'href="#severities-and-slas"' in r.html
    assert 'id="severities-and-slas"' in r.html


def test_front_matter_gives_the_metadata_and_is_not_rendered():
    r = render_runbook(
        "---\nid: RB-042\ntitle: Disk full\ntags: [disk, linux]\nowner: sre\nupdated: 2026-11-01\n"
        "services: [Orders-DB]\nseverity: sev2\nactions: [disk-cleanup]\n---\n# Heading\n"
    )
    assert r.meta_error is None
    assert r.meta["id"] == "RB-042"
    assert r.title == "Disk full"
    assert r.meta["services"] == ["orders-db"]
    assert r.meta["severity"] == "SEV2"
    assert str(r.meta["updated"]) == "2026-11-01"
    assert "owner" not in r.html


def test_a_file_without_front_matter_takes_its_title_from_the_first_heading():
    assert render_runbook("Intro\n\n## Second\n\n# First level\n").title == "First level"
    assert render_runbook("no headings at all", fallback_title="disk-full").title == "disk-full"


def test_broken_front_matter_is_reported_and_the_body_still_renders():
    r = render_runbook("---\ntitle: [unclosed\n---\n# Still here\n")
    assert r.meta_error is not None
    assert r.meta_error.startswith("Front matter is not valid YAML")
    assert "Still here" in r.html
    assert (
        split_front_matter("---\n- a list\n---\nbody")[1]
        == "Front matter must be a mapping of keys to values"
    )


def test_only_the_top_of_the_file_is_front_matter():
    text = "# Diagram\n\n```mermaid\n---\ntitle: Node\n---\nflowchart LR\n  A --> B\n```\n"
    r = render_runbook(text)
    assert r.meta_error is None
    assert r.meta["title"] is None
    assert r.has_mermaid
    assert "title: Node" in r.html


def test_gfm_tables_task_lists_strikethrough_footnotes_and_autolinks_render():
    r = render_runbook(
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n- [ ] open\n- [x] done\n\n~~old~~ see https://example.com"
        " and a note[^1].\n\n[^1]: The note.\n"
    )
    assert '<div class="table-wrap"><table>' in r.html
    assert r.html.count('type="checkbox"') == 2
    assert "checked" in r.html and "disabled" in r.html
    assert "<s>old</s>" in r.html or "<del>old</del>" in r.html
    assert 'href="https://example.com"' in r.html
    assert "The note." in r.html and "<sup" in r.html


def test_code_is_highlighted_on_the_server_and_an_unknown_language_stays_plain():
    r = render_runbook("```bash\nkubectl get pods  # list\n```\n\n```shel\necho hi\n```\n")
    assert '<span class="c1"># list</span>' in r.html
    assert "echo hi" in r.html
    assert r.html.count('<div class="code">') == 2


def test_mermaid_fences_go_to_the_browser_and_mermaid_example_fences_stay_code():
    r = render_runbook(
        "```mermaid\ngraph TD\n  A --> B\n```\n\n```mermaid-example\ngraph TD\n  C --> D\n```\n"
    )
    assert r.html.count('<pre class="mermaid">') == 1
    assert "A --&gt; B" in r.html
    assert "C --&gt; D" in r.html


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ('<img src=x onerror="alert(1)">', "onerror"),
        ("[x](javascript:alert(1))", 'href="javascript'),
        ('<a href="javascript:alert(1)">x</a>', "javascript:"),
        ('<a href="data:text/html,<b>x</b>">x</a>', 'href="data'),
        ('<a href="vbscript:msgbox(1)">x</a>', "vbscript:"),
        ("<details open><summary>x</summary><p onclick=alert(1)>y</p></details>", "onclick"),
        ('<iframe src="javascript:alert(1)"></iframe>', "<iframe"),
        ("<svg onload=alert(1)><circle/></svg>", "onload"),
        ("<style>body{display:none}</style>", "display:none"),
        ('<div style="position:fixed;top:0">x</div>', "position:fixed"),
    ],
)
def test_untrusted_html_is_neutralised(source, forbidden):
    html = render_runbook(f"Before\n\n{source}\n\nAfter\n").html
    assert forbidden not in html
    assert "Before" in html and "After" in html


def test_harmless_html_survives_and_placeholders_stay_visible_as_text():
    r = render_runbook(
        "| col |\n|---|\n| one<br/>two |\n\nRun `gpg --card-edit` as <uid> on <my host>.\n\n"
        "<details><summary>Linux</summary>\n\nsteps\n\n</details>\n"
    )
    assert "one<br>two" in r.html
    assert "&lt;uid&gt;" in r.html and "&lt;my host&gt;" in r.html
    assert "<details><summary>Linux</summary>" in r.html


def test_gitlab_toc_markers_and_html_comments_disappear():
    r = render_runbook("[[_TOC_]]\n\n<!-- START doctoc -->\n# Title\n")
    assert "_TOC_" not in r.html and "doctoc" not in r.html


def test_an_embedded_iframe_becomes_a_link():
    r = render_runbook('<iframe width="560" src="https://www.youtube.com/embed/abc"></iframe>\n')
    assert 'href="https://www.youtube.com/embed/abc"' in r.html
    assert "<iframe" not in r.html


def test_a_webhook_table_in_the_text_is_recognised_as_recommended_actions():
    r = render_runbook(
        "| Webhook | When | Requires confirmation |\n|---|---|---|\n"
        "| `service-restart` | hung | Yes |\n| `dns-flush` | DNS | No |\n\n"
        "| Command | What |\n|---|---|\n| `kubectl` | not an action |\n"
    )
    assert r.webhooks == ["service-restart", "dns-flush"]


def test_every_real_runbook_in_the_corpus_renders_safely_with_its_diagrams():
    for path in corpus_files():
        text = path.read_text()
        r = render_runbook(text, fallback_title=path.stem)
        assert r.html, path.name
        assert sanitise(r.html) == r.html, f"{path.name}: output not stable under the sanitiser"
        assert "<script" not in r.html, path.name
        fences = len(re.findall(r"^ {0,3}```mermaid[ \t]*$", text, re.MULTILINE))
        assert r.html.count('<pre class="mermaid">') == fences, path.name


def test_the_projects_own_runbooks_have_valid_front_matter_and_one_is_long():
    files = sorted(PROJECT_RUNBOOKS.glob("*.md"))
    assert len(files) >= 10
    sizes = []
    for path in files:
        r = render_runbook(path.read_text())
        assert r.meta_error is None, path.name
        assert r.meta["id"] and r.meta["title"] and r.meta["owner"] and r.meta["services"], path.name
        sizes.append(path.stat().st_size)
    assert max(sizes) > 40_000
    master = render_runbook((PROJECT_RUNBOOKS / "rb-000-incident-response.md").read_text())
    slugs = {h.slug for h in master.toc}
    links = set(re.findall(r'href="#([^"]+)"', master.html))
    assert {link for link in links if not link.startswith("fn")} <= slugs


# ---------------------------------------------------------------- the index


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


RB = "---\nid: {id}\ntitle: {title}\ntags: [{tags}]\nservices: [{services}]\nowner: sre\n---\n{body}\n"


async def test_sync_adds_updates_and_removes_and_does_nothing_when_nothing_changed(session, tmp_path):
    write(
        tmp_path, "a.md", RB.format(id="RB-1", title="Disk full", tags="disk", services="orders-db", body="x")
    )
    b = write(tmp_path, "b.md", RB.format(id="RB-2", title="DNS", tags="dns", services="edge", body="y"))
    report = await service.sync_runbooks(session, directory=tmp_path)
    assert sorted(report.added) == ["a.md", "b.md"]
    assert not (await service.sync_runbooks(session, directory=tmp_path)).changed
    write(
        tmp_path,
        "a.md",
        RB.format(id="RB-1", title="Disk full (v2)", tags="disk", services="orders-db", body="x"),
    )
    b.unlink()
    report = await service.sync_runbooks(session, directory=tmp_path)
    assert (report.updated, report.removed) == (["a.md"], ["b.md"])
    assert (await service.get_runbook(session, key="RB-1")).title == "Disk full (v2)"


async def test_a_broken_file_is_listed_with_its_error_not_dropped(session, tmp_path):
    write(tmp_path, "broken.md", "---\ntitle: [oops\n---\n# Broken but readable\n")
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00garbage")
    report = await service.sync_runbooks(session, directory=tmp_path)
    assert set(report.errors) == {"broken.md", "binary.md"}
    found = {f.runbook.path: f.runbook for f in await service.find_runbooks(session)}
    assert found["broken.md"].title == "Broken but readable"
    assert found["broken.md"].error.startswith("Front matter is not valid YAML")
    assert found["binary.md"].error == "The file is not UTF-8 text."


async def test_two_files_with_the_same_id_both_stay_listed(session, tmp_path):
    write(tmp_path, "one.md", RB.format(id="RB-7", title="One", tags="", services="", body=""))
    write(tmp_path, "two.md", RB.format(id="RB-7", title="Two", tags="", services="", body=""))
    report = await service.sync_runbooks(session, directory=tmp_path)
    assert list(report.errors) == ["two.md"]
    assert "Duplicate id RB-7" in report.errors["two.md"]
    assert (await service.get_runbook(session, key="RB-7")).title == "One"
    assert len(await service.find_runbooks(session)) == 2


async def test_search_ranks_title_matches_first_and_highlights_escaped_snippets(session, tmp_path):
    write(
        tmp_path,
        "a.md",
        RB.format(
            id="RB-A",
            title="Checklists",
            tags="",
            services="",
            body="Mentions replication once; 5 > 3 & 2 < 4 near replication",
        ),
    )
    write(
        tmp_path,
        "b.md",
        RB.format(
            id="RB-B",
            title="Replication lag",
            tags="",
            services="",
            body="When replication lag grows on the replica",
        ),
    )
    write(tmp_path, "c.md", RB.format(id="RB-C", title="Unrelated", tags="", services="", body="DNS only"))
    await service.sync_runbooks(session, directory=tmp_path)
    found = await service.find_runbooks(session, q="replication")
    assert [f.runbook.key for f in found] == ["RB-B", "RB-A"]
    snippet = str(found[1].snippet)
    assert "<mark>replication</mark>" in snippet.lower() or "<mark>Replication</mark>" in snippet
    assert "&amp;" in snippet and "&gt;" in snippet
    assert nh3.clean(snippet, tags={"mark"}) == snippet


async def test_the_library_filters_by_tag_and_service(session, tmp_path):
    write(
        tmp_path, "a.md", RB.format(id="RB-A", title="A", tags="db, latency", services="orders-db", body="")
    )
    write(tmp_path, "b.md", RB.format(id="RB-B", title="B", tags="dns", services="edge", body=""))
    await service.sync_runbooks(session, directory=tmp_path)
    assert [f.runbook.key for f in await service.find_runbooks(session, tag="dns")] == ["RB-B"]
    assert [f.runbook.key for f in await service.find_runbooks(session, service="orders-db")] == ["RB-A"]


async def test_an_incident_is_offered_the_runbooks_of_its_services(session, tmp_path, responder):
    write(tmp_path, "a.md", RB.format(id="RB-A", title="A", tags="", services="checkout", body=""))
    write(tmp_path, "b.md", RB.format(id="RB-B", title="B", tags="checkout", services="", body=""))
    write(tmp_path, "c.md", RB.format(id="RB-C", title="C", tags="", services="search", body=""))
    await service.sync_runbooks(session, directory=tmp_path)
    suggested = await service.suggest_for_incident(session, services=["checkout", "payments-api"])
    assert [r.key for r in suggested] == ["RB-A", "RB-B"]


# ---------------------------------------------------------------- pages


@pytest.fixture
def library(app, tmp_path, monkeypatch):
    """The app reading runbooks from a fresh directory."""
    monkeypatch.setattr(app.state.settings, "runbooks_dir", tmp_path)
    write(
        tmp_path,
        "rb.md",
        RB.format(
            id="RB-9",
            title="Checkout errors",
            tags="http",
            services="checkout",
            body="## First steps\n\nLook at the 5xx rate.\n\n```mermaid\ngraph TD\nA-->B\n```",
        ),
    )
    return tmp_path


async def test_the_library_page_lists_runbooks_and_answers_htmx_with_the_results_only(
    client, responder, library
):
    await sign_in(client, responder)
    page = await client.get("/runbooks")
    assert "Checkout errors" in page.text and "<html" in page.text
    fragment = await client.get("/runbooks?q=5xx", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="icc-results">')
    assert "Checkout errors" in fragment.text
    none = await client.get("/runbooks?q=kafka", headers={"HX-Request": "true"})
    assert "No runbook matches" in none.text


async def test_a_new_file_appears_without_a_restart(client, responder, library):
    await sign_in(client, responder)
    await client.get("/runbooks")
    write(library, "new.md", RB.format(id="RB-10", title="Fresh one", tags="", services="", body=""))
    assert "Fresh one" in (await client.get("/runbooks")).text


async def test_the_viewer_shows_the_document_with_its_contents(client, responder, library):
    await sign_in(client, responder)
    page = await client.get("/runbooks/RB-9")
    assert page.status_code == 200
    assert '<a href="#first-steps">First steps</a>' in page.text
    assert '<pre class="mermaid">' in page.text
    missing = await client.get("/runbooks/RB-404")
    assert missing.status_code == 404 and "No runbook RB-404." in missing.text


async def test_beside_an_incident_the_runbook_keeps_its_timers_and_can_be_attached(
    client, session, responder, library
):
    csrf = await sign_in(client, responder)
    incident = await incidents.declare_incident(
        session, actor=responder, title="Checkout 5xx", severity="SEV1", services=["checkout"]
    )
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert f'hx-get="/runbooks/RB-9?incident={incident.ref}"' in page
    sheet = await client.get(f"/runbooks/RB-9?incident={incident.ref}", headers={"HX-Request": "true"})
    assert "<html" not in sheet.text
    assert "sheet-incident" in sheet.text and "data-timer" in sheet.text
    assert f"Attach to {incident.ref}" in sheet.text
    deep = (await client.get(f"/incidents/{incident.ref}?runbook=RB-9")).text
    assert "data-deep-link" in deep and "Checkout errors" in deep
    attached = await client.post(f"/incidents/{incident.ref}/runbooks/RB-9/attach", data={"csrf_token": csrf})
    assert attached.status_code == 303
    entries, _ = await incidents.list_timeline(session, ref=incident.ref)
    assert entries[-1].kind == "runbook"
    assert entries[-1].body == "Following runbook [RB-9 Checkout errors](/runbooks/RB-9)."


async def test_recommended_actions_show_only_beside_an_incident_and_run_nothing(
    client, session, responder, library
):
    write(library, "act.md", "---\nid: RB-ACT\ntitle: Restart\nactions: [service-restart]\n---\nbody\n")
    await sign_in(client, responder)
    incident = await incidents.declare_incident(session, actor=responder, title="x", severity="SEV3")
    alone = (await client.get("/runbooks/RB-ACT")).text
    assert "Run service-restart" not in alone
    beside = (await client.get(f"/runbooks/RB-ACT?incident={incident.ref}")).text
    # The button only opens the preview dialog (a POST that prepares a run); nothing is sent.
    assert f'hx-post="/incidents/{incident.ref}/actions/service-restart"' in beside
    assert '<button type="submit" class="action">Run service-restart</button>' in beside
    runs = await client.get(f"/api/v1/incidents/{incident.ref}/action-runs")
    assert runs.json()["items"] == []
