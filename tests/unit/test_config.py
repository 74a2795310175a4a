"""The config layer: shipped defaults, settings from the environment, one-line errors."""

from __future__ import annotations

import os
from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest

from config import BankConfig, Settings, YinqiConfig, load_config, load_settings
from config.loader import DEFAULTS_DIR
from yinqi.errors import ConfigError, InvalidValue


@pytest.fixture(autouse=True)
def _no_yinqi_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own YINQI_* variables must not change what these tests see.
    for name in list(os.environ):
        if name.upper().startswith("YINQI_"):
            monkeypatch.delenv(name)


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """An empty YINQI_CONFIG_DIR."""
    folder = tmp_path / "etc"
    folder.mkdir()
    return folder


def settings(tmp_path: Path, config_dir: Path | None = None) -> Settings:
    return load_settings(home=tmp_path / "home", config_dir=config_dir)


def shipped(name: str) -> str:
    return (DEFAULTS_DIR / name).read_text(encoding="utf-8")


def edited(name: str, old: str, new: str) -> str:
    text = shipped(name)
    assert old in text, f"test is out of date with the shipped {name}"
    return text.replace(old, new, 1)


def failure(tmp_path: Path, etc: Path, name: str, text: str) -> tuple[Path, str]:
    """Put ``text`` in the override folder as ``name``; return its path and the error line."""
    path = etc / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(settings(tmp_path, etc))
    line = str(caught.value)
    assert "\n" not in line
    assert "Traceback" not in line and "pydantic" not in line
    return path, line


# --- shipped defaults ------------------------------------------------------------------------


def test_shipped_defaults_load_and_hang_together(tmp_path: Path) -> None:
    config = load_config(settings(tmp_path))

    assert isinstance(config, YinqiConfig)
    assert set(config.banks) == {"icbc-sandbox", "cmb-sandbox"}
    assert {bank.dialect for bank in config.banks.values()} == {"iso20022", "cn-h2h"}
    icbc = config.banks["icbc-sandbox"]
    assert icbc.endpoint == "https://127.0.0.1:8443/banks/icbc"
    assert icbc.cutoff == time(16, 30)
    assert icbc.batch_size_limit == 5000
    assert icbc.currencies == ("CNY", "USD")
    assert config.company.credit_code == "91350100M000100Y43"
    assert len(config.accounts) == 4
    for account in config.accounts:
        assert account.currency in config.bank_for_account(account.number).currencies
    assert config.bank_for_account("755912345610808").bic == "CMBCCNBSXXX"
    assert config.approval_policy.currency == "CNY"
    assert config.risk_rules.large_single_amount.threshold == Decimal("5000000.00")
    assert config.risk_rules.split_payments.within_hours == 24
    assert config.sources == {
        "banks": DEFAULTS_DIR / "banks.toml",
        "accounts": DEFAULTS_DIR / "accounts.toml",
        "approval_policy": DEFAULTS_DIR / "approval_policy.toml",
        "risk_rules": DEFAULTS_DIR / "risk_rules.toml",
        "reconciliation": DEFAULTS_DIR / "reconciliation.toml",
        "alerts": DEFAULTS_DIR / "alerts.toml",
        "backup": DEFAULTS_DIR / "backup.toml",
    }
    assert (config.backup.keep_daily, config.backup.keep_weekly) == (7, 4)
    assert config.backup.schedules.drill == "0 4 * * 0"


def test_a_bad_backup_schedule_is_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "backup.toml").write_text('keep_daily = 0\n[schedules]\nfull = "every sunday"\n')
    with pytest.raises(ConfigError) as error:
        load_config(settings(tmp_path, config_dir=tmp_path))
    assert "backup.toml" in str(error.value) and "keep_daily" in str(error.value)
    (tmp_path / "backup.toml").write_text('[schedules]\nfull = "every sunday"\n')
    with pytest.raises(ConfigError, match="schedules.full.*not a cron expression"):
        load_config(settings(tmp_path, config_dir=tmp_path))


def test_unknown_account_is_refused(tmp_path: Path) -> None:
    config = load_config(settings(tmp_path))
    with pytest.raises(InvalidValue, match="'99999999' is not one of the company's accounts"):
        config.bank_for_account("99999999")


def test_cert_paths_are_relative_to_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert BankConfig.resolve_path(home, Path("keys/a.pem")) == home / "keys" / "a.pem"
    assert BankConfig.resolve_path(home, Path("/etc/ssl/ca.pem")) == Path("/etc/ssl/ca.pem")


# --- override folder -------------------------------------------------------------------------


