"""The SQL source database: table definitions, seeding, and the engine behind an Airflow connection.

The same SQLAlchemy code serves SQLite (embedded default) and PostgreSQL
(production); only the URL differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from ctpipe.datasets.spec import ColumnType, DatasetSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd

SQL_TYPES: dict[ColumnType, sa.types.TypeEngine] = {
    "string": sa.String(),
    "float": sa.Float(),
    "int": sa.BigInteger(),
    "bool": sa.Boolean(),
    "timestamp": sa.DateTime(timezone=True),
}


def sql_table(spec: TableSpec, metadata: sa.MetaData) -> sa.Table:
    """The source table as the dataset declares it. No unique constraint: sources deliver duplicates."""
    columns = [sa.Column(c.name, SQL_TYPES[c.type], nullable=True) for c in spec.columns]
    table = sa.Table(spec.name, metadata, *columns)
    sa.Index(f"ix_{spec.name}_{spec.timestamp}", table.c[spec.timestamp])
    return table


def write_source(
    engine: sa.Engine, dataset: DatasetSpec, frames: dict[str, pd.DataFrame], batch_rows: int = 5_000
) -> None:
    """Replace the dataset's tables with ``frames`` (table name -> rows), in one transaction."""
    metadata = sa.MetaData()
    tables = {spec.name: sql_table(spec, metadata) for spec in dataset.tables}
    with engine.begin() as conn:
        metadata.drop_all(conn, checkfirst=True)
        metadata.create_all(conn)
        for name, frame in frames.items():
            columns = tables[name].columns.keys()
            frame = frame[columns].astype(object).where(frame[columns].notna(), None)
            records = frame.to_dict("records")
            for i in range(0, len(records), batch_rows):
                conn.execute(tables[name].insert(), records[i : i + batch_rows])


def engine_for_connection(conn_id: str) -> sa.Engine:
    """The SQLAlchemy engine of an Airflow connection, through its common-sql hook (SQLite, PostgreSQL...)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise TypeError(f"connection {conn_id!r} is not a SQL database connection (got {type(hook).__name__})")
    return hook.get_sqlalchemy_engine()


def describe(engine: sa.Engine) -> str:
    """The engine's URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)
