async def test_probe(api_as, responder, frozen_clock):
    import httpx

    a = await api_as(responder)
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=a._transport.app, raise_app_exceptions=False),
        base_url="http://test",
        headers=a.headers,
    )
    r = await api.post(
        "/api/v1/incidents", json={"title": "Checkout 502", "severity": "SEV1", "services": ["checkout"]}
    )

    ref = r.json()["ref"]
    for method, url, kw in [
        ("post", "/api/v1/incidents", {"json": {"title": "a\u0000b", "severity": "SEV1"}}),
        ("get", "/api/v1/incidents?q=a%00b", {}),
        ("get", "/api/v1/incidents?service=checkout", {}),
        ("get", "/api/v1/incidents?service=a%00b", {}),
        ("get", "/api/v1/incidents/INC%00x", {}),
        ("get", "/api/v1/incidents?cursor=99999999999999999999", {}),
        ("get", "/api/v1/incidents?cursor=9999999999", {}),
        ("get", "/api/v1/timeline/99999999999/history", {}),
        ("get", f"/api/v1/incidents/{ref}/timeline?after=99999999999", {}),
        ("post", f"/api/v1/incidents/{ref}/timeline", {"json": {"body": "x\u0000"}}),
        ("post", f"/api/v1/incidents/{ref}/timeline", {"json": {"body": "x", "client_key": "a\u0000"}}),
        ("put", f"/api/v1/incidents/{ref}/roles/scribe", {"json": {"email": "a\u0000"}}),
        ("post", f"/api/v1/incidents/{ref}/checklist/a%00", {"json": {"done": True}}),
        ("post", f"/api/v1/incidents/{ref}/severity", {"json": {"severity": "SEV2", "reason": "a\u0000"}}),
        (
            "post",
            f"/api/v1/incidents/{ref}/timeline",
            {"json": {"body": "x", "occurred_at": "2026-11-23T13:00"}},
        ),
        (
            "post",
            f"/api/v1/incidents/{ref}/timeline",
            {"json": {"body": "x", "occurred_at": "0001-01-01T00:00:00+14:00"}},
        ),
        ("post", "/api/v1/incidents", {"content": b"{bad", "headers": {"content-type": "application/json"}}),
        ("post", "/api/v1/incidents", {"content": b"[]", "headers": {"content-type": "application/json"}}),
        ("post", "/api/v1/incidents", {"content": b"null", "headers": {"content-type": "application/json"}}),
        (
            "post",
            "/api/v1/incidents",
            {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
        ),
        ("post", "/api/v1/incidents", {"data": {"title": "x", "severity": "SEV1"}}),
        ("post", "/api/v1/incidents", {"json": {"title": "x", "severity": "SEV1", "services": "checkout"}}),
        ("post", "/api/v1/incidents", {"json": {"title": "x", "severity": "SEV1", "services": [1]}}),
        ("post", "/api/v1/incidents", {"json": {"title": "x", "severity": "SEV1", "nope": 1}}),
        ("post", "/api/v1/incidents", {"json": {"title": "", "severity": "SEV1"}}),
        ("post", "/api/v1/incidents", {"json": {"title": "x", "severity": "SEV9"}}),
        ("get", "/api/v1/incidents?status=nope", {}),
        ("get", "/api/v1/incidents?limit=0", {}),
        ("post", "/api/v1/incidents/INC-X/timeline", {"json": {"body": "x"}}),
        ("delete", f"/api/v1/incidents/{ref}/roles/sme", {}),
        ("post", f"/api/v1/incidents/{ref}/roles/scribe", {"json": {"email": "x"}}),
    ]:
        try:
            r = await api.request(method.upper(), url, **kw)
            print(method, url, kw, "->", r.status_code, r.text[:300])
        except Exception as e:
            print(method, url, kw, "EXC", type(e), e)
    big = b'{"title": "' + b"x" * (1024 * 1024 + 10) + b'", "severity": "SEV1"}'
    r = await api.post("/api/v1/incidents", content=big, headers={"content-type": "application/json"})
    print("big", r.status_code, r.text[:200])

    async def gen():
        yield big

    r = await api.post("/api/v1/incidents", content=gen(), headers={"content-type": "application/json"})
    print("big chunked", r.status_code, r.text[:200])
    r = await api.get("/api/v1/incidents")
    print(len(r.json()["items"]))
