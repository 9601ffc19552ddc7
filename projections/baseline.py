"""The benchmark baseline: any kami projection run by eventsourcing's ``ProjectionRunner``.

That runner hands a projection one event at a time, and the view commits each event's
rows with its tracking record in a transaction of its own. Running the very same
projection code that way is the fair baseline for issue 3's "at least 10x": the
difference measured is batching, nothing else. Not used outside benchmarks.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection as EsProjection

from projections.base import Projection


class LogReader(Application[Any]):
    """Reads kami's event log (the Shop's recorder is named after the app: ``kami``)."""

    name = "kami"


class OneEventView(PostgresTrackingRecorder):
    """A view that applies one event per transaction, with its tracking record."""

    projection: Projection[Any]

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            self.projection.create_tables(curs.connection)

    def apply_one(self, event: Any, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self.projection.apply(curs.connection, [(tracking.notification_id, event)])
            self._insert_tracking(curs, tracking)


def eventsourcing_classes(
    projection: Projection[Any],
) -> tuple[type[EsProjection[OneEventView]], type[OneEventView]]:
    """A projection class and a view class for ``ProjectionRunner``, wrapping ours."""

    class View(OneEventView):
        pass

    View.projection = projection

    class Adapter(EsProjection[View]):
        name = f"es_{projection.name}"
        topics = tuple(sorted(projection.topics))

        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.apply_one(domain_event, tracking)

    return Adapter, View
