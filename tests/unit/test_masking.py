"""Masking account numbers where text leaves Yinqi, and escaping text for Prefect's markdown."""

from __future__ import annotations

import dataclasses
import html
import logging
import re
import string
from typing import Any

import markdown_it
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yinqi.security.masking import (
    RedactingFilter,
    account_label,
    escape_markdown,
    install_redaction,
    markdown_table,
    mask_account,
    mask_name,
    redact,
    redact_deep,
)

# --- mask_account, mask_name, account_label -------------------------------------------------


@pytest.mark.parametrize(("number", "shown"), [
    ("6222021234567890", "****7890"), ("6222 0212 3456 7890", "****7890"),
    ("6222-0212-3456-7890", "****7890"), ("NL91ABNA0417164300", "****4300"),
    ("1234", "****"), ("", ""), (None, ""),
])
def test_mask_account_keeps_the_last_four(number: str | None, shown: str) -> None:
    assert mask_account(number) == shown


def test_mask_name_and_the_account_label() -> None:
    assert mask_name("苏州工业园区精密制造有限公司") == "苏********"
    assert mask_name("张伟") == "张*" and mask_name("") == ""
    assert account_label("icbc-sandbox", "基本户", "1202021209900123456") == \
        "icbc-sandbox 基本户 ****3456"


# --- redact -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("paid 6222021234567890 today", "paid ****7890 today"),
    ("账号6222021234567890已销户", "账号****7890已销户"),
    ("balance 1202021209900123456: closed", "balance ****3456: closed"),
    ("ICBC-1202021209900123456-20261126", "ICBC-****3456-20261126"),
    ("6222 0212 3456 7890 and 6222-0212-3456-7890", "****7890 and ****7890"),
    ("accounts: 1202021209900123456,1202021209900654321", "accounts: ****3456,****4321"),
    ("IBAN NL91ABNA0417164300 / GB29 NWBK 6016 1331 9268 19", "IBAN ****4300 / ****6819"),
    ("DE00370400440532013000 (check digits wrong, still an account)", "****3000 (check "
     "digits wrong, still an account)"),
    ("account 755912345610808.", "account ****0808."),
    ("/data/1202021209900123456.sta", "/data/****3456.sta"),
    ("MT940_1202021209900123456_20261126.sta", "MT940_****3456_20261126.sta"),
])
def test_account_numbers_in_free_text_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "2026-11-26 04:10:48.911442", "day 20261126", "amount 20180917.64 CNY",
    "1,234,567,890.00 CNY", "12345678,50 EUR", "0.30000000000000004",
    "e2e YQ30CA35A3BF60C4A1243051F72C585DBF", "msg YQB2026112683A78189B19E3397",
    "voucher FK2026000001", "sha256 6d2c801e6e6c5c8b701fb23c6df30a1cf20a9c25",
    "archive/icbc-sandbox/2026-11-26/041040177268-order-YQB2026.xml", "row 43: 1,234.567",
    "camt.053-****7888-2026-11-26.xml", "port 127.0.0.1:52349",
    "bank reference BE45A1B2C3D4E5F6",  # Belgium's letters, but no IBAN's check digits
])
def test_what_is_not_an_account_number_stays_readable(text: str) -> None:
    assert redact(text) == text


@settings(max_examples=300)
@given(number=st.text(string.digits, min_size=8, max_size=32),
       before=st.sampled_from(["", " ", "账号", "account ", ": ", "(", "'", '"', "=", "-"]),
       after=st.sampled_from(["", " ", "已付", ".", ")", "'", '"', ";", ",x", "-ok"]))
def test_no_cn_account_number_survives_redact(number: str, before: str, after: str) -> None:
    if re.fullmatch(r"(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])", number):
        return  # an 8-digit day is left readable on purpose
    out = redact(f"{before}{number}{after}")
    assert number not in out
    assert f"****{number[-4:]}" in out
    assert redact(out) == out  # masking twice changes nothing


def test_redact_deep_masks_every_string_of_a_document() -> None:
    doc = {"statement": {"account": "1202021209900123456", "lines": 3},
           "failures": [{"message": "statement ICBC-1202021209900123456-20261125 closed"}],
           "ids": ("6222021234567890", 7)}
    assert redact_deep(doc) == {
        "statement": {"account": "****3456", "lines": 3},
        "failures": [{"message": "statement ICBC-****3456-20261125 closed"}],
        "ids": ["****7890", 7]}


# --- the log filter -----------------------------------------------------------------------------


def test_the_filter_masks_message_arguments_and_tracebacks() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    logger = logging.getLogger("yinqi.test_masking")
    logger.propagate = False
    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(RedactingFilter())
    try:
        logger.warning("bank said: %s", "账户6222021234567890已销户")
        try:
            raise ValueError("payee 49505976717236739 refused")
        except ValueError:
            logger.exception("failed for %d payment(s)", 3)
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "6222021234567890" not in text and "49505976717236739" not in text
    assert "账户****7890已销户" in text and "payee ****6739 refused" in text
    assert "failed for 3 payment(s)" in text


