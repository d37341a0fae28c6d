"""A trigger event: what arrived, for which trigger, as it travels through the intake queue.

Its ``delivery_id`` names the delivery (a header, an event id, a Message-ID, a fire time);
the run it starts has the idempotency key ``trigger:<trigger_id>:<delivery_id>``, so an
event processed twice starts one run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

TOPIC = "trigger.event"
MAX_DELIVERY_ID = 100


def delivery_id(raw: str) -> str:
    """A delivery id that fits keys and columns: short ones as they are, long ones hashed."""
    text = raw.strip()
    if 0 < len(text) <= MAX_DELIVERY_ID and text.isprintable():
        return text
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class TriggerEvent:
    trigger_id: UUID
    workflow_id: UUID
    node_id: str
    subtype: str
    delivery_id: str
    input: Any
    received_at: datetime

    @property
    def run_key(self) -> str:
        return f"trigger:{self.trigger_id}:{self.delivery_id}"

    def trigger_info(self) -> dict[str, Any]:
        """The run's ``trigger`` column: which node started it, and with what delivery."""
        return {
            "type": self.subtype.lower(),
            "node_id": self.node_id,
            "trigger_id": str(self.trigger_id),
            "delivery_id": self.delivery_id,
            "received_at": self.received_at.isoformat(),
        }

    def to_payload(self) -> dict[str, Any]:
        return {
            "trigger_id": str(self.trigger_id),
            "workflow_id": str(self.workflow_id),
            "node_id": self.node_id,
            "subtype": self.subtype,
            "delivery_id": self.delivery_id,
            "input": self.input,
            "received_at": self.received_at.isoformat(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TriggerEvent:
        return cls(
            trigger_id=UUID(payload["trigger_id"]),
            workflow_id=UUID(payload["workflow_id"]),
            node_id=payload["node_id"],
            subtype=payload["subtype"],
            delivery_id=payload["delivery_id"],
            input=payload["input"],
            received_at=datetime.fromisoformat(payload["received_at"]),
        )
