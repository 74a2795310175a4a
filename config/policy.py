"""approval_policy.toml: who must approve a payment, by amount and category."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field, Strict

from config._problems import Loc, Problem
from config.fields import ConfigModel, Count, CurrencyCode, Flag, Money
from yinqi.errors import InvalidValue

ROLES: tuple[str, ...] = (
    "maker",
    "approver",
    "finance_manager",
    "cfo",
    "treasurer",
    "auditor",
    "admin",
)

PaymentCategory = Literal["payroll", "supplier", "expense"]
PAYMENT_CATEGORIES: tuple[str, ...] = get_args(PaymentCategory)


def _must_be_true(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true: one person never fills two approval levels of one "
                         "payment (segregation of duties is not configurable)")
    return value


def _role(name: str) -> str:
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r} (known: {', '.join(ROLES)})")
    return name


Role = Annotated[str, Strict(), AfterValidator(_role)]


class Tier(ConfigModel):
    """Payments below ``up_to`` (exclusive; none on the last tier) need these levels in order."""

    up_to: Money | None = None
    levels: Annotated[tuple[Role, ...], Field(min_length=1)]


class CategoryPolicy(ConfigModel):
    """A category's own tiers; without them the category follows the default tiers."""

    tiers: Annotated[tuple[Tier, ...], Field(min_length=1)] | None = None


class Categories(ConfigModel):
    # One field per known category, so that a misspelled [categories.payrol] is an error
    # rather than a policy that silently never applies.
    payroll: CategoryPolicy = CategoryPolicy()
    supplier: CategoryPolicy = CategoryPolicy()
    expense: CategoryPolicy = CategoryPolicy()


class ApprovalPolicy(ConfigModel):
    currency: CurrencyCode
    maker_checker: Flag
    # Always true: the database itself forbids one person on two levels of one payment
    # (a unique constraint), so a policy saying otherwise could never be honoured.
    distinct_approvers_per_level: Annotated[Flag, AfterValidator(_must_be_true)]
    escalate_after_hours: Count
    tiers: Annotated[tuple[Tier, ...], Field(min_length=1)]
    categories: Categories = Categories()

    def levels_for(self, amount: Decimal, category: str | None = None) -> list[str]:
        """The roles that must approve, in order, a payment of ``amount`` in ``currency``."""
        if not isinstance(amount, Decimal):
            raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
        if not amount.is_finite() or amount <= 0:
            raise InvalidValue(f"a payment amount must be greater than 0, got {amount}")
        tiers = self.tiers
        if category is not None:
            if category not in PAYMENT_CATEGORIES:
                raise InvalidValue(
                    f"unknown payment category {category!r} "
                    f"(known: {', '.join(PAYMENT_CATEGORIES)})"
                )
            tiers = getattr(self.categories, category).tiers or tiers
        # Validated on load: every tier but the last has an up_to, in increasing order.
        for tier in tiers[:-1]:
            if tier.up_to is not None and amount < tier.up_to:
                return list(tier.levels)
        return list(tiers[-1].levels)


def policy_problems(policy: ApprovalPolicy) -> Iterator[Problem]:
    yield from _tier_problems(policy.tiers, ("tiers",))
    for name in PAYMENT_CATEGORIES:
        tiers = getattr(policy.categories, name).tiers
        if tiers is not None:
            yield from _tier_problems(tiers, ("categories", name, "tiers"))


def _tier_problems(tiers: Sequence[Tier], where: Loc) -> Iterator[Problem]:
    previous: Decimal | None = None
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        if tier.up_to is None:
            if index != last:
                yield Problem(
                    (*where, index), "only the last tier may leave out up_to; move this one last"
                )
            continue
        if index == last:
            yield Problem(
                (*where, index, "up_to"),
                f"the last tier must have no up_to, so that every amount has a tier "
                f"(got {tier.up_to})",
            )
        if previous is not None and tier.up_to <= previous:
            yield Problem(
                (*where, index, "up_to"),
                f"must be greater than the previous tier's up_to {previous} (got {tier.up_to})",
            )
        previous = tier.up_to
