"""GET /metrics: open to anyone, Prometheus text format, the status figures per consumer,
events appended per topic, and request latencies per route template and status."""

from __future__ import annotations

import re
from uuid import uuid4

from consumers import chain
from consumers.runner import LogRunner
from consumers.status import collect
from kami.bootstrap import Kami
from projections.registry import build_all
from tests.e2e.api_client import in_process, random_cards

LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{(?:{LABEL},?)*\}})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition; fails on a malformed line."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        family = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert name in types or family in types or f"{family}_total" in types, f"no TYPE for {name}"
        pairs = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        samples[(name, pairs)] = float(value)
    return samples


def find(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    found = [v for (n, pairs), v in samples.items() if n == name and wanted <= pairs]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def test_metrics_export_status_appends_and_latencies_to_anyone(system: Kami) -> None:
    with in_process(system) as api:
        merchant_id, merchant = api.merchant()
        product_id = api.product(merchant, random_cards(3))
        order = api.order(product_id)
        api.pay(order)
        api.read_order(order)
        assert api.http.get(f"/v1/orders/{uuid4()}", params={"token": "x"}).status_code == 404
        assert api.http.get("/no/such/path").status_code == 404
        LogRunner(system.pool, system.shop.recorder, system.shop.mapper, build_all()).catch_up()
        with system.pool.connection() as conn:
            chain.ensure_schema(conn)
            conn.commit()
            chain.extend(conn, system.shop.recorder.events_table_name)

        r = api.http.get("/metrics")  # no credentials: open, like /healthz

        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = parse(r.text)
        head = system.shop.position()
        with system.pool.connection() as conn:
            status = collect(conn, system.shop.recorder.events_table_name, system.shop.mapper)

        assert find(samples, "kami_log_head_position") == head
        assert find(samples, "kami_chain_head_position") == head
        for c in status.consumers:
            if c.kind == "projection":
                labels = {"consumer": c.name, "read_model": c.read_model or "", "state": "live"}
                assert find(samples, "kami_consumer_position", **labels) == c.position == head
                assert find(samples, "kami_consumer_lag_events", **labels) == 0
                assert find(samples, "kami_consumer_lag_seconds", **labels) == 0
                assert find(samples, "kami_dead_letters_open", consumer=c.name) == 0

        # Appends: exactly what this Shop wrote, per topic.
        assert find(samples, "kami_events_appended_total", topic="domain.merchant:Merchant.Registered") == 1
        assert find(samples, "kami_events_appended_total", topic="domain.order:Order.Paid") == 1
        appended = sum(v for (n, _), v in samples.items() if n == "kami_events_appended_total")
        assert appended == head

        # Latencies by route template, never by raw path.
        name = "kami_http_request_duration_seconds"
        assert find(samples, f"{name}_count", method="POST", route="/v1/merchants", status="201") == 1
        assert find(samples, f"{name}_count", method="GET", route="/v1/orders/{order_id}", status="200") == 1
        assert find(samples, f"{name}_count", method="GET", route="/v1/orders/{order_id}", status="404") == 1
        assert find(samples, f"{name}_count", method="GET", route="unmatched", status="404") == 1
        created = {"method": "POST", "route": "/v1/merchants", "status": "201"}
        assert find(samples, f"{name}_bucket", **created, le="+Inf") == 1
        assert not any(merchant_id in dict(pairs).get("route", "") for _, pairs in samples)
        assert find(samples, f"{name}_sum", method="POST", route="/v1/merchants", status="201") > 0

        again = parse(api.http.get("/metrics").text)
        assert find(again, f"{name}_count", method="GET", route="/metrics", status="200") == 1
        assert "/metrics" in api.http.get("/openapi.json").json()["paths"]
