"""Griffe extension for the API reference: Sphinx cross-reference roles in docstrings become code spans.

The docstrings are written for Python's ``help()`` and Sphinx-style readers (``:func:`read_volume```,
``:class:`~ctdenoise.io.Volume```); mkdocstrings renders Markdown, where such a role would show as raw
text. This rewrites each role to a Markdown code span of the name as Sphinx would display it (``~`` keeps
the last component only). The docstrings themselves are not changed. Registered in ``mkdocs.yml`` under
the python handler's ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

#: ``:role:`target``` or ``:role:`~target```, for the roles Python's docstrings use.
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")


def plain_roles(text: str) -> str:
    """``text`` with every Sphinx role replaced by a code span of what Sphinx would display."""

    def display(match: re.Match[str]) -> str:
        target = match["target"].strip()
        if match["tilde"]:
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return ROLE.sub(display, text)


class SphinxRolesToCode(griffe.Extension):
    """Rewrite the docstring of every loaded object with :func:`plain_roles`."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
