"""Budgets: the estimate of a call's most cost, the refusal before a call that would cross
a budget, and the warning when a call steps over the threshold."""

from __future__ import annotations

import pytest

from loom.db.llm import Spend
from loom.llm import budget
from loom.llm.errors import LlmBudgetExceeded

MINI = "openai/gpt-4o-mini"
PRICE_IN, PRICE_OUT = 0.15 / 1e6, 0.6 / 1e6


def test_prices_come_from_the_bundled_map_and_unpriced_models_cost_nothing() -> None:
    assert budget.prices(MINI) == pytest.approx((PRICE_IN, PRICE_OUT))
    assert budget.prices("openai/smollm2-135m-instruct") == (0.0, 0.0)
    assert budget.cost(MINI, 1000, 100) == pytest.approx(1000 * PRICE_IN + 100 * PRICE_OUT)


def test_the_estimate_counts_the_prompt_and_the_most_it_may_write() -> None:
    messages = [{"role": "user", "content": "word " * 1000}]
    with_cap = budget.estimate(MINI, messages=messages, max_tokens=10)
    assert 1000 * PRICE_IN < with_cap < 1100 * PRICE_IN + 10 * PRICE_OUT
    uncapped = budget.estimate(MINI, messages=messages)
    assert uncapped - with_cap == pytest.approx((budget.DEFAULT_OUTPUT_ESTIMATE - 10) * PRICE_OUT)
    assert budget.estimate("openai/smollm2-135m-instruct", messages=messages) == 0.0
    assert budget.estimate(MINI, texts=["a b c", "d e"]) == pytest.approx(5 * PRICE_IN)


def _spend(month: float, run: float = 0.0, **budget_setting: float) -> Spend:
    return Spend(budget=dict(budget_setting), month_usd=month, run_usd=run)


def test_limits_read_the_workspace_setting_and_the_run() -> None:
    limits = budget.Limits.of(_spend(0, monthly_usd=10, warn_percent=50), 2.0, 80)
    assert (limits.monthly_usd, limits.run_usd, limits.warn_ratio) == (10, 2.0, 0.5)
    none = budget.Limits.of(_spend(0), None, 80)
    assert not none.any and none.warn_ratio == 0.8


def test_a_call_that_could_cross_a_budget_is_refused() -> None:
    limits = budget.Limits(monthly_usd=10, run_usd=1, warn_ratio=0.8)
    budget.check(limits, _spend(9.5, 0.5), 0.5, MINI)  # exactly at both limits: allowed
    with pytest.raises(LlmBudgetExceeded) as monthly:
        budget.check(limits, _spend(9.5), 0.51, MINI)
    assert monthly.value.details == {"budget": "workspace", "limit_usd": 10}
    assert "$10.00" in monthly.value.message and "$9.50" in monthly.value.message
    with pytest.raises(LlmBudgetExceeded) as run:
        budget.check(limits, _spend(0, 0.9), 0.2, MINI)
    assert run.value.details == {"budget": "run", "limit_usd": 1}


def test_a_warning_only_when_the_threshold_is_crossed() -> None:
    limits = budget.Limits(monthly_usd=10, run_usd=None, warn_ratio=0.8)
    assert budget.crossed(limits, _spend(7), 7.9, 0) == []
    [warning] = budget.crossed(limits, _spend(7.9), 8.0, 0)
    assert "monthly model budget is 80% spent ($8.00 of $10.00)" in warning
    assert budget.crossed(limits, _spend(8.5), 9.0, 0) == []  # already warned


def test_dollars_read_well_at_any_size() -> None:
    assert budget.usd(1234.5) == "$1,234.50"
    assert budget.usd(0) == "$0.00"
    assert budget.usd(0.000045) == "$0.000045"
    assert budget.usd(0.0001) == "$0.00010"
