"""alembic's environment for the compliance store: run on the connection `upgrade_store` gives.

There is no alembic.ini: `dereg.evidence.migrations.alembic_config` builds the configuration in
code and passes the open connection (inside its transaction and lock) as an attribute.
"""

from alembic import context

from dereg.evidence.migrations import VERSION_TABLE
from dereg.evidence.store import declared_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=declared_metadata(),
    version_table=VERSION_TABLE,
    # SQLite changes a table by copying it; autogenerate writes such changes that way
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
