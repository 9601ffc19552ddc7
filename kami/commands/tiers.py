"""``kami tiers evaluate [MERCHANT_ID...]``: score merchants and apply the tier rules now."""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

from kami.settings import load_settings


def register(commands: Any) -> None:
    parser = commands.add_parser("tiers", help="merchant tiers (分层管理)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    evaluate = actions.add_parser(
        "evaluate",
        help="evaluate merchants now",
        description="Score merchants from the score inputs read model (30 days to today) and "
        "apply the tier rules, as the monthly run does; the next scheduled evaluation then "
        "falls one period later. Without ids, every merchant the tiering process knows.",
    )
    evaluate.add_argument("merchant_ids", nargs="*", type=UUID, metavar="MERCHANT_ID")
    evaluate.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    settings = load_settings()

    from consumers.positions import read_model_position
    from consumers.tiering import TieringManager, policy_from_env
    from domain.exceptions import NotFound
    from kami.commands.common import open_kami
    from projections.score_inputs import ScoreInputsProjection

    policy = policy_from_env()
    kami = open_kami(settings)
    try:
        manager = TieringManager(kami.shop, kami.pool, policy)
        with kami.pool.connection() as conn:
            with conn.transaction():
                manager.create_tables(conn)
            view = ScoreInputsProjection.live(conn)
            built = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (view.table("daily"),)).fetchone()
            if not built or not built[0]:
                print("kami: the score inputs read model is not built yet; kami serve (or kami consume) "
                      "builds it")  # fmt: skip
                return 1
            # The scores are as fresh as the read model: say how far it has got.
            print(f"score inputs at log position {read_model_position(conn, view.name)}"
                  f" of {kami.shop.position()}")  # fmt: skip
        ids = list(args.merchant_ids) or None
        try:
            results = manager.evaluate_now(ids)
        except NotFound as error:
            print(f"kami: {error.detail}")
            return 1
    finally:
        kami.close()
    if not results:
        print("no merchants known to the tiering process yet (it follows the log in kami serve "
              "or kami consume)")  # fmt: skip
    for r in results:
        moved = f"{r.old_tier} -> {r.tier}" if r.tier != r.old_tier else r.tier
        print(f"{r.merchant_id}  score {r.score:6.2f}  band {r.band:<6}  tier {moved}: {r.reason}")
    changed = sum(1 for r in results if r.tier != r.old_tier)
    print(f"evaluated {len(results)} merchant(s); {changed} changed tier")
    return 0
