"""The access table: every command has a rule, and the rules say what the issue asks."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from yinqi.approvals import Role
from yinqi.cli.app import app as yinqi_cli
from yinqi.security.rbac import RULES, Actor, Kind, authorise, command_paths

TREE = typer.main.get_command(yinqi_cli)
COMMANDS = command_paths(TREE)


def person(name: str, *roles: str) -> Actor:
    return Actor(name=name, kind=Kind.USER, roles=frozenset(roles))


SERVICE = Actor.service("service:cron")

#: Commands that need a person's judgement: the service identity never runs them.
PERSON_ONLY = [
    "approvals approve", "approvals reject", "batches rerun", "payments fix",
    "reconcile exceptions confirm", "reconcile exceptions rematch",
    "reconcile exceptions write-off", "risk release", "risk reject", "risk freeze",
    "risk unfreeze", "keys rotate", "users list", "users add", "users set-password",
    "users enrol", "users unlock", "users sessions", "receipts show", "archive show",
    "backup release",
]
#: Routine commands the service identity (cron, Prefect, scripts) may run.
ROUTINE = [
    "init", "doctor", "demo", "flows serve", "payments run", "payments list", "batches list",
    "statements fetch", "statements import", "statements parse", "statements show",
    "reconcile run", "reconcile report", "vouchers import", "audit verify", "bank test",
    "balances", "transactions", "sandbox-bank serve", "sandbox-bank connect", "alerts deliver",
]


def test_every_command_of_the_cli_has_a_rule() -> None:
    assert len(COMMANDS) > 30
    missing = [path for path in COMMANDS if path not in RULES]
    assert missing == [], f"add these commands to yinqi/security/rbac.py RULES: {missing}"


def test_every_rule_names_a_command_that_exists() -> None:
    # A stale rule is harmless but misleading: the table is the documentation of who may.
    assert sorted(set(RULES) - set(COMMANDS)) == []


def test_command_groups_take_no_options_the_access_check_would_have_to_skip() -> None:
    # The check finds the command path by walking group names; a group option taking a value
    # (`yinqi reconcile --x VALUE exceptions ...`) would need parsing there first.
    def groups(command: object) -> list[object]:
        subs = getattr(command, "commands", None)
        if subs is None:
            return []
        return [command] + [g for sub in subs.values() for g in groups(sub)]

    for group in groups(TREE):
        names = [p.name for p in group.params]  # type: ignore[attr-defined]
        assert names == [], f"{group.name} has options {names}"  # type: ignore[attr-defined]


def test_an_unknown_command_is_refused_with_one_line_naming_it() -> None:
    admin = person("admin", "admin")
    verdict = authorise("payments teleport", admin)
    assert not verdict.allowed
    assert "payments teleport is not in the access table" in verdict.message
    assert "\n" not in verdict.message


def test_a_user_without_the_role_is_refused_naming_the_role_and_the_user() -> None:
    verdict = authorise("payments fix", person("wu.maker", "maker"))
    assert not verdict.allowed
    assert verdict.message == "payments fix needs role treasurer; you are wu.maker (maker)"
    assert authorise("payments fix", person("liu.treasurer", "treasurer")).allowed


@pytest.mark.parametrize("path", PERSON_ONLY)
def test_the_service_identity_is_refused_what_needs_a_person(path: str) -> None:
    assert RULES[path].roles, path
    verdict = authorise(path, SERVICE)
    assert not verdict.allowed
    assert "the service identity may not run it" in verdict.message


@pytest.mark.parametrize("path", ROUTINE)
def test_the_service_identity_runs_routine_commands(path: str) -> None:
    assert authorise(path, SERVICE).allowed


def test_nobody_logged_in_is_refused_unless_the_command_needs_no_identity() -> None:
    refused = authorise("payments run", None)
    assert not refused.allowed and "nobody is logged in" in refused.message
    assert "YINQI_ACTOR=service" in refused.message
    for path in ("login", "logout", "whoami", "demo", "statements parse"):
        assert authorise(path, None).allowed, path


def test_only_the_first_password_and_a_restore_after_loss_are_bootstrap() -> None:
    """Nobody can log in to a new installation, nor to one whose database was lost: the
    service identity may then set the first password, or restore the database."""
    for path in ("users set-password", "backup restore"):
        assert authorise(path, SERVICE, armed=False).allowed
        assert not authorise(path, SERVICE, armed=True).allowed
    assert sorted(p for p, r in RULES.items() if r.bootstrap) == ["backup restore",
                                                                   "users set-password"]
    assert not authorise("users add", SERVICE, armed=False).allowed


@pytest.mark.parametrize(("path", "allowed", "refused"), [
    ("users add", [Role.ADMIN], [Role.TREASURER, Role.AUDITOR, Role.CFO]),
    ("keys rotate", [Role.ADMIN], [Role.TREASURER, Role.AUDITOR]),
    ("keys list", [Role.ADMIN, Role.AUDITOR, Role.TREASURER], [Role.MAKER, Role.APPROVER]),
    ("risk release", [Role.TREASURER, Role.FINANCE_MANAGER, Role.CFO],
     [Role.MAKER, Role.AUDITOR, Role.ADMIN]),
    ("risk unfreeze", [Role.TREASURER, Role.ADMIN], [Role.CFO, Role.MAKER]),
    ("audit verify", [Role.AUDITOR, Role.ADMIN], [Role.MAKER, Role.TREASURER]),
    ("vouchers import", [Role.MAKER, Role.TREASURER], [Role.APPROVER, Role.AUDITOR]),
    ("receipts show", [Role.AUDITOR, Role.TREASURER, Role.ADMIN], [Role.MAKER, Role.CFO]),
    ("payments list", [Role.TREASURER, Role.AUDITOR, Role.ADMIN, Role.CFO], [Role.MAKER]),
    ("alerts ack", [Role.TREASURER, Role.ADMIN, Role.AUDITOR], [Role.MAKER]),
])
def test_roles_per_command(path: str, allowed: list[Role], refused: list[Role]) -> None:
    for role in allowed:
        assert authorise(path, person("x", role.value)).allowed, (path, role)
    for role in refused:
        assert not authorise(path, person("x", role.value)).allowed, (path, role)


def test_one_of_several_roles_is_enough() -> None:
    assert authorise("payments fix", person("chen", "approver", "treasurer")).allowed


# --- the check in the CLI, in-process (no database needed to refuse) ---------------------------


def _run(tmp_path: Path, *args: str, **env: str) -> object:
    base = {"YINQI_HOME": str(tmp_path / "home"), "YINQI_ACTOR": "", "YINQI_SESSION": "",
            "YINQI_DATABASE_URL": f"sqlite:///{tmp_path / 'y.db'}", "COLUMNS": "200"}
    return CliRunner().invoke(yinqi_cli, list(args), env={**base, **env})


def test_help_needs_no_identity_but_help_as_an_option_value_is_no_way_around(
    tmp_path: Path,
) -> None:
    shown = _run(tmp_path, "payments", "fix", "--help", YINQI_ACTOR="service")
    assert shown.exit_code == 0 and "Usage" in shown.output  # type: ignore[attr-defined]
    # `--purpose --help` sets the purpose to "--help": the command would run, so it is checked.
    sneaky = _run(tmp_path, "payments", "fix", "1", "--purpose", "--help",
                  YINQI_ACTOR="service")
    assert sneaky.exit_code == 1  # type: ignore[attr-defined]
    assert "the service identity may not run it" in str(sneaky.exception)  # type: ignore[attr-defined]


def test_a_bad_yinqi_actor_is_bad_input(tmp_path: Path) -> None:
    result = _run(tmp_path, "payments", "list", YINQI_ACTOR="root")
    assert "YINQI_ACTOR must be 'service'" in str(result.exception)  # type: ignore[attr-defined]
