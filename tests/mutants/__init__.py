"""Deliberately broken attention implementations ("mutants") that the conformance suite must catch.

``bases.py`` holds small correct implementations written as overridable steps; ``catalogue.py`` derives each mutant
from one of them by overriding a single step with one deliberate bug, and exposes them (and the correct bases, as
controls) as lists of ``attnconf.Implementation`` for ``--impl-module``. ``kill_matrix.py`` runs the suite on all of
them and reports which contract caught each mutant.
"""
