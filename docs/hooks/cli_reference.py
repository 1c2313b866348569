"""MkDocs hook: render the ``ctdenoise`` command-line reference from the argparse parsers.

A page that contains the line ``<!-- cli-reference -->`` (alone on its line) gets, in its place, one section per subcommand
of :func:`ctdenoise.cli.build_parser`: its description, its usage line and a table of every argument
(name, value, default, help), in the order ``ctdenoise --help`` lists them. The options are therefore
documented once, in the ``help=`` strings of ``ctdenoise/cli/<command>.py``, and a new flag appears in the
docs at the next build. Registered in ``mkdocs.yml`` under ``hooks:``.
"""

from __future__ import annotations

import argparse
import html
import re

from ctdenoise.cli import build_parser

MARKER = re.compile(r"^<!-- cli-reference -->[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **_: object) -> str:
    """Replace the :data:`MARKER` line by the rendered reference (pages without it are returned unchanged)."""
    if not MARKER.search(markdown):
        return markdown
    reference = render_reference(build_parser())
    return MARKER.sub(lambda _match: reference, markdown)


def render_reference(parser: argparse.ArgumentParser) -> str:
    """Markdown for the top-level options and every subcommand of ``parser``."""
    sections = [_render_command(parser, "ctdenoise", heading="Global options", anchor="cli-global", global_only=True)]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        sections.append(_render_command(sub, f"ctdenoise {name}", heading=f"`ctdenoise {name}`", anchor=f"cli-{name}"))
        actions = next((a for a in sub._actions if isinstance(a, argparse._SubParsersAction)), None)
        for action_name, action in (actions.choices.items() if actions is not None else ()):  # e.g. strength fit
            sections.append(_render_command(action, f"ctdenoise {name} {action_name}",
                                            heading=f"`ctdenoise {name} {action_name}`", anchor=f"cli-{name}-{action_name}"))
    return "\n\n".join(sections)


def _render_command(parser: argparse.ArgumentParser, prog: str, *, heading: str, anchor: str,
                    global_only: bool = False) -> str:
    formatter = argparse.HelpFormatter(prog, width=100)
    lines = [f"### {heading} {{ #{anchor} }}", ""]
    if parser.description and not global_only:
        if parser.formatter_class is argparse.RawDescriptionHelpFormatter:
            lines += ["```text", parser.description.rstrip(), "```", ""]
        else:
            lines += [" ".join(parser.description.split()), ""]
    usage = parser.format_usage().strip()
    if global_only:
        usage = "usage: ctdenoise [-h] [--version] [-v] COMMAND ..."
    lines += ["```text", usage, "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| argument | value | default | description |", "|---|---|---|---|"]
        for action in actions:
            lines.append("| " + " | ".join(_cells(action, formatter)) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def _cells(action: argparse.Action, formatter: argparse.HelpFormatter) -> list[str]:
    names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        value = ""
    elif action.choices is not None:
        value = " \\| ".join(f"`{choice}`" for choice in action.choices)
    else:
        metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
        value = f"`{metavar}`" + (" ..." if action.nargs in ("+", "*") else "")
    if action.required and action.option_strings:
        default = "required"
    elif action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
        default = ""
    elif isinstance(action.default, (list, tuple)):
        default = f"`{','.join(map(str, action.default))}`"
    else:
        default = f"`{action.default}`"
    description = formatter._expand_help(action) if action.help else ""
    return [names, value, default, _escape(description)]


def _escape(text: str) -> str:
    """Table-cell text: HTML special characters escaped, pipes escaped, one line."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")
