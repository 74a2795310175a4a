"""The description above a paused payment run's approval form, as the approver reads it."""

from __future__ import annotations

from datetime import UTC, datetime

from yinqi.approvals import approval_form_description
from yinqi.money import Money
from yinqi.store.approvals import PendingRow

CNY_ACCOUNT = "1202021209900123456"
USD_ACCOUNT = "6222021234567890"


def waiting(amount: str, currency: str, levels: tuple[str, ...], filled: int = 0) -> PendingRow:
    return PendingRow(payment_id=1, end_to_end_id="YQ1", amount=Money.of(amount, currency),
                      category="supplier", maker="wu.maker", levels=levels,
                      filled={n: f"user{n}" for n in range(1, filled + 1)},
                      next_role=levels[filled] if filled < len(levels) else None,
                      can_approve=None, why_not=None, waiting_since=datetime.now(UTC))


def test_the_form_says_what_waits_from_where_and_what_deciding_does() -> None:
    rows = [waiting("1000.25", "CNY", ("approver",)),
            waiting("234.25", "CNY", ("approver", "cfo"), filled=1),
            waiting("200", "USD", ("approver",)),
            waiting("5000", "JPY", ())]
    text = approval_form_description(rows, [("icbc", CNY_ACCOUNT, "CNY"),
                                            ("cmb", USD_ACCOUNT, "USD"),
                                            ("icbc", CNY_ACCOUNT, "CNY")])
    lines = text.splitlines()
    assert lines[0] == "### 4 payment(s) wait for approval"
    # Totals are exact decimal sums per currency, never floats.
    assert "- **Totals:** 1234.50 CNY; 5000 JPY; 200.00 USD" in lines
    # Each paying account once, masked: Prefect stores the description and shows it.
    assert r"- **Paid from:** cmb \*\*\*\*7890 \(USD\); icbc \*\*\*\*3456 \(CNY\)" in lines
    assert CNY_ACCOUNT not in text and USD_ACCOUNT not in text
    assert ("- **Levels needed:** approver (2); approver → cfo (1); "
            "none (the policy cannot say) (1)") in lines
    assert "- **Next level:** approver (2); cfo (1)" in lines
    assert "**Reject** needs a reason" in text
    assert "**6-digit one-time code** is required" in text


def test_names_from_configuration_cannot_add_links_or_formatting() -> None:
    rows = [waiting("10", "CNY", ("[approve here](https://evil.example)",))]
    text = approval_form_description(rows, [("<b>bank</b>", CNY_ACCOUNT, "CNY")])
    assert "](https://" not in text and "<b>" not in text
    assert r"\[approve here\]\(https://evil.example\) (1)" in text
