"""``kami tiers evaluate``: merchants evaluated on demand, and the schedule moved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from consumers.embedded import EmbeddedWorkers
from domain.clock import ManualClock
from domain.merchant import Merchant
from kami.bootstrap import Kami, build
from kami.cli import main
from kami.settings import SECRET_VARS
from tests.support.databases import fresh_database


@pytest.fixture
def own(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[Kami]:
    with fresh_database(database_url, "kami_tiers_cli") as url:
        for name in SECRET_VARS:
            monkeypatch.setenv(name, uuid4().hex)
        monkeypatch.setenv("KAMI_DATABASE_URL", url)
        monkeypatch.setenv("KAMI_HOME", str(tmp_path))
        # Registered long before the CLI's own (system) clock reads the time.
        kami = build(url, clock=ManualClock(datetime.now(UTC) - timedelta(days=400)))
        try:
            yield kami
        finally:
            kami.close()


def test_tiers_evaluate_scores_every_known_merchant_now(
    own: Kami, capsys: pytest.CaptureFixture[str]
) -> None:
    merchants = [own.shop.register_merchant(f"m-{i}", "m@x").merchant_id for i in range(2)]
    workers = EmbeddedWorkers(own)
    workers.runner.catch_up()  # the tiering process learns of the merchants

    assert main(["tiers", "evaluate"]) == 0

    out = capsys.readouterr().out
    assert "evaluated 2 merchant(s)" in out
    for merchant_id in merchants:
        assert str(merchant_id) in out
        (evaluated,) = [e for e in own.shop.events.get(merchant_id) if isinstance(e, Merchant.Evaluated)]
        assert evaluated.trigger == "on_demand"
    # The on-demand run moved each merchant's next scheduled evaluation a period on.
    workers.runner.catch_up()
    with own.pool.connection() as conn:
        due = conn.execute(
            "SELECT due_at FROM pm_tiering_due WHERE kind = 'evaluate' AND merchant_id = ANY(%s)",
            (merchants,),
        ).fetchall()
    assert len(due) == 2 and all(row[0] > datetime.now(UTC) + timedelta(days=29) for row in due)


def test_tiers_evaluate_names_an_unknown_merchant(own: Kami, capsys: pytest.CaptureFixture[str]) -> None:
    EmbeddedWorkers(own).runner.catch_up()
    assert main(["tiers", "evaluate", str(uuid4())]) == 1
    assert "no such merchant" in capsys.readouterr().out


def test_tiers_evaluate_needs_the_score_inputs_read_model(
    own: Kami, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiers", "evaluate"]) == 1
    assert "not built yet" in capsys.readouterr().out
