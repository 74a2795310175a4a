"""``yinqi audit ...``: the tamper-evident trail."""

from __future__ import annotations

import typer

from yinqi.bootstrap import App
from yinqi.cli.output import console, err_console, print_json
from yinqi.i18n import _
from yinqi.store.migrate import ensure_current

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@app.command("verify")
def verify(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check every audit event; name the first edited, deleted or reordered one."""
    yinqi: App = ctx.obj
    ensure_current(yinqi.engine)
    with yinqi.sessions() as session:
        verdict = yinqi.audit.verify(session)
    if json_out:
        print_json({"ok": verdict.ok, "checked": verdict.checked,
                    "first_bad_seq": verdict.first_bad_seq, "problem": verdict.problem})
    elif verdict.ok:
        console.print(_("audit chain intact: {count} events verified").format(
            count=verdict.checked))
    else:
        # The problem is in the verifier's words (English), as --json gives it.
        err_console.print(_("audit chain BROKEN at event #{seq}: {problem}").format(
            seq=verdict.first_bad_seq, problem=verdict.problem), markup=False)
    if not verdict.ok:
        raise typer.Exit(1)
