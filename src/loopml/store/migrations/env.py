"""Alembic environment: always run online, on the connection loopml passes in."""

from alembic import context

from loopml.store.tables import load_all

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=load_all(),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
