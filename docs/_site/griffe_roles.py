"""Griffe extension of the documentation site (mkdocs.yml): Sphinx roles in docstrings as code.

The package's docstrings name other objects the Sphinx way (``:func:`run_rsa```, ``:mod:`.rdm```,
``:class:`~deepdraw.nn.models.ModelSpec```); Markdown has no such roles, so they are shown as inline
code of the name (``~`` and leading dots dropped, as Sphinx shows them).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const|ref):`~?\.?([^`]+)`")


def strip_roles(text: str) -> str:
    return ROLE.sub(lambda m: f"`{m.group(1)}`", text)


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = strip_roles(obj.docstring.value)
