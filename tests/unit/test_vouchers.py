"""Voucher intake, the pure part: reading each format, mapping columns, checking every row."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yinqi.errors import ConfigError, InvalidValue
from yinqi.money import Money
from yinqi.payments import Category
from yinqi.vouchers import (
    ERP_CN,
    ERP_EN,
    IntakeResult,
    Rows,
    end_to_end_id_for,
    load_mappings,
    read_rows,
    validate_rows,
)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers"
OWN = {"1202021209900123456": "CNY", "1202021209900654321": "CNY", "755912345610808": "CNY",
       "1202021209900777888": "USD"}
HEADER = ["单据编号", "单据日期", "付款账号", "收款户名", "收款账号", "收款银行", "联行号", "金额",
          "币种", "用途", "类别", "加急", "制单人", "期望付款日"]
GOOD = dict(zip(HEADER, ["FK1", "2026-11-24", "1202021209900123456", "苏州精密制造有限公司",
                         "3086271497094009492", "招商银行深圳分行", "308584000013", "100.00",
                         "CNY", "货款", "供应商", "否", "wu.maker", "2026-11-25"], strict=True))
BAD_SAMPLE_ROWS = {
    42: "金额 '-100.00': amount must be positive",
    43: "金额 '1,234.567': 3 decimals but CNY has 2",
    44: "联行号 '10210009999': has 11 digits, a CNAPS code has 12",
    45: "收款户名: missing",
    46: "付款账号 ****0000: not one of the company's accounts",
    47: "单据编号 FK2026000006: appears twice in this file (first on row 7)",
}


def sample(name: str) -> IntakeResult:
    path = SAMPLES / name
    return validate_rows(read_rows(path.read_bytes(), path.name), ERP_CN,
                         own_accounts=OWN, source="erp")


def check(*rows: dict[str, str], own: dict[str, str] = OWN) -> IntakeResult:
    return validate_rows(list(rows), ERP_CN, own_accounts=own, source="erp")


def reason(**changes: str) -> str:
    result = check({**GOOD, **changes})
    assert not result.accepted, "expected the row to be quarantined"
    return result.quarantined[0].reason


def csv_bytes(rows: list[dict[str, str]], encoding: str = "utf-8") -> bytes:
    lines = [",".join(HEADER)] + [",".join(r.get(h, "") for h in HEADER) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["erp-payments-gbk.csv", "erp-payments-utf8.csv"])
def test_the_sample_csv_files_give_40_vouchers_and_the_6_bad_rows_with_reasons(name: str) -> None:
    result = sample(name)
    assert len(result.accepted) == 40
    assert {q.row: q.reason for q in result.quarantined} == BAD_SAMPLE_ROWS
    assert [line.external_ref for line in result.accepted] == [
        f"FK2026{n:06d}" for n in range(1, 41)]
    assert [line.row for line in result.accepted] == list(range(2, 42))


def test_sample_amounts_and_fields_are_exact() -> None:
    accepted = {line.external_ref: line for line in sample("erp-payments-gbk.csv").accepted}
    first = accepted["FK2026000001"]
    assert first.row == 2
    assert first.amount == Money.of("1665931.34", "CNY")
    assert first.debtor_account == "1202021209900123456"
    assert first.creditor_name == "苏州工业园区精密制造有限公司"
    assert first.creditor_account == "3086271497094009492"
    assert first.creditor_cnaps == "308584000013"
    assert first.creditor_bank_name == "招商银行深圳分行"
    assert (first.purpose, first.category, first.urgent) == ("设备款", Category.SUPPLIER, False)
    assert (first.voucher_date, first.requested_date) == (date(2026, 11, 24), date(2026, 11, 25))
    assert first.maker == "wu.maker"
    assert first.fields["金额"] == "1665931.34"
    assert accepted["FK2026000002"].amount == Money.of("41728.21", "CNY")
    assert accepted["FK2026000002"].category is Category.PAYROLL
    assert accepted["FK2026000003"].urgent is True
    assert accepted["FK2026000008"].amount.amount == Decimal("33781.10")
    assert accepted["FK2026000029"].category is Category.EXPENSE
    assert accepted["FK2026000029"].amount == Money.of("2751.04", "CNY")
    total = Money.sum((line.amount for line in accepted.values()), "CNY")
    assert total == Money.of("20180917.64", "CNY")
    assert sum(line.urgent for line in accepted.values()) == 9


def test_the_three_sample_encodings_read_the_same_vouchers() -> None:
    gbk, utf8, as_json = (sample(n) for n in
                          ("erp-payments-gbk.csv", "erp-payments-utf8.csv", "erp-payments.json"))
    assert [(x.external_ref, x.amount, x.creditor_name) for x in gbk.accepted] == \
        [(x.external_ref, x.amount, x.creditor_name) for x in utf8.accepted]
    assert len(as_json.accepted) == 10 and not as_json.quarantined
    assert [(x.external_ref, x.amount, x.creditor_name) for x in as_json.accepted] == \
        [(x.external_ref, x.amount, x.creditor_name) for x in gbk.accepted[:10]]
    assert [x.row for x in as_json.accepted] == list(range(1, 11))


def test_end_to_end_ids_are_stable_short_and_distinct() -> None:
    lines = sample("erp-payments-gbk.csv").accepted
    ids = [line.end_to_end_id for line in lines]
    assert len(set(ids)) == 40
    assert all(len(i) <= 35 and i.isalnum() and i.isupper() for i in ids)
    assert ids[0] == end_to_end_id_for("erp", "FK2026000001")
    assert end_to_end_id_for("erp", "FK2026000001") != end_to_end_id_for("sap", "FK2026000001")
    assert end_to_end_id_for("a", "bc") != end_to_end_id_for("ab", "c")


# --- reading -------------------------------------------------------------------------------


def test_encoding_is_recognised_without_a_hint() -> None:
    for encoding in ("utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"):
        rows = read_rows(csv_bytes([GOOD], encoding), "f.csv")
        assert rows == [GOOD], encoding
        assert rows.numbers == [2]


def test_text_that_is_neither_utf8_nor_gbk_is_refused_naming_the_file() -> None:
    with pytest.raises(InvalidValue, match=r"^f\.csv: neither UTF-8 nor GBK"):
        read_rows(csv_bytes([GOOD], "gbk") + b"\xff\r\n", "f.csv")


def test_damaged_utf8_is_refused_rather_than_read_as_gbk() -> None:
    damaged = csv_bytes([GOOD, GOOD]).replace("精密".encode(), "精密".encode()[:-1], 1)
    with pytest.raises(InvalidValue, match="UTF-8 text with an invalid byte"):
        read_rows(damaged, "f.csv")


@pytest.mark.parametrize("data, message", [
    (b"", "empty"), (b"  \r\n", "empty"), (b"\xd0\xcf\x11\xe0xxxx", ".xls"),
    (b"PK\x03\x04garbage", "not a readable .xlsx"), (b"a,b\x00c\n", "NUL"),
    (b'{"vouchers": 3}', "expected"), (b'{"vouchers": [', "not valid JSON"),
    (b'a,b\n"unterminated\n', "not valid CSV"), (b"a,a\n1,2\n", "appears twice"),
    (b",,\n1,2,3\n", "header row"),
])
def test_unreadable_files_are_one_line_errors_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        read_rows(data, "in/file.dat")
    assert str(caught.value).startswith("in/file.dat: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_format_comes_from_the_content_not_the_name() -> None:
    as_json = json.dumps({"vouchers": [GOOD]}, ensure_ascii=False).encode()
    assert read_rows(as_json, "export.csv") == [GOOD]
    assert read_rows(csv_bytes([GOOD]), "export.json") == [GOOD]
    assert read_rows(json.dumps([GOOD]).encode(), "x").numbers == [1]


def test_csv_row_numbers_follow_the_spreadsheet_across_blank_and_multiline_rows() -> None:
    text = (",".join(HEADER) + "\r\n"
            + ",".join(GOOD.values()) + "\r\n"
            + "," * 13 + "\r\n"  # a blank row, as Excel writes it
            + "\r\n"
            + ",".join({**GOOD, "单据编号": "FK5", "用途": '"two\nlines"'}.values()) + "\r\n"
            + ",".join(GOOD.values()) + ",,\r\n")  # trailing empty cells are harmless
    rows = read_rows(text.encode(), "f.csv")
    assert rows.numbers == [2, 5, 6]
    assert rows[1]["用途"] == "two\nlines"
    result = validate_rows(rows, ERP_CN, own_accounts=OWN, source="erp")
    assert [(q.row, q.reason) for q in result.quarantined] == [
        (5, "用途: contains the invisible or control character U+000A"),
        (6, "单据编号 FK1: appears twice in this file (first on row 2)"),
    ]


def test_a_csv_row_with_data_beyond_the_header_is_quarantined() -> None:
    text = ",".join(HEADER) + "\n" + ",".join(GOOD.values()) + ",surprise\n"
    result = validate_rows(read_rows(text.encode(), "f.csv"), ERP_CN, own_accounts=OWN,
                           source="erp")
    assert result.quarantined[0].reason == "row has 15 cells but the header has 14 columns"


def test_tab_separated_unicode_text_as_excel_saves_it() -> None:
    text = "\t".join(HEADER) + "\r\n" + "\t".join(GOOD.values()) + "\r\n"
    assert read_rows(text.encode("utf-16"), "f.txt") == [GOOD]


def xlsx(rows: list[list[object]], raw_numbers: dict[str, str] | None = None) -> bytes:
    """A workbook as openpyxl writes it; ``raw_numbers`` rewrites stored numbers the way Excel
    stores them (openpyxl itself rounds floats to 15 digits when it saves)."""
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.create_sheet("second sheet is ignored").append(["nothing"])
    out = io.BytesIO()
    book.save(out)
    if not raw_numbers:
        return out.getvalue()
    patched = io.BytesIO()
    with zipfile.ZipFile(out) as source, zipfile.ZipFile(patched, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                for written, stored in raw_numbers.items():
                    content = content.replace(f"<v>{written}</v>".encode(),
                                              f"<v>{stored}</v>".encode())
            target.writestr(item, content)
    return patched.getvalue()


def test_xlsx_text_numbers_and_dates_are_read_exactly() -> None:
    values = list(GOOD.values())
    typed = [*values]
    typed[0] = "FK2"
    typed[1] = datetime(2026, 11, 24)  # a date cell
    typed[2] = 755912345610808  # an account typed as a number: 15 digits survive
    typed[6] = 308584000013
    typed[7] = 1665931.34  # a number cell: a binary float inside openpyxl
    typed[13] = date(2026, 11, 25)
    data = xlsx([HEADER, values, [], typed])
    rows = read_rows(data, "f.xlsx")
    assert rows.numbers == [2, 4]
    assert rows[0] == GOOD
    assert rows[1]["金额"] == "1665931.34"
    assert rows[1]["付款账号"] == "755912345610808"
    assert rows[1]["单据日期"] == "2026-11-24" and rows[1]["期望付款日"] == "2026-11-25"
    result = validate_rows(rows, ERP_CN, own_accounts=OWN, source="erp")
    assert not result.quarantined
    assert result.accepted[1].amount == Money.of("1665931.34", "CNY")
    assert result.accepted[1].row == 4


def test_xlsx_numbers_that_lost_digits_are_quarantined_not_trusted() -> None:
    values: list[object] = list(GOOD.values())
    values[4] = 3086271497094009492  # 19 digits: Excel keeps 15, the rest are gone
    values[7] = 1.25
    data = xlsx([HEADER, values], raw_numbers={"1.25": "0.30000000000000004"})
    result = validate_rows(read_rows(data, "f.xlsx"), ERP_CN, own_accounts=OWN, source="erp")
    problems = result.quarantined[0].reason.split("; ")
    assert problems[0].startswith("金额 '0.30000000000000004': not an exact decimal")
    # The cell is quoted as read, its account number masked (****0000: the lost digits).
    assert problems[1].startswith("收款账号 '****")
    assert "3086271497094009" not in problems[1]
    assert "lost its last digits" in problems[1]


def test_a_formula_looking_payee_name_is_kept_as_text() -> None:
    name = "=HYPERLINK(\"http://x\",\"点我\")"
    values = list({**GOOD, "收款户名": name}.values())
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(values)
    sheet.cell(row=2, column=4).data_type = "s"  # typed as text, as an ERP export writes it
    out = io.BytesIO()
    book.save(out)
    for data in (out.getvalue(), csv_bytes([{**GOOD, "收款户名": "=1+cmd|' /C calc'!A0"}])):
        [line] = validate_rows(read_rows(data, "f"), ERP_CN, own_accounts=OWN,
                               source="erp").accepted
        assert line.creditor_name in (name, "=1+cmd|' /C calc'!A0")
    assert check({**GOOD, "收款户名": "+86 Ltd"}).accepted[0].creditor_name == "+86 Ltd"


def test_json_floats_are_refused_for_that_row_only() -> None:
    doc = {"vouchers": [GOOD, {**GOOD, "单据编号": "FK2"}]}
    text = json.dumps(doc, ensure_ascii=False).replace('"100.00"', "100.5", 1)
    result = validate_rows(read_rows(text.encode(), "f.json"), ERP_CN, own_accounts=OWN,
                           source="erp")
    assert [q.row for q in result.quarantined] == [1]
    assert result.quarantined[0].reason.startswith("金额 100.5: a JSON float")
    assert "lose cents" in result.quarantined[0].reason
    assert [line.row for line in result.accepted] == [2]


def test_json_integers_booleans_and_nulls_are_read_as_text() -> None:
    item = {**GOOD, "金额": 100, "加急": True, "收款银行": None}
    [row] = read_rows(json.dumps([item]).encode(), "f.json")
    assert (row["金额"], row["加急"], row["收款银行"]) == ("100", "true", "")
    line = check(row).accepted[0]
    assert line.amount == Money.of("100.00", "CNY") and line.urgent is True


def test_json_values_that_cannot_be_text_are_reasons() -> None:
    items = [{**GOOD, "收款账号": 3086271497094009492}, "not an object",
             {**GOOD, "单据编号": "FK3", "用途": ["a"]}]
    result = validate_rows(read_rows(json.dumps(items).encode(), "f.json"), ERP_CN,
                           own_accounts=OWN, source="erp")
    reasons = {q.row: q.reason for q in result.quarantined}
    assert "may have lost digits" in reasons[1]
    assert reasons[2].startswith("item is a string, not an object")
    assert reasons[3].startswith('用途 ["a"]: is a list')


# --- checking ------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, expected", [
    ({"金额": "0"}, "金额 '0': amount must be positive"),
    ({"金额": "1,23"}, "金额 '1,23': not an amount like 1234.56 or 1,234.56"),
    ({"金额": "¥100"}, "金额 '¥100': not an amount like 1234.56 or 1,234.56"),
    ({"金额": "12.345"}, "金额 '12.345': 3 decimals but CNY has 2"),
    ({"币种": "USD"}, "币种 USD: account ****3456 is a CNY account"),
    ({"币种": "XYZ"}, "币种 'XYZ': not a currency code Yinqi can pay in"),
    ({"类别": "差旅"}, "类别 '差旅': unknown category (known: 供应商, supplier, 工资, payroll, "
                     "报销, expense)"),
    ({"加急": "maybe"}, "加急 'maybe': must be 是/否, yes/no, true/false or 1/0"),
    ({"单据日期": "24/11/2026"}, "单据日期 '24/11/2026': not a date like 2026-11-24"),
    ({"单据日期": "2026-02-30"}, "单据日期 '2026-02-30': no such day in the calendar"),
    ({"期望付款日": "2026-11-20"}, "期望付款日 '2026-11-20': before the voucher date 2026-11-24"),
    ({"收款户名": "名" * 141}, "收款户名: 141 characters, more than the 140 a bank accepts"),
    ({"用途": "x" * 141}, "用途: 141 characters, more than the 140 a bank accepts"),
    ({"收款户名": "某公司\u202e"}, "收款户名: contains the invisible or control character U+202E"),
    ({"收款户名": "a\x07b"}, "收款户名: contains the invisible or control character U+0007"),
    ({"联行号": ""}, "联行号: missing (a CNY payment needs the payee bank's 12-digit CNAPS code)"),
    ({"联行号": "30858400001X"}, "联行号 '30858400001X': a CNAPS code is 12 digits"),
    ({"收款账号": "1202021209900123456"}, "收款账号 ****3456: the same account as 付款账号"),
    ({"单据编号": "R" * 65}, "单据编号: 65 characters, more than the 64 a bank accepts"),
])
def test_each_problem_has_a_one_line_reason(changes: dict[str, str], expected: str) -> None:
    assert reason(**changes) == expected


def test_a_bad_payee_account_reason_masks_it() -> None:
    assert reason(收款账号="12-34") == "收款账号 ****: has 4 digits, Chinese account numbers have 8 to 32"
    assert reason(收款账号="62220200000000O1") == "收款账号 ****00O1: an account number has digits only"


def test_every_problem_of_a_row_is_reported() -> None:
    text = reason(金额="-5", 收款户名="", 联行号="123", 类别="?", 付款账号="6222 0000 1111 2222")
    assert text.split("; ") == [
        "付款账号 ****2222: not one of the company's accounts",
        "金额 '-5': amount must be positive",
        "收款户名: missing",
        "联行号 '123': has 3 digits, a CNAPS code has 12",
        "类别 '?': unknown category (known: 供应商, supplier, 工资, payroll, 报销, expense)",
    ]


def test_lenient_where_it_is_unambiguous() -> None:
    [line] = check({**GOOD, "金额": " 1,234.50 ", "币种": "人民币", "单据日期": "2026年11月24日",
                    "期望付款日": "2026/11/25", "加急": "YES", "类别": "Payroll",
                    "付款账号": "1202 0212 0990 0123 456", "收款户名": "张\u3000三"}).accepted
    assert line.amount == Money.of("1234.50", "CNY") and line.urgent
    assert line.category is Category.PAYROLL
    assert line.voucher_date == date(2026, 11, 24) and line.requested_date == date(2026, 11, 25)
    assert line.debtor_account == "1202021209900123456"
    assert line.creditor_name == "张\u3000三"


def test_optional_fields_fall_back() -> None:
    [line] = check({**GOOD, "币种": "", "加急": "", "制单人": "", "期望付款日": "", "收款银行": ""}
                   ).accepted
    assert line.amount.currency.code == "CNY"  # the debtor account's
    assert (line.urgent, line.maker, line.creditor_bank_name) == (False, None, "")
    assert line.requested_date == line.voucher_date


def test_a_usd_payment_needs_no_cnaps_code_but_keeps_usd_cents() -> None:
    usd = {**GOOD, "付款账号": "1202021209900777888", "币种": "USD", "联行号": "", "金额": "10.5"}
    [line] = check(usd).accepted
    assert line.amount == Money.of("10.50", "USD") and line.creditor_cnaps is None


def test_duplicates_in_a_file_keep_the_first_and_quarantine_every_later_one() -> None:
    result = check(GOOD, {**GOOD, "单据编号": "FK2"}, GOOD, {**GOOD, "金额": "-1"})
    assert [line.row for line in result.accepted] == [2, 3]
    assert [(q.row, q.reason) for q in result.quarantined] == [
        (4, "单据编号 FK1: appears twice in this file (first on row 2)"),
        (5, "金额 '-1': amount must be positive; "
            "单据编号 FK1: appears 3 times in this file (first on row 2)"),
    ]
    assert all(q.external_ref == "FK1" for q in result.quarantined)


def test_a_later_duplicate_stays_quarantined_when_the_first_is_bad() -> None:
    result = check({**GOOD, "金额": "-1"}, GOOD)
    assert not result.accepted and len(result.quarantined) == 2


# --- mappings ------------------------------------------------------------------------------


def test_the_english_layout() -> None:
    english = dict(zip(["voucher_no", "date", "debtor_account", "payee_name", "payee_account",
                        "payee_bank", "cnaps", "amount", "currency", "purpose", "category",
                        "urgent", "maker", "value_date"], GOOD.values(), strict=True))
    english["category"] = "supplier"
    result = validate_rows([english], ERP_EN, own_accounts=OWN, source="erp")
    assert result.accepted[0].amount == Money.of("100", "CNY")
    assert reason(金额="x") == "金额 'x': not an amount like 1234.56 or 1,234.56"
    bad = validate_rows([{**english, "amount": "x"}], ERP_EN, own_accounts=OWN, source="erp")
    assert bad.quarantined[0].reason == "amount 'x': not an amount like 1234.56 or 1,234.56"


def test_a_file_without_the_mappings_columns_is_refused_naming_them() -> None:
    with pytest.raises(InvalidValue, match="missing column.* voucher_no, date.* 'erp-en'"):
        validate_rows(read_rows(csv_bytes([GOOD]), "f.csv"), ERP_EN, own_accounts=OWN,
                      source="erp")
    assert validate_rows(Rows(), ERP_CN, own_accounts=OWN, source="erp").rows == 0


def test_custom_mappings_come_from_the_config_folder(tmp_path: Path) -> None:
    assert set(load_mappings(None)) == {"erp-cn", "erp-en"}
    assert set(load_mappings(tmp_path)) == {"erp-cn", "erp-en"}
    (tmp_path / "voucher_mappings.toml").write_text(
        '[mappings.kingdee]\nexternal_ref = "单号"\nvoucher_date = "日期"\n'
        'debtor_account = "付款账户"\ncreditor_name = "收款人"\ncreditor_account = "收款账户"\n'
        'creditor_cnaps = "行号"\namount = "付款金额"\npurpose = "摘要"\ncategory = "类型"\n',
        encoding="utf-8")
    kingdee = load_mappings(tmp_path)["kingdee"]
    assert (kingdee.external_ref, kingdee.currency, kingdee.urgent) == ("单号", None, None)
    row = {"单号": "K1", "日期": "2026-11-24", "付款账户": "755912345610808", "收款人": "李四",
           "收款账户": "6222020000000001", "行号": "102100099996", "付款金额": "8.00",
           "摘要": "报销", "类型": "报销"}
    [line] = validate_rows([row], kingdee, own_accounts=OWN, source="kd").accepted
    assert line.maker is None and not line.urgent and line.amount.currency.code == "CNY"


@pytest.mark.parametrize("text, message", [
    ("[mappings.x]\nexternal_ref = 1\n", "mappings.x.external_ref: must be a column name"),
    ('[mappings.x]\nexternal_rf = "a"\n', "mappings.x.external_rf: unknown field"),
    ('[mappings.x]\nexternal_ref = "a"\n', "mappings.x: missing required field(s): voucher_date"),
    ('[mappings.erp-cn]\nexternal_ref = "a"\n', "built-in mapping"),
    ("[mappings.x\n", "cannot read it"),
    ('[other]\na = "b"\n', "other: unknown key"),
])
def test_a_bad_mappings_file_is_one_config_error_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "voucher_mappings.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / "voucher_mappings.toml"))
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- properties ----------------------------------------------------------------------------

_cell = st.one_of(
    st.sampled_from(["", " ", "-1", "0", "1.005", "12,345.67", "FK1", "FK2", "是", "工资",
                     "2026-02-30", "2026-11-24", "1202021209900123456", "308584000013", "CNY",
                     "USD", "\x00", "\u202e", "=1+1"]),
    st.text(max_size=20),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({h: _cell for h in HEADER}), max_size=12),
       st.lists(st.sampled_from(HEADER), max_size=3))
def test_every_row_is_accepted_or_quarantined_exactly_once(
    rows: list[dict[str, str]], blanked: list[str]
) -> None:
    rows = [{**GOOD, **row} if i % 2 else row for i, row in enumerate(rows)]
    for row in rows[::3]:
        for column in blanked:
            row.pop(column, None)
    result = validate_rows([GOOD, *rows], ERP_CN, own_accounts=OWN, source="erp")
    numbers = [line.row for line in result.accepted] + [q.row for q in result.quarantined]
    assert sorted(numbers) == list(range(2, len(rows) + 3))
    assert result.accepted[0].row == 2
    assert all(q.reason and "\n" not in q.reason for q in result.quarantined)
    refs = [line.external_ref for line in result.accepted]
    assert len(refs) == len(set(refs))
    assert all(line.amount.is_positive for line in result.accepted)


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_any_bytes_either_read_or_fail_with_invalid_value(data: bytes) -> None:
    try:
        rows = read_rows(data, "fuzz")
    except InvalidValue as exc:
        assert str(exc).startswith("fuzz: ")
        return
    assert len(rows.numbers) == len(rows)
