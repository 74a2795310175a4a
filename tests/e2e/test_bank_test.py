"""`yinqi bank test`: the connectivity test names the step that fails, over real sockets."""

from __future__ import annotations

import json
from decimal import Decimal
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_settings
from sandbox_support import free_port, serve, write_config
from yinqi.bootstrap import App
from yinqi.cli.init_cmd import run_init
from yinqi.cli.sandbox_cmd import enrol

SHIPPED_BANKS = Path(__file__).resolve().parents[2] / "config" / "defaults" / "banks.toml"
SECRET = "bank-test-secret-" + "z" * 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("banktest")
    port = free_port()
    conf = tmp / "conf"
    conf.mkdir()
    (conf / "banks.toml").write_text(
        SHIPPED_BANKS.read_text().replace("127.0.0.1:8443", f"127.0.0.1:{port}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    env.update(YINQI_HOME=str(tmp / "home"), YINQI_DATABASE_URL=f"sqlite:///{tmp / 'y.db'}",
               YINQI_MASTER_SECRET=SECRET, YINQI_CONFIG_DIR=str(conf), COLUMNS="200")
    app = App(load_settings(home=tmp / "home", database_url=f"sqlite:///{tmp / 'y.db'}",
                            master_secret=SECRET, config_dir=conf))
    run_init(app)
    config = write_config(tmp)
    enrol(app, config, tmp / "home" / "sandbox")
    app.close()
    return tmp, port, config, env


def bank_test(env: dict[str, str], bank: str = "icbc-sandbox") -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = subprocess.run([sys.executable, "-m", "yinqi", "bank", "test", bank, "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def outcomes(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {s["name"]: s["outcome"] for s in report["steps"]}


@pytest.mark.parametrize("bank", ["icbc-sandbox", "cmb-sandbox"])
def test_a_healthy_channel_passes_every_step(setup, bank: str) -> None:  # type: ignore[no-untyped-def]
    tmp, port, config, env = setup
    with serve(config, tmp / "home" / "sandbox", tmp, port=port):
        code, report = bank_test(env, bank)
    assert code == 0, report
    assert outcomes(report) == {name: "ok" for name in (
        "config", "dns", "tcp", "tls", "certificates", "authentication", "echo", "balance")}
    assert "****" in next(s["detail"] for s in report["steps"] if s["name"] == "balance")


def test_the_bank_down_fails_at_tcp(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, _, env = setup
    code, report = bank_test(env)
    assert code == 1 and report["failed_step"] == "tcp"
    assert outcomes(report)["tls"] == "skipped"
    step = next(s for s in report["steps"] if s["name"] == "tcp")
    assert "refused" in step["detail"].lower() and "sandbox-bank serve" in step["hint"]


def test_a_wrong_client_certificate_fails_at_tls(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from connectors.sandbox.pki import issue_foreign_client_cert

    tmp, port, config, env = setup
    keys = tmp / "home" / "keys"
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in ("client-icbc-sandbox.pem", "client-icbc-sandbox.key"):
        shutil.copy2(keys / name, saved / name)
    cert, key = issue_foreign_client_cert(tmp_path)
    shutil.copyfile(cert, keys / "client-icbc-sandbox.pem")
    shutil.copyfile(key, keys / "client-icbc-sandbox.key")
    try:
        with serve(config, tmp / "home" / "sandbox", tmp, port=port):
            code, report = bank_test(env)
    finally:
        for name in ("client-icbc-sandbox.pem", "client-icbc-sandbox.key"):
            shutil.copy2(saved / name, keys / name)
    assert code == 1 and report["failed_step"] == "tls", report
    step = next(s for s in report["steps"] if s["name"] == "tls")
    assert "client certificate" in step["detail"] + step["hint"]


def test_an_expired_server_certificate_fails_at_tls(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, port, config, env = setup
    expired = tmp / "expired.toml"
    expired.write_text(config.read_text().replace("expired_server_certificate = false",
                                                  "expired_server_certificate = true"))
    with serve(expired, tmp / "home" / "sandbox", tmp, port=port):
        code, report = bank_test(env)
    assert code == 1 and report["failed_step"] == "tls", report
    step = next(s for s in report["steps"] if s["name"] == "tls")
    assert "expired" in step["detail"]


def yinqi_json(env: dict[str, str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = subprocess.run([sys.executable, "-m", "yinqi", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_cash_position_across_banks_marks_failures_instead_of_hiding_them(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, port, config, env = setup
    with serve(config, tmp / "home" / "sandbox", tmp, port=port):
        code, up = yinqi_json(env, "balances")
    assert code == 0 and up["failed"] == 0
    assert {(a["bank"], a["currency"]) for a in up["accounts"]} == {
        ("icbc-sandbox", "CNY"), ("icbc-sandbox", "USD"), ("cmb-sandbox", "CNY")}
    assert all(a["account"].startswith("****") for a in up["accounts"])
    assert up["totals"]["CNY"] == str(sum(
        Decimal(a["balance"]) for a in up["accounts"] if a["currency"] == "CNY"))
    code, down = yinqi_json(env, "balances")
    assert code == 1 and down["failed"] == 4
    assert all(a["status"] == "FAILED" and a["balance"] is None for a in down["accounts"])
