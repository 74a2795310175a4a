"""The ``yinqi`` command: entry layer over the domain, the store and (later) the flows.

Exit codes: 0 success; 1 a check failed (doctor, audit verify); 2 bad configuration or input.
An error always prints as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import sys

import typer
from sqlalchemy.exc import DBAPIError

from yinqi.bootstrap import App
from yinqi.cli import alerts_cmd
from yinqi.cli import approvals_cmd
from yinqi.cli import backup_cmd
from yinqi.cli import files_cmd
from yinqi.cli import keys_cmd
from yinqi.cli import risk_cmd
from yinqi.cli import up_cmd
from yinqi.cli import access, users_cmd
from yinqi.cli import audit_cmd, bank_cmd, doctor_cmd, init_cmd, sandbox_cmd, statements_cmd
from yinqi.cli import demo_cmd, flows_cmd, payments_cmd, reconcile_cmd, vouchers_cmd
from yinqi.cli.output import console, fail_line
from yinqi.errors import ConfigError, InvalidValue, YinqiError
from yinqi.i18n import _

app = typer.Typer(
    name="yinqi",
    help="Yinqi (银企): bank-enterprise direct-connect payments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=access.RootGroup,
)


@app.callback()
def _start(ctx: typer.Context) -> None:
    # Every command reads and checks all settings and config files first, so a bad file
    # stops the command before it touches anything, whatever the command is.
    if ctx.resilient_parsing:
        return
    from yinqi.security.masking import install_redaction

    install_redaction()  # log lines of every command pass the account-number filter
    yinqi = App()
    yinqi.config  # noqa: B018 - loading is the check
    ctx.obj = yinqi
    ctx.call_on_close(yinqi.close)
    # Who asks, and may they (yinqi.security.rbac): refused before anything else runs.
    access.check(ctx, yinqi)


app.command("init")(init_cmd.init)
app.command("doctor")(doctor_cmd.doctor)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(sandbox_cmd.app, name="sandbox-bank")
app.add_typer(bank_cmd.app, name="bank")
app.command("balances")(bank_cmd.balances)
app.command("transactions")(bank_cmd.transactions)
app.add_typer(statements_cmd.app, name="statements")
app.add_typer(vouchers_cmd.app, name="vouchers")
app.add_typer(approvals_cmd.app, name="approvals")
app.add_typer(payments_cmd.payments_app, name="payments")
app.add_typer(payments_cmd.batches_app, name="batches")
app.command("demo")(demo_cmd.demo)
app.add_typer(flows_cmd.app, name="flows")
app.command("up")(up_cmd.up)
app.command("down")(up_cmd.down)
app.command("status")(up_cmd.status)
app.add_typer(reconcile_cmd.app, name="reconcile")
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(files_cmd.receipts_app, name="receipts")
app.add_typer(files_cmd.archive_app, name="archive")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(backup_cmd.app, name="backup")
app.command("login")(users_cmd.login)
app.command("logout")(users_cmd.logout)
app.command("whoami")(users_cmd.whoami)
app.add_typer(users_cmd.app, name="users")
app.add_typer(risk_cmd.app, name="risk")
statements_cmd.app.command("import")(reconcile_cmd.import_statements)
statements_cmd.app.command("fetch")(reconcile_cmd.fetch)
statements_cmd.app.command("show")(reconcile_cmd.show_statement)

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


def main() -> None:
    # Typer vendors click; its exceptions live there, not in the `click` package.
    from typer._click import exceptions as cli_errors

    try:
        # Not standalone: click would print usage errors as a framed block; operators and
        # scripts get one line here, like every other error. `typer.Exit(n)` comes back as n.
        code = app(standalone_mode=False)
    except cli_errors.NoArgsIsHelpError as exc:
        console.print(exc.ctx.get_help(), markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except cli_errors.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        fail_line(f"{where}{exc.format_message()}")
        sys.exit(EXIT_BAD_INPUT if isinstance(exc, cli_errors.UsageError) else exc.exit_code)
    except (ConfigError, InvalidValue) as exc:
        fail_line(str(exc))
        sys.exit(EXIT_BAD_INPUT)
    except YinqiError as exc:
        fail_line(str(exc))
        sys.exit(EXIT_CHECK_FAILED)
    except DBAPIError as exc:
        # The database is down, locked or refused a statement: the command did not finish
        # (its transaction rolled back); the line says which database and what to do.
        from yinqi.store.engine import failure_line

        fail_line(failure_line(exc))
        sys.exit(EXIT_CHECK_FAILED)
    except (KeyboardInterrupt, typer.Abort):
        fail_line(_("interrupted"))
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
