"""Reply models that more than one router returns (a router imports this, not another
router: that would import the other's dependencies with it)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from loom.triggers.deploy import Deployment


class DeploymentStateOut(BaseModel):
    state: Literal["undeployed", "deployed", "failed"]
    version: int | None = Field(description="The version whose triggers are bound.")
    concurrency_policy: Literal["allow", "skip", "queue"]
    lease_ttl_seconds: int
    deployed_at: datetime | None

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentStateOut:
        return cls.model_validate(deployment, from_attributes=True)