def test_install_covers_child_loggers_through_the_handlers() -> None:
    # A logger's own filter never sees its children's records; the handlers' filters do.
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    parent = logging.getLogger("yinqi")
    handler = Keep()
    parent.addHandler(handler)
    old_level = parent.level
    parent.setLevel(logging.INFO)
    try:
        install_redaction()
        install_redaction()  # idempotent: one filter, not two
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logging.getLogger("yinqi.pipeline.some_new_child").info("sent to %s", "6222021234567890")
    finally:
        parent.removeHandler(handler)
        parent.setLevel(old_level)
    assert seen == ["sent to ****7890"]
    prefect = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    assert all(any(isinstance(f, RedactingFilter) for f in lg.filters) for lg in prefect)


# --- markdown -----------------------------------------------------------------------------------

_MD = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
           "[click](javascript:alert(1))", "![x](http://evil.example/x.png)",
           '=HYPERLINK("http://x","y")', "@SUM(1+1)", "+cmd|' /C calc'!A0", "-2+3",
           "'; DROP TABLE payments; --", "Robert'); DELETE FROM users;--", "- - -", "# title",
           "1. first", "**bold** _it_ `code` ~~gone~~", "a | b", "&lt;b&gt;", "x\\", "<http://x>"]


def _rendered(markdown: str) -> str:
    out = _MD.render(markdown).strip()
    return out.removeprefix("<p>").removesuffix("</p>")


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_renders_as_itself_and_nothing_else(text: str) -> None:
    shown = _rendered(escape_markdown(text))
    assert "<" not in shown, shown  # no tag of any kind: no script, image, link, emphasis
    assert html.unescape(shown) == text


@settings(max_examples=500)
@given(st.lists(st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6),
    st.sampled_from(list("\\`*_{}[]()#+-.!|~<>&=:/ \n\t1") + ["- ", "1. ", "---", "    ", "](",
                                                              "&amp;", "javascript:"])),
    max_size=12).map("".join))
def test_any_text_renders_literally(text: str) -> None:
    shown = _rendered(escape_markdown(text))
    assert "<" not in shown
    assert html.unescape(shown) == " ".join(text.split())


def test_table_cells_are_masked_escaped_and_stay_one_cell() -> None:
    rows = markdown_table([{"row": 43, "reason": "类别 '<b>x</b>': unknown | 6222021234567890"}])
    assert rows == [{"row": 43,
                     "reason": "类别 '&lt;b&gt;x&lt;/b&gt;': unknown \\| \\*\\*\\*\\*7890"}]
    table = _MD.render("| row | reason |\n|---|---|\n| 43 | " + rows[0]["reason"] + " |")
    assert table.count("<td>") == 2 and "<b>" not in table


# --- naming our accounts without their numbers (Prefect parameters, --account) ----------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from config import load_config, load_settings

    return load_config(load_settings(home=tmp_path_factory.mktemp("masking-home")))


def test_account_references_resolve_to_the_numbers(config: Any) -> None:
    from yinqi.recon.accounts import group_ref, labels, resolve_accounts

    assert resolve_accounts(config, None) is None
    assert resolve_accounts(config, ["****3456", "icbc-sandbox:****4321"]) == [
        "1202021209900123456", "1202021209900654321"]
    assert resolve_accounts(config, [group_ref("cny-accounts")]) == [
        "1202021209900123456", "1202021209900654321", "755912345610808"]
    assert resolve_accounts(config, ["755912345610808", "****0808"]) == ["755912345610808"]
    assert labels(config)["755912345610808"] == {"bank": "cmb-sandbox", "account_name": "一般户",
                                                  "account": "****0808"}


@pytest.mark.parametrize(("ref", "problem"), [
    ("****9999", "no account of ours matches '****9999'"),
    ("cmb-sandbox:****3456", "no account of ours matches"),
    ("group:nope", "no account group 'nope' in reconciliation.toml (known: cny-accounts, "
                   "usd-accounts)"),
])
def test_a_reference_that_names_nothing_is_refused(config: Any, ref: str, problem: str) -> None:
    from yinqi.errors import InvalidValue
    from yinqi.recon.accounts import resolve_accounts

    with pytest.raises(InvalidValue, match=re.escape(problem)):
        resolve_accounts(config, [ref])


def test_last_four_digits_shared_by_two_accounts_need_the_bank(config: Any) -> None:
    from yinqi.errors import InvalidValue
    from yinqi.recon.accounts import resolve_accounts

    twin = config.accounts[0].model_copy(update={"bank": "cmb-sandbox",
                                                 "number": "9999000000123456"})
    both = dataclasses.replace(config, accounts=[*config.accounts, twin])
    with pytest.raises(InvalidValue, match=r"matches 2 accounts .*write it as <bank>:\*\*\*\*1234"):
        resolve_accounts(both, ["****3456"])
    assert resolve_accounts(both, ["cmb-sandbox:****3456"]) == ["9999000000123456"]
