"""Dereg's development tools, apart from the runtime package `dereg`: the embedded and distributed
demo stacks (`devtools.stack`) and the demo school's seed and labelled corpus (`devtools.demo`).

Installed only in the development venv (`make venv`, from devtools/pyproject.toml); the production
image and the DAGs never import it. It may import `dereg`; `dereg` never imports it (a unit test
checks that).
"""
