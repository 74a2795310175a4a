"""The ``yinqi`` command in Chinese and in English: what people read follows YINQI_LANG or the
locale; what scripts read (``--json``) and the data in an export never change."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import as_user, yinqi
from openpyxl import load_workbook

import yinqi as yinqi_pkg

DEMO_VOUCHERS = Path(yinqi_pkg.__file__).parent / "demo" / "vouchers.csv"
DAY = "2026-11-25"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An installation with the demo's vouchers imported (SQLite: the language does not
    depend on the database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    env.update(YINQI_HOME=str(tmp_path_factory.mktemp("i18n") / "home"), COLUMNS="250")
    yinqi("init", env=env)
    yinqi("vouchers", "import", str(DEMO_VOUCHERS), "--json", env=env)
    yield env


def speaking(env: dict[str, str], language: str) -> dict[str, str]:
    return {**env, "YINQI_LANG": language}


def test_the_readable_output_follows_yinqi_lang(home: dict[str, str]) -> None:
    chinese = yinqi("vouchers", "import", str(DEMO_VOUCHERS), env=speaking(home, "zh_CN")).stdout
    assert "此前已导入（导入 #1）；无新增" in chinese, chinese
    english = yinqi("vouchers", "import", str(DEMO_VOUCHERS), env=speaking(home, "en")).stdout
    assert "already imported (import #1); nothing new" in english, english

    chinese = yinqi("payments", "list", env=speaking(home, "zh-CN")).stdout
    assert "笔付款" in chinese and "收款人" in chinese and "金额" in chinese, chinese
    english = yinqi("payments", "list", env=speaking(home, "en_US")).stdout
    assert "payment(s)" in english and "payee" in english and "收款人" not in english
    # The data is the data in either language: payees, amounts, states.
    assert "PENDING_APPROVAL" in chinese and "PENDING_APPROVAL" in english
    assert "苏州工业园区精密制造有限公司" in chinese and "苏州工业园区精密制造有限公司" in english


def test_else_the_locale_chooses(home: dict[str, str]) -> None:
    env = {k: v for k, v in home.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    shown = yinqi("reconcile", "report", "--date", DAY, env={**env, "LANG": "zh_CN.UTF-8"})
    assert f"对账报告 {DAY}" in shown.stdout and "期初余额" in shown.stdout, shown.stdout
    shown = yinqi("reconcile", "report", "--date", DAY, env={**env, "LANG": "fr_FR.UTF-8"})
    assert f"Reconciliation {DAY}" in shown.stdout and "opening" in shown.stdout, shown.stdout


def test_the_error_line_prefix_is_translated(home: dict[str, str]) -> None:
    chinese = yinqi("approvals", "approve", "NO-SUCH-PAYMENT", "--as", "li.approver", "--code",
                    "123456", env=speaking(home, "zh"), check=None)
    english = yinqi("approvals", "approve", "NO-SUCH-PAYMENT", "--as", "li.approver", "--code",
                    "123456", env=speaking(home, "en"), check=None)
    assert chinese.returncode == english.returncode != 0
    assert chinese.stderr.startswith("yinqi: 错误: "), chinese.stderr
    assert english.stderr.startswith("yinqi: error: "), english.stderr
    # The domain's message itself stays as raised.
    assert chinese.stderr.removeprefix("yinqi: 错误: ") == \
        english.stderr.removeprefix("yinqi: error: ")


@pytest.mark.parametrize("command", [
    ("payments", "list", "--json"),
    ("reconcile", "report", "--date", DAY, "--json"),
    ("vouchers", "import", str(DEMO_VOUCHERS), "--json"),
    ("doctor", "--json"),  # exit 1 here: no bank is running
])
def test_json_is_the_same_in_every_language(home: dict[str, str],
                                            command: tuple[str, ...]) -> None:
    chinese = yinqi(*command, env=speaking(home, "zh_CN"), check=None)
    english = yinqi(*command, env=speaking(home, "en"), check=None)
    assert chinese.stdout == english.stdout
    assert chinese.returncode == english.returncode
    assert len(chinese.stdout) > 20


def test_keys_risk_audit_init_and_doctor_speak_chinese(home: dict[str, str]) -> None:
    treasurer = as_user(home, "liu.treasurer")
    chinese = yinqi("keys", "list", env=speaking(treasurer, "zh")).stdout
    assert "密钥文件" in chinese and "剩余天数" in chinese and "完整指纹" in chinese, chinese
    english = yinqi("keys", "list", env=speaking(treasurer, "en")).stdout
    assert "key file" in english and "密钥" not in english, english
    assert "current" in chinese and "current" in english  # a key's status is data
    # What a rotation did is also in its --json, where it stays English.
    admin = as_user(home, "admin")
    rotated = yinqi("keys", "rotate", "--purpose", "files", "--json", env=speaking(admin, "zh"))
    assert json.loads(rotated.stdout)["lines"][0].startswith("file key files-2 is current: ")
    rotated = yinqi("keys", "rotate", "--purpose", "files", env=speaking(admin, "zh"))
    assert rotated.stdout.startswith("文件密钥 files-3 已启用："), rotated.stdout

    # The imported vouchers are payments to new payees: the new_payee rule noted each one.
    chinese = yinqi("risk", "hits", "--limit", "3", env=speaking(treasurer, "zh")).stdout
    assert "3 条风控命中（最新在前）" in chinese and "处置" in chinese, chinese
    english = yinqi("risk", "hits", "--limit", "3", env=speaking(treasurer, "en")).stdout
    assert "3 risk hit(s), newest first" in english and "action" in english, english
    assert "new_payee" in chinese and "new_payee" in english  # rule names are data
    assert yinqi("risk", "freezes", "--active", env=speaking(treasurer, "zh")).stdout == \
        "没有生效中的冻结\n"

    shown = yinqi("audit", "verify", env=speaking(home, "zh")).stdout
    assert shown.startswith("审计链完整：已验证 "), shown
    assert "already initialised: nothing to do" in yinqi("init", env=speaking(home, "en")).stdout
    assert "已初始化：无需操作" in yinqi("init", env=speaking(home, "zh")).stdout

    chinese = yinqi("doctor", env=speaking(home, "zh"), check=None).stdout
    english = yinqi("doctor", env=speaking(home, "en"), check=None).stdout
    for words in ("检查项", "数据库迁移", "审计链", "项失败", "项警告"):
        assert words in chinese, chinese
    assert "migrations" in english and "warnings" in english and "数据库" not in english
    # What each check found is its own (English) words in either language.
    assert "(latest)" in chinese and "(latest)" in english


def test_the_excel_report_has_chinese_titles_and_the_same_data(
        home: dict[str, str], tmp_path: Path) -> None:
    books = {}
    for language in ("zh_CN", "en"):
        path = tmp_path / f"report-{language}.xlsx"
        out = yinqi("reconcile", "report", "--date", DAY, "--xlsx", str(path),
                    env=speaking(home, language)).stdout
        assert str(path) in out
        books[language] = load_workbook(path)
    chinese, english = books["zh_CN"], books["en"]
    assert chinese.sheetnames == ["对账", "异常"]
    assert english.sheetnames == ["reconciliation", "exceptions"]
    titles = [c.value for c in chinese["对账"][1]]
    assert titles[:5] == ["银行", "户名", "账号", "币种", "日期"], titles
    assert all(not str(t).isascii() for t in titles), titles
    assert [c.value for c in english["reconciliation"][1]][:5] == [
        "bank", "account_name", "account", "currency", "day"]
    for zh_sheet, en_sheet in zip(chinese.worksheets, english.worksheets, strict=True):
        zh_rows = list(zh_sheet.iter_rows(min_row=2, values_only=True))
        assert zh_rows == list(en_sheet.iter_rows(min_row=2, values_only=True))
    assert len(list(chinese["对账"].iter_rows(min_row=2))) >= 1
