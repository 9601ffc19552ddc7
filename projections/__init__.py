"""The read side of kami: projections of the event log into tables.

Design
------

- **A projection** (``projections.base.Projection``) is a name (``read_model``), a
  version, its own tables and one handler per event type. Handlers are methods marked
  ``@handles(Order.Paid)`` and named after their event (``order_paid``); the
  projection's ``topics`` are derived from them, so the runner decodes nothing else.
  It is a runner ``Consumer``: ``apply(conn, events)`` runs inside the runner's
  transaction, which also records the position, so a batch is applied exactly once.
- **Versions.** Table names carry the version (``rm_dashboard_v1_merchants``) and so
  does the tracking name (``name`` = ``rm_dashboard_v1``), so a rebuild builds v2
  beside the live v1, from position 0, with its own position. ``table_names(v)`` and
  ``ddl(v)`` give any version's tables; ``projections.catalog`` records which version
  is live, and queries read that one (``Projection.live``). Promoting a caught-up
  version is one row update; then the old tables can be dropped (issue 5).
- **Deterministic and replayable.** Handlers use the event's business timestamp, never
  the clock; read and write only their own tables; and turn the same events into the
  same rows however the log is cut into batches. A rebuild from zero therefore equals
  the live projection row for row (invariant 4); ``Projection.rows`` dumps them for
  the comparison (and for issue 5's rebuild diff).
- **Any order that keeps each aggregate's.** Through Kafka, messages are keyed by
  aggregate: one aggregate's events stay in order, different aggregates' arrive in
  any relative order, and two ``kami consume`` processes may apply batches of the same
  projection at once. So a handler's effect depends only on its event and on rows
  written by earlier events of *the same aggregate* (an order's merchant from its
  ``Order.Placed``). Where two aggregates' facts meet in one row, the writes commute:
  counters are pure additions, a column is put by one aggregate only, a first time is
  ``LEAST`` of the candidates (``base.earliest``); a figure that needs both facts is
  derived when read (also-bought pairs, repeat orders). The same events then give the
  same rows in log order, in any such permutation, and from Kafka: the proof is
  ``tests/integration/test_partition_order.py``. The domain helps: ``Order.Paid`` says
  whether it was honoured, ``Promoter.Joined`` names its upline, postings name the
  merchant's account, and an order that will not take its cards releases them.
- **Batched.** ``begin`` prefetches, in a few ``= ANY`` queries, the rows of its own
  tables that the batch reads (an order's merchant, a bucket's product); handlers then
  work on memory only (``base.Changes``: puts, deletes, counter deltas, merged per key);
  ``flush`` writes each table in at most three set-based statements (``unnest``
  arrays, ``ON CONFLICT``), all sent in one pipeline. Cost per batch is a handful of
  round trips, whatever its size.
- **Failures** (issue 5's dead letters). Since handlers touch only memory, a handler
  that raises leaves nothing written: ``apply`` raises ``HandlerFailed`` naming the
  position and event; the LogRunner rolls back that projection's savepoint (the others
  sharing the step still commit) and the Kafka consumer its transaction, and a runner
  can record the dead letter and, per ``Projection.on_failure`` (``stop`` or
  ``skip``), stop there or apply the same batch again without that event.
- **As of an instant.** The ledger stores every entry with its position and timestamp,
  so balances as of any time or position are a query. Score inputs are daily buckets,
  so any 30-day window is a sum as of any day. Other read models as of an instant are
  a replay of a fresh version up to that position.

Reading (what a query route does): one snapshot for the figures and the position, so
that the position never claims more than the figures show::

    with pool.connection() as conn, snapshot(conn):
        view = DashboardProjection.live(conn)           # the live version
        position = read_model_position(conn, view.name)  # consumers.positions
        figures = merchant_dashboard(conn, merchant_id, version=view.version)

Read models (one module each; query functions return frozen dataclasses, money in fen):

- ``dashboard``: per merchant, every figure of API.md's dashboard.
- ``payouts``: per promoter, commissions and referrals.
- ``score_inputs``: per merchant and day, the counts behind the issue-4 score.
- ``ledger``: balances per account, now and as of any instant, and every entry.
- ``also_bought``: per product, what its buyers also bought.
- ``overview``: platform totals and merchants per tier.
- ``listing``: the products that can be bought, and what ranks them.

Each module's docstring defines its figures exactly, and says which events it reads
which state from; ``definitions`` holds the terms they share (buyer, honoured payment,
good review). ``registry`` lists them all.
"""
