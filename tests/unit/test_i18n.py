"""Messages in Chinese or English: which language a process speaks, and catalogues that are
complete, translated and compiled from their current source."""

from __future__ import annotations

import gettext
import io
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from yinqi.i18n import (LOCALE_VARIABLES, _, catalogue_path, current_language,
                        ngettext, pgettext, translation, use_language)
from yinqi.i18n.catalogue import compile_po, extract, problems, read_po

PO = catalogue_path("zh_CN").with_suffix(".po")


@pytest.fixture
def no_language(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment that names no language at all."""
    for name in ("YINQI_LANG", *LOCALE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- which language -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "language"), [
    ("zh", "zh"), ("zh_CN", "zh"), ("zh-CN", "zh"), ("zh_CN.UTF-8", "zh"), ("ZH-cn", "zh"),
    ("en", "en"), ("en_US", "en"), ("en_GB.UTF-8", "en"),
    ("fr", "en"), ("klingon", "en"),  # no catalogue: English, and no error
])
def test_yinqi_lang_chooses(no_language: pytest.MonkeyPatch, value: str, language: str) -> None:
    no_language.setenv("LANG", "zh_CN.UTF-8" if language == "en" else "en_US.UTF-8")
    no_language.setenv("YINQI_LANG", value)
    assert current_language() == language


@pytest.mark.parametrize(("variables", "language"), [
    ({}, "en"),
    ({"LANG": "zh_CN.UTF-8"}, "zh"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({"LANG": "POSIX"}, "en"),
    ({"LANG": "fr_FR.UTF-8"}, "en"),
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh"),
    ({"LC_MESSAGES": "en_US.UTF-8", "LC_ALL": "zh_CN.GB18030"}, "zh"),
    ({"LC_ALL": "zh_CN.UTF-8", "LANGUAGE": "en"}, "en"),
    ({"LANGUAGE": "fr:zh_CN:en", "LANG": "en_US.UTF-8"}, "zh"),
    ({"YINQI_LANG": "", "LANG": "zh_CN.UTF-8"}, "zh"),  # left blank: not set
])
def test_else_the_locale_chooses(no_language: pytest.MonkeyPatch, variables: dict[str, str],
                                 language: str) -> None:
    for name, value in variables.items():
        no_language.setenv(name, value)
    assert current_language() == language


def test_the_language_is_decided_at_each_call(no_language: pytest.MonkeyPatch) -> None:
    no_language.setenv("YINQI_LANG", "zh_CN")
    assert _("error") == "错误"
    no_language.setenv("YINQI_LANG", "en")
    assert _("error") == "error"


def test_use_language_wins_over_the_environment_and_ends_with_the_block(
        no_language: pytest.MonkeyPatch) -> None:
    no_language.setenv("YINQI_LANG", "en")
    with use_language("zh-CN") as code:
        assert (code, current_language(), _("payee")) == ("zh", "zh", "收款人")
        with use_language("en"):
            assert _("payee") == "payee"
        assert _("payee") == "收款人"
    assert _("payee") == "payee"
    with pytest.raises(ValueError, match="no catalogue for language 'fr'"):
        with use_language("fr"):
            pass


def test_plural_and_context() -> None:
    with use_language("en"):
        assert [ngettext("{n} attempt", "{n} attempts", n).format(n=n) for n in (1, 2)] == [
            "1 attempt", "2 attempts"]
        assert pgettext("person", "name") == pgettext("account", "name") == "name"
    with use_language("zh"):
        assert [ngettext("{n} attempt", "{n} attempts", n).format(n=n) for n in (1, 2)] == [
            "尝试 1 次", "尝试 2 次"]
        assert (pgettext("person", "name"), pgettext("account", "name"), _("name")) == (
            "姓名", "户名", "名称")
        assert _("a message nobody translated") == "a message nobody translated"


def test_a_catalogue_is_read_once_per_language() -> None:
    assert translation("zh") is translation("zh")
    assert isinstance(translation("zh"), gettext.GNUTranslations)
    assert type(translation("en")) is gettext.NullTranslations


# --- the catalogues -----------------------------------------------------------------------


def test_every_message_is_translated_and_every_catalogue_compiled() -> None:
    # A new _("...") without its Chinese, a translation that lost a placeholder, an entry
    # nothing uses, or a .po edited without `python -m yinqi.i18n compile` all fail here.
    assert problems() == []
    wanted, not_literal = extract()
    assert len({w.key for w in wanted}) > 150 and not not_literal  # the extraction did find the CLI's messages


def test_the_check_finds_an_untranslated_or_unextractable_message(tmp_path: Path) -> None:
    source = tmp_path / "yinqi" / "cli" / "new_cmd.py"
    source.parent.mkdir(parents=True)
    source.write_text('from yinqi.i18n import _\n\n'
                      'print(_("a brand new message"))\n'
                      'print(_("{n} payment(s)".replace("(s)", "s")))\n'
                      'print(_("payee"))\n', encoding="utf-8")
    found = problems(root=tmp_path)
    assert "yinqi/cli/new_cmd.py:3: not in zh_CN: 'a brand new message'" in found
    assert "yinqi/cli/new_cmd.py:4: the message is not a string literal" in found
    assert not [line for line in found if "'payee'" in line and "nothing asks" not in line]
    assert any("nothing asks for 'id' any more" in line for line in found)


def _copy_of_the_catalogues(tmp_path: Path) -> tuple[Path, Path]:
    locale = tmp_path / "locale"
    shutil.copytree(PO.parents[2], locale)
    return locale, catalogue_path("zh_CN", locale).with_suffix(".po")


def test_the_check_finds_a_stale_mo_a_missing_translation_and_a_lost_placeholder(
        tmp_path: Path) -> None:
    locale, po = _copy_of_the_catalogues(tmp_path)
    assert problems(locale_dir=locale) == []
    text = po.read_text(encoding="utf-8")
    edited = (text.replace('msgstr "收款人"', 'msgstr "收款方"')
              .replace('msgstr "{count} 个批次"', 'msgstr "{n} 个批次"')
              .replace('msgstr "已中断"', 'msgstr ""'))
    assert edited.count("\n") == text.count("\n") and edited != text
    po.write_text(edited, encoding="utf-8")
    found = problems(locale_dir=locale)
    assert any("not compiled from yinqi.po" in line for line in found), found
    assert any("has no translation of 'interrupted'" in line for line in found), found
    assert any("placeholders ['n'] in the translation of '{count} batch(es)'" in line
               for line in found), found
    mo = catalogue_path("zh_CN", locale)
    mo.write_bytes(compile_po(po))
    assert not [line for line in problems(locale_dir=locale) if "not compiled" in line]


def test_the_compiled_catalogue_says_what_its_source_says() -> None:
    compiled = gettext.GNUTranslations(io.BytesIO(compile_po(PO)))
    entries = [e for e in read_po(PO) if e.msgid]
    assert len(entries) > 150
    for e in entries:
        if e.msgid_plural is not None:
            got = compiled.npgettext(e.msgctxt, e.msgid, e.msgid_plural, 5) if e.msgctxt \
                else compiled.ngettext(e.msgid, e.msgid_plural, 5)
        elif e.msgctxt is not None:
            got = compiled.pgettext(e.msgctxt, e.msgid)
        else:
            got = compiled.gettext(e.msgid)
        assert got == e.msgstr[0], e.msgid
    assert compiled.info()["plural-forms"] == "nplurals=1; plural=0;"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt not installed")
def test_the_compiler_writes_what_gnu_msgfmt_writes(tmp_path: Path) -> None:
    out = tmp_path / "gnu.mo"
    subprocess.run(["msgfmt", "--check", "--no-hash", "-o", str(out), str(PO)], check=True,
                   capture_output=True)
    assert compile_po(PO) == out.read_bytes()


# --- what is translated ---------------------------------------------------------------------


def test_the_error_prefix_is_translated_and_the_message_is_not(
        capsys: pytest.CaptureFixture[str]) -> None:
    from yinqi.cli.output import fail_line

    with use_language("zh"):
        fail_line("no such payment: 42")
    with use_language("en"):
        fail_line("no such payment: 42")
    assert capsys.readouterr().err.splitlines() == ["yinqi: 错误: no such payment: 42",
                                                     "yinqi: error: no such payment: 42"]


def test_the_reconciliation_markdown_in_both_languages() -> None:
    from yinqi.recon import AccountDay, as_markdown

    row = AccountDay(account="1202021209900123456", currency="CNY", day=date(2026, 11, 25),
                     statements=1, bank_opening="0.00", bank_closing="1.00", lines=1,
                     matched_lines=1, matched_amount="1.00", unmatched_lines=0,
                     unmatched_amount="0", written_off_lines=0, ledger_balance="1.00",
                     difference="0.00", payments=1, payments_reconciled=1, payments_unmatched=0,
                     payments_returned=0, open_exceptions=0, quarantined_statements=0)
    with use_language("en"):
        english = as_markdown([row], row.day).splitlines()
    assert english[:4] == [
        "## Reconciliation 2026-11-25", "",
        "| account | ccy | opening | closing | ledger | difference | lines | matched | "
        "unmatched | payments | reconciled | exceptions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    with use_language("zh"):
        chinese = as_markdown([row], row.day).splitlines()
    assert chinese[0] == "## 对账报告 2026-11-25"
    assert chinese[2].startswith("| 账号 | 币种 | 期初余额 | 期末余额 | 账面余额 | 差额 |")
    assert chinese[3:] == english[3:]  # the figures are the same


def test_every_workbook_column_has_a_chinese_title() -> None:
    from yinqi.recon.report import COLUMNS, _workbook_titles

    with use_language("en"):
        english = _workbook_titles()
    with use_language("zh"):
        chinese = _workbook_titles()
    assert set(COLUMNS) <= set(chinese)
    assert all(english[k] == k for k in english)  # English: the keys, as before
    assert all(not title.isascii() for title in chinese.values()), chinese


def test_every_doctor_check_name_has_chinese_and_english_stays_as_the_check_says() -> None:
    from yinqi.cli.doctor_cmd import _check_name

    names = ["config", "database", "migrations", "master secret", "signing key",
             "key signing-2", "audit chain", "backups", "restore drill",
             "sending after restore", "prefect api", "bank icbc-sandbox",
             "bank icbc-sandbox client key", "bank icbc-sandbox CA",
             "bank icbc-sandbox client certificate", "bank icbc-sandbox signing certificate"]
    with use_language("en"):
        assert [_check_name(n) for n in names] == names
    with use_language("zh"):
        chinese = [_check_name(n) for n in names]
        assert _check_name("a check added later") == "a check added later"
    assert all(zh != en for zh, en in zip(chinese, names, strict=True)), chinese
    assert chinese[5] == "密钥 signing-2" and chinese[-1] == "银行 icbc-sandbox 签名证书"