def test_override_folder_replaces_only_the_file_it_holds(tmp_path: Path, etc: Path) -> None:
    (etc / "banks.toml").write_text(
        edited("banks.toml", "batch_size_limit = 5000", "batch_size_limit = 1234"),
        encoding="utf-8",
    )
    config = load_config(settings(tmp_path, etc))

    assert config.banks["icbc-sandbox"].batch_size_limit == 1234
    assert config.sources["banks"] == etc / "banks.toml"
    assert config.sources["accounts"] == DEFAULTS_DIR / "accounts.toml"
    assert config.sources["approval_policy"] == DEFAULTS_DIR / "approval_policy.toml"
    assert config.sources["risk_rules"] == DEFAULTS_DIR / "risk_rules.toml"


def test_load_config_reads_the_environment(
    tmp_path: Path, etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (etc / "risk_rules.toml").write_text(shipped("risk_rules.toml"), encoding="utf-8")
    monkeypatch.setenv("YINQI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YINQI_CONFIG_DIR", str(etc))

    assert load_config().sources["risk_rules"] == etc / "risk_rules.toml"


def test_misnamed_override_file_is_an_error(tmp_path: Path, etc: Path) -> None:
    path, line = failure(tmp_path, etc, "bank.toml", shipped("banks.toml"))
    assert line.startswith(f"{path}: not a Yinqi config file; expected one of banks.toml")


# --- one line per bad file -------------------------------------------------------------------


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", "[banks.cmb-sandbox]", "[banks.cmb-sandbox")
    line_no = text.splitlines().index("[banks.cmb-sandbox") + 1
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line.startswith(f"{path}: line {line_no}, column ")
    assert line.endswith(": Expected ']' at the end of a table declaration")


def test_misspelled_key_is_named_with_a_suggestion(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", "batch_size_limit = 5000", "batch_size_limt = 5000")
    path, line = failure(tmp_path, etc, "banks.toml", text)
    # The required key it replaced is not reported as a second, separate problem.
    assert line == (
        f"{path}: banks.icbc-sandbox.batch_size_limt: unknown key, "
        "did you mean 'batch_size_limit'?"
    )


def test_wrong_type(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", "batch_size_limit = 5000", 'batch_size_limit = "abc"')
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line == (
        f"{path}: banks.icbc-sandbox.batch_size_limit: must be a whole number (got 'abc')"
    )


def test_negative_batch_size(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", "batch_size_limit = 2000", "batch_size_limit = -5")
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line == f"{path}: banks.cmb-sandbox.batch_size_limit: must be greater than 0 (got -5)"


def test_missing_key(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", 'cutoff = "17:00"\n', "")
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line == f"{path}: banks.cmb-sandbox.cutoff: missing required key"


def test_further_problems_are_counted(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", 'cutoff = "17:00"', 'cutoff = "5pm"')
    text = text.replace("batch_size_limit = 2000", "batch_size_limit = 0")
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line.startswith(f"{path}: banks.cmb-sandbox.cutoff: must be a 24-hour time")
    assert line.endswith("(got '5pm') (and 1 more problem in this file)")


def test_bad_bank_time_zone(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", 'timezone = "Asia/Shanghai"', 'timezone = "Asia/Shangai"')
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line.startswith(
        f"{path}: banks.icbc-sandbox.timezone: unknown time zone 'Asia/Shangai'"
    )


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8443/banks/icbc", "ftp://bank.example/", "https://user:pw@bank.example/"],
)
def test_endpoint_must_be_https(tmp_path: Path, etc: Path, endpoint: str) -> None:
    text = edited(
        "banks.toml",
        'endpoint = "https://127.0.0.1:8443/banks/icbc"',
        f'endpoint = "{endpoint}"',
    )
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line.startswith(f"{path}: banks.icbc-sandbox.endpoint: must ")
    assert "pw" not in line


def test_bad_bank_id(tmp_path: Path, etc: Path) -> None:
    text = edited("banks.toml", "[banks.cmb-sandbox]", '[banks."CMB Sandbox"]')
    path, line = failure(tmp_path, etc, "banks.toml", text)
    assert line.startswith(f'{path}: banks."CMB Sandbox": bank id \'CMB Sandbox\' must be')


def test_account_at_unknown_bank(tmp_path: Path, etc: Path) -> None:
    text = edited("accounts.toml", 'bank = "cmb-sandbox"', 'bank = "abc"')
    path, line = failure(tmp_path, etc, "accounts.toml", text)
    assert line == (
        f"{path}: accounts[2].bank: unknown bank 'abc' (known: cmb-sandbox, icbc-sandbox)"
    )


def test_removing_a_bank_blames_the_accounts_that_use_it(tmp_path: Path, etc: Path) -> None:
    banks = shipped("banks.toml")
    (etc / "banks.toml").write_text(banks[: banks.index("[banks.cmb-sandbox]")], encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(settings(tmp_path, etc))
    assert str(caught.value) == (
        f"{DEFAULTS_DIR / 'accounts.toml'}: accounts[2].bank: "
        "unknown bank 'cmb-sandbox' (known: icbc-sandbox)"
    )


def test_account_currency_the_bank_does_not_pay_in(tmp_path: Path, etc: Path) -> None:
    text = edited(
        "accounts.toml",
        'bank = "cmb-sandbox"\ncurrency = "CNY"',
        'bank = "cmb-sandbox"\ncurrency = "USD"',
    )
    path, line = failure(tmp_path, etc, "accounts.toml", text)
    assert line == (
        f"{path}: accounts[2].currency: bank 'cmb-sandbox' does not pay in 'USD' (it lists: CNY)"
    )


def test_duplicate_account_number(tmp_path: Path, etc: Path) -> None:
    text = edited("accounts.toml", '"1202021209900654321"', '"1202021209900123456"')
    path, line = failure(tmp_path, etc, "accounts.toml", text)
    assert line == (
        f"{path}: accounts[1].number: '1202021209900123456' is already listed as accounts[0]"
    )


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ('"12345"', "must be 8 to 32 digits (got '12345')"),
        ('"1202-0212-0990"', "must be 8 to 32 digits"),
        ("1202021209900123456", 'write the account number in quotes: "1202021209900123456"'),
    ],
)
def test_bad_account_number(tmp_path: Path, etc: Path, number: str, reason: str) -> None:
    text = edited("accounts.toml", '"1202021209900123456"', number)
    path, line = failure(tmp_path, etc, "accounts.toml", text)
    assert line.startswith(f"{path}: accounts[0].number: {reason}")


def test_invalid_credit_code(tmp_path: Path, etc: Path) -> None:
    text = edited("accounts.toml", '"91350100M000100Y43"', '"91350100M000100Y44"')
    path, line = failure(tmp_path, etc, "accounts.toml", text)
    assert line == (
        f"{path}: company.credit_code: invalid unified social credit code "
        "'91350100M000100Y44': the number's checksum or check digit is invalid"
    )


def test_float_money_must_be_quoted(tmp_path: Path, etc: Path) -> None:
    text = edited("approval_policy.toml", 'up_to = "50000.00"', "up_to = 50000.00")
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line == (
        f"{path}: tiers[0].up_to: 50000.0 is a TOML float, which can lose cents; "
        'write the amount in quotes, e.g. "50000.00"'
    )


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ('"50000.001"', "must have at most 2 decimal places (got '50000.001')"),
        ('"-1"', "must be an amount greater than 0 (got '-1')"),
        ('"fifty"', "must be an amount like \"50000.00\" (got 'fifty')"),
        ("true", "must be an amount in quotes like \"50000.00\" (got True)"),
    ],
)
def test_bad_money(tmp_path: Path, etc: Path, amount: str, reason: str) -> None:
    text = edited("approval_policy.toml", 'up_to = "50000.00"', f"up_to = {amount}")
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line == f"{path}: tiers[0].up_to: {reason}"


def test_whole_number_money_is_accepted(tmp_path: Path, etc: Path) -> None:
    (etc / "risk_rules.toml").write_text(
        edited("risk_rules.toml", 'threshold = "5000000.00"', "threshold = 5_000_000"),
        encoding="utf-8",
    )
    rule = load_config(settings(tmp_path, etc)).risk_rules.large_single_amount
    assert rule.threshold == Decimal("5000000.00")
    assert str(rule.threshold) == "5000000.00"


def test_unknown_role(tmp_path: Path, etc: Path) -> None:
    text = edited(
        "approval_policy.toml",
        'levels = ["approver", "finance_manager", "cfo"]',
        'levels = ["approver", "finance_manager", "ceo"]',
    )
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line.startswith(f"{path}: tiers[2].levels[2]: unknown role 'ceo' (known: maker, ")


def test_tiers_must_increase(tmp_path: Path, etc: Path) -> None:
    text = edited("approval_policy.toml", 'up_to = "1000000.00"', 'up_to = "40000.00"')
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line == (
        f"{path}: tiers[1].up_to: must be greater than the previous tier's up_to 50000.00 "
        "(got 40000.00)"
    )


def test_last_tier_must_be_unbounded(tmp_path: Path, etc: Path) -> None:
    text = edited(
        "approval_policy.toml",
        'levels = ["approver", "finance_manager", "cfo"]',
        'up_to = "9000000.00"\nlevels = ["approver", "finance_manager", "cfo"]',
    )
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line.startswith(f"{path}: tiers[2].up_to: the last tier must have no up_to")


def test_category_tiers_are_checked_too(tmp_path: Path, etc: Path) -> None:
    text = edited(
        "approval_policy.toml",
        '[[categories.payroll.tiers]]\nlevels = ["approver", "finance_manager"]',
        '[[categories.payroll.tiers]]\nlevels = ["approver"]\n'
        '[[categories.payroll.tiers]]\nlevels = ["cfo"]',
    )
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line.startswith(
        f"{path}: categories.payroll.tiers[0]: only the last tier may leave out up_to"
    )


def test_misspelled_category(tmp_path: Path, etc: Path) -> None:
    text = edited("approval_policy.toml", "[categories.expense]", "[categories.expenses]")
    path, line = failure(tmp_path, etc, "approval_policy.toml", text)
    assert line == f"{path}: categories.expenses: unknown key, did you mean 'expense'?"


def test_out_of_hours_window(tmp_path: Path, etc: Path) -> None:
    text = edited(
        "risk_rules.toml", 'start = "08:00"\nend = "20:00"', 'start = "20:00"\nend = "08:00"'
    )
    path, line = failure(tmp_path, etc, "risk_rules.toml", text)
    assert line == f"{path}: out_of_hours: start 20:00 must be earlier than end 08:00"


def test_missing_rule(tmp_path: Path, etc: Path) -> None:
    text = shipped("risk_rules.toml")
    text = text[: text.index("[new_login_location]")]
    path, line = failure(tmp_path, etc, "risk_rules.toml", text)
    assert line == f"{path}: new_login_location: missing required key"


def test_file_that_is_not_utf8(tmp_path: Path, etc: Path) -> None:
    path = etc / "accounts.toml"
    path.write_bytes(shipped("accounts.toml").encode("gb18030"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0x"):
        load_config(settings(tmp_path, etc))


# --- approval levels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "category", "levels"),
    [
        ("0.01", None, ["approver"]),
        ("49999.99", None, ["approver"]),
        ("50000.00", None, ["approver", "finance_manager"]),
        ("999999.99", None, ["approver", "finance_manager"]),
        ("1000000.00", None, ["approver", "finance_manager", "cfo"]),
        ("49999.99", "payroll", ["approver", "finance_manager"]),
        ("1000000.00", "payroll", ["approver", "finance_manager"]),
        ("1000000.00", "supplier", ["approver", "finance_manager", "cfo"]),
        ("49999.99", "expense", ["approver"]),
    ],
)
def test_levels_for(tmp_path: Path, amount: str, category: str | None, levels: list[str]) -> None:
    policy = load_config(settings(tmp_path)).approval_policy
    assert policy.levels_for(Decimal(amount), category) == levels


def test_levels_for_refuses_what_is_not_a_payment(tmp_path: Path) -> None:
    policy = load_config(settings(tmp_path)).approval_policy
    with pytest.raises(InvalidValue, match="unknown payment category 'bonus'"):
        policy.levels_for(Decimal("10.00"), "bonus")
    with pytest.raises(InvalidValue, match="greater than 0"):
        policy.levels_for(Decimal("0"))
    with pytest.raises(TypeError, match="Decimal"):
        policy.levels_for(100.0)  # type: ignore[arg-type]


# --- settings --------------------------------------------------------------------------------


def test_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_settings()
    home = tmp_path.resolve() / "var"
    assert loaded.home == home
    assert loaded.resolved_database_url == f"sqlite:///{home}/yinqi.db"
    assert loaded.config_dir is None
    assert loaded.master_secret is None
    assert loaded.master_secret_file == home / "secrets" / "master.key"
    assert (loaded.archive_dir, loaded.keys_dir) == (home / "archive", home / "keys")
    assert (loaded.prefect_home, loaded.receipts_dir) == (home / "prefect", home / "receipts")
    assert (loaded.lang, loaded.timezone) == ("en", "Asia/Shanghai")


def test_settings_from_the_environment(
    tmp_path: Path, etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YINQI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YINQI_CONFIG_DIR", str(etc))
    monkeypatch.setenv("YINQI_MASTER_SECRET", "s3cret-value")
    monkeypatch.setenv("YINQI_LANG", "zh")
    monkeypatch.setenv("YINQI_TIMEZONE", "Europe/Berlin")
    loaded = load_settings()
    assert loaded.home == tmp_path / "home"
    assert loaded.config_dir == etc
    assert loaded.master_secret is not None
    assert loaded.master_secret.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(loaded)
    assert (loaded.lang, loaded.timezone) == ("zh", "Europe/Berlin")


def test_overrides_beat_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YINQI_LANG", "zh")
    assert load_settings(lang="en", home=tmp_path).lang == "en"
    with pytest.raises(TypeError, match="langauge"):
        load_settings(langauge="en")


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("postgresql://yinqi@db:5432/yinqi", "postgresql+psycopg://yinqi@db:5432/yinqi"),
        ("postgres://yinqi@db/yinqi", "postgresql+psycopg://yinqi@db/yinqi"),
        ("postgresql+psycopg://yinqi@db/yinqi", "postgresql+psycopg://yinqi@db/yinqi"),
        ("sqlite:////srv/yinqi/yinqi.db", "sqlite:////srv/yinqi/yinqi.db"),
    ],
)
def test_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, resolved: str
) -> None:
    monkeypatch.setenv("YINQI_DATABASE_URL", url)
    assert load_settings(home=tmp_path).resolved_database_url == resolved


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("YINQI_LANG", "fr", "environment variable YINQI_LANG: must be 'en' or 'zh' (got 'fr')"),
        (
            "YINQI_DATABASE_URL",
            "mysql://yinqi:hunter2@db/yinqi",
            "environment variable YINQI_DATABASE_URL: unsupported database URL scheme 'mysql'; ",
        ),
        (
            "YINQI_DATABASE_URL",
            "postgresql+psycopg2://yinqi:hunter2@db/yinqi",
            "environment variable YINQI_DATABASE_URL: unsupported database URL scheme ",
        ),
        (
            "YINQI_TIMEZONE",
            "Mars/Olympus",
            "environment variable YINQI_TIMEZONE: unknown time zone 'Mars/Olympus'",
        ),
        ("YINQI_MASTER_SECRET", " ", "environment variable YINQI_MASTER_SECRET: must not be blank"),
    ],
)
def test_bad_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    line = str(caught.value)
    assert line.startswith(expected)
    assert "\n" not in line
    assert "hunter2" not in line


def test_missing_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YINQI_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    assert str(caught.value) == (
        f"environment variable YINQI_CONFIG_DIR: '{tmp_path / 'nowhere'}' is not an existing folder"
    )


def test_several_bad_variables_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YINQI_LANG", "fr")
    monkeypatch.setenv("YINQI_TIMEZONE", "Nowhere")
    with pytest.raises(ConfigError, match=r"\(and 1 more problem in the settings\)$"):
        load_settings(home=tmp_path)


def test_bad_override_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path, lang="fr")
    assert str(caught.value) == "setting lang: must be 'en' or 'zh' (got 'fr')"


