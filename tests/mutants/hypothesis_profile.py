"""A pytest plugin for the kill-matrix runs: the hypothesis profile ``mutants``.

It is the ``ci`` profile (same examples, drawn in the same order) without the shrink phase. A mutant fails a
property on the same example either way; shrinking only makes that example smaller for a human to read, and on a
property that every mutant fails it costs most of the run. Loaded with ``-p tests.mutants.hypothesis_profile``
and chosen with ``--hypothesis-profile=mutants``.
"""

import pytest
from hypothesis import Phase, settings

PROFILE = "mutants"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # after the attnconf plugin registered "ci", before hypothesis's own plugin loads the chosen profile
    settings.register_profile(
        PROFILE, parent=settings.get_profile("ci"), phases=[Phase.explicit, Phase.reuse, Phase.generate]
    )
