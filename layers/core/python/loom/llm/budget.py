"""Budgets: per workspace and calendar month (UTC), set by admins in the workspace settings
(``llm_budget``: ``monthly_usd``, ``warn_percent``), and per run (``CallContext``).

Before each call the gateway estimates its cost at the most it could be (the prompt's
tokens and ``max_tokens`` out, at the model's prices) and refuses the call that would cross
a budget. After it, a warning names each threshold the call crossed. Calls in flight at
once are each checked against what was spent before them, so they may overshoot a budget
by what they cost together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from loom.db.llm import Spend
from loom.llm._litellm import litellm
from loom.llm.errors import LlmBudgetExceeded

log = logging.getLogger(__name__)

# Without max_tokens the estimate assumes this many tokens out.
DEFAULT_OUTPUT_ESTIMATE = 1024


@dataclass(frozen=True)
class Limits:
    monthly_usd: float | None
    run_usd: float | None
    warn_ratio: float

    @classmethod
    def of(cls, spend: Spend, run_budget_usd: float | None, warn_percent: int) -> Limits:
        monthly = spend.budget.get("monthly_usd")
        percent = spend.budget.get("warn_percent", warn_percent)
        return cls(
            monthly_usd=float(monthly) if isinstance(monthly, int | float) else None,
            run_usd=run_budget_usd,
            warn_ratio=float(percent) / 100 if isinstance(percent, int | float) else 0.8,
        )

    @property
    def any(self) -> bool:
        return self.monthly_usd is not None or self.run_usd is not None


@lru_cache(maxsize=512)
def prices(litellm_model: str) -> tuple[float, float]:
    """USD per token in and out from litellm's bundled price map; (0, 0) when unpriced
    (the local model, custom deployments)."""
    try:
        price_in, price_out = litellm().cost_per_token(
            model=litellm_model, prompt_tokens=1, completion_tokens=1
        )
    except Exception:  # litellm raises several kinds for a model it has no price for
        log.debug("No price for %s in litellm's price map; its cost counts as 0.", litellm_model)
        return (0.0, 0.0)
    return (float(price_in), float(price_out))


def cost(litellm_model: str, tokens_in: int, tokens_out: int) -> float:
    price_in, price_out = prices(litellm_model)
    return tokens_in * price_in + tokens_out * price_out


def estimate(
    litellm_model: str,
    *,
    messages: Sequence[dict[str, Any]] | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    texts: Sequence[str] | None = None,
    max_tokens: int | None = None,
) -> float:
    """The most a call could cost: its prompt tokens plus ``max_tokens`` out (embeddings:
    ``texts`` in, nothing out)."""
    price_in, price_out = prices(litellm_model)
    if price_in == 0 and price_out == 0:
        return 0.0
    lib = litellm()
    if texts is not None:
        tokens_in = sum(lib.token_counter(model=litellm_model, text=text) for text in texts)
        return float(tokens_in * price_in)
    tokens_in = lib.token_counter(model=litellm_model, messages=list(messages or []), tools=tools)
    tokens_out = max_tokens if max_tokens is not None else DEFAULT_OUTPUT_ESTIMATE
    return float(tokens_in * price_in + tokens_out * price_out)


def check(limits: Limits, spend: Spend, estimated: float, model: str) -> None:
    """Refuse a call whose estimate would take the month's or the run's spend over budget."""
    if limits.monthly_usd is not None and spend.month_usd + estimated > limits.monthly_usd:
        raise LlmBudgetExceeded(
            f"This workspace's monthly model budget is {usd(limits.monthly_usd)}; "
            f"{usd(spend.month_usd)} is spent and a call to {model} could cost up to "
            f"{usd(estimated)}. The call was not made.",
            solution="An admin can raise llm_budget.monthly_usd at PUT "
            "/v1/workspaces/current/settings; or lower max_tokens, or use a cheaper model.",
            details={"budget": "workspace", "limit_usd": limits.monthly_usd},
        )
    if limits.run_usd is not None and spend.run_usd + estimated > limits.run_usd:
        raise LlmBudgetExceeded(
            f"This run's model budget is {usd(limits.run_usd)}; {usd(spend.run_usd)} is "
            f"spent and a call to {model} could cost up to {usd(estimated)}. The call was "
            "not made.",
            solution="Raise the run's budget, lower max_tokens, or use a cheaper model.",
            details={"budget": "run", "limit_usd": limits.run_usd},
        )


def crossed(limits: Limits, before: Spend, month_after: float, run_after: float) -> list[str]:
    """Warnings for each budget threshold this call's cost stepped over."""
    warnings: list[str] = []
    for name, limit, was, now in (
        ("workspace's monthly", limits.monthly_usd, before.month_usd, month_after),
        ("run's", limits.run_usd, before.run_usd, run_after),
    ):
        if limit is None:
            continue
        threshold = limit * limits.warn_ratio
        if was < threshold <= now:
            warning = (
                f"The {name} model budget is {now / limit:.0%} spent ({usd(now)} of "
                f"{usd(limit)}); calls that would exceed it will be refused."
            )
            log.warning(warning)
            warnings.append(warning)
    return warnings


def usd(amount: float) -> str:
    """Dollars for messages: cents from a cent up, else two significant digits."""
    if amount >= 0.01 or amount <= 0:
        return f"${amount:,.2f}"
    return f"${amount:.{1 - math.floor(math.log10(amount))}f}"