def test_segregation_of_duties_cannot_be_switched_off(tmp_path: Path) -> None:
    from config import load_config, load_settings
    from yinqi.errors import ConfigError

    shipped = (Path(__file__).resolve().parents[2] / "config" / "defaults"
               / "approval_policy.toml").read_text()
    (tmp_path / "approval_policy.toml").write_text(
        shipped.replace("distinct_approvers_per_level = true",
                        "distinct_approvers_per_level = false"))
    with pytest.raises(ConfigError, match="distinct_approvers_per_level: .*must be true"):
        load_config(load_settings(config_dir=tmp_path, home=tmp_path / "home"))


def test_reconciliation_config_names_a_bad_cron_and_a_foreign_account(tmp_path: Path) -> None:
    from config import load_config, load_settings
    from config.loader import DEFAULTS_DIR as SHIPPED
    from yinqi.errors import ConfigError

    text = (SHIPPED / "reconciliation.toml").read_text(encoding="utf-8")
    (tmp_path / "reconciliation.toml").write_text(
        text.replace('cron = "30 8 * * *"', 'cron = "30 25 * * *"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"reconciliation.toml: schedules\[0\]\.cron"):
        load_config(load_settings(config_dir=tmp_path))
    (tmp_path / "reconciliation.toml").write_text(
        text.replace('"755912345610808"', '"755900000000000"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="755900000000000 is not one of the company"):
        load_config(load_settings(config_dir=tmp_path))
    (tmp_path / "reconciliation.toml").write_text(
        text.replace('name_similarity_min = "0.85"', "name_similarity_min = 0.85"),
        encoding="utf-8")
    load_config(load_settings(config_dir=tmp_path))  # a share may be a TOML float
