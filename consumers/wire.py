"""How a stored event travels through Kafka: the state as the value, the rest in headers.

Watermark markers ("every event up to N has been sent") carry no value and a single
``watermark`` header; the relay sends one to every partition after each batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import Notification

Headers = list[tuple[str, bytes]]


def event_headers(notification: Notification) -> Headers:
    oid = notification.originator_id
    return [
        ("id", str(notification.id).encode()),
        ("oid", str(oid).encode()),
        ("v", str(notification.originator_version).encode()),
        ("topic", notification.topic.encode()),
    ]


def watermark_headers(position: int) -> Headers:
    return [("watermark", str(position).encode())]


def message_key(notification: Notification) -> bytes:
    # Keyed by aggregate, so one aggregate's events share a partition and stay in order.
    return str(notification.originator_id).encode()


@dataclass(frozen=True)
class Watermark:
    position: int


def decode(headers: Headers | None, value: bytes | None) -> Notification | Watermark:
    fields = {k: v for k, v in headers or []}
    if "watermark" in fields:
        return Watermark(int(fields["watermark"]))
    return Notification(
        id=int(fields["id"]),
        originator_id=UUID(fields["oid"].decode()),
        originator_version=int(fields["v"]),
        topic=fields["topic"].decode(),
        state=value or b"",
    )
