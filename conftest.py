"""Root conftest of the attnconf checkout.

The attnconf plugin (options, fixtures, hypothesis profiles, the matrix) loads through its ``pytest11`` entry
point once the package is installed (``pip install -e .``), exactly as it does for a user's project; nothing is
set up here, so a run inside the clone is judged by what an installed user gets.
"""
