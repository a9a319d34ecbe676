"""The SQL source database: table definitions, seeding, and the engine behind an Airflow connection.

The same SQLAlchemy code serves SQLite (embedded default) and PostgreSQL
(production); only the URL differs. A connection that is missing or malformed
raises ``ConfigurationError`` (retrying will not help), a server that does not
answer ``ServiceUnavailableError`` within seconds (it may come back); each
names the connection and says what is wrong, never showing the password.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ctpipe.datasets.spec import ColumnType, DatasetSpec, TableSpec
from ctpipe.services import Service
from ctpipe.settings import ConfigurationError, Settings

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


# Seconds a driver waits for the server before giving up; a connection's ``connect_timeout`` extra overrides it.
CONNECT_TIMEOUT = 10
# Dialects whose drivers take ``connect_timeout`` (libpq's default waits 130 s, the OS's even longer).
_TIMEOUT_DIALECTS = ("postgresql", "mysql")
_EXAMPLE_URI = "postgresql://user:password@host:5432/database"
# libpq connection parameters a postgres connection may carry in its extras.
LIBPQ_OPTIONS = frozenset(
    {
        "application_name",
        "channel_binding",
        "gssencmode",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "options",
        "passfile",
        "service",
        "sslcert",
        "sslcompression",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "target_session_attrs",
        "tcp_user_timeout",
    }
)


def connection_variable(conn_id: str) -> str:
    """The environment variable that defines an Airflow connection."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def engine_for_connection(conn_id: str) -> sa.Engine:
    """A working SQLAlchemy engine for an Airflow connection, through its common-sql hook (SQLite, PostgreSQL...).

    The engine has connected once before it is returned, so a bad connection fails here, once, with
    ``ConfigurationError`` or ``ServiceUnavailableError`` rather than deep inside a query.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk.exceptions import AirflowException

    connection = _get_connection(conn_id)
    if not connection.conn_type:
        raise ConfigurationError(
            f"source connection {conn_id!r} has no connection type: {_definition(conn_id)} must be a URI "
            f'such as {_EXAMPLE_URI}, or JSON with a "conn_type"'
        )
    try:
        hook = connection.get_hook()
    except ImportError as error:
        raise ConfigurationError(
            f"source connection {conn_id!r} has connection type {connection.conn_type!r}, "
            f"but its provider cannot be imported: {error}"
        ) from None
    except AirflowException as error:  # the plain kind, for an unknown type
        if "Unknown hook type" not in str(error):
            raise
        raise ConfigurationError(
            f"source connection {conn_id!r} has connection type {connection.conn_type!r}, which no installed "
            "Airflow provider knows; a SQL source needs e.g. 'postgres' or 'sqlite'"
        ) from None
    if not isinstance(hook, DbApiHook):
        raise ConfigurationError(
            f"source connection {conn_id!r} has connection type {connection.conn_type!r} "
            f"({type(hook).__name__}), not a SQL database; a SQL source needs e.g. 'postgres' or 'sqlite'"
        )
    try:
        engine = hook.get_sqlalchemy_engine()
    except (sa.exc.ArgumentError, TypeError, ValueError) as error:
        raise ConfigurationError(f"source connection {conn_id!r} is not a usable database URL: {error}") from None
    if engine.dialect.name in _TIMEOUT_DIALECTS:
        options = {"connect_timeout": connection.extra_dejson.get("connect_timeout", CONNECT_TIMEOUT)}
        if engine.dialect.name == "postgresql":
            # The hook's SQLAlchemy URL drops the connection's libpq extras (sslmode, sslrootcert...):
            # pass them to the driver as the hook's own get_conn() does.
            options.update({k: v for k, v in connection.extra_dejson.items() if k in LIBPQ_OPTIONS})
        _add_connect_options(engine, options)
    try:
        _check_connects(engine, conn_id, connection.password)
    except Exception:
        engine.dispose()
        raise
    return engine


def _get_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        pass
    # Airflow reports a value it cannot parse as "not defined"; say which it is.
    variable = connection_variable(conn_id)
    value = Settings.from_env().airflow_connection_value(conn_id)
    if value is None:
        raise ConfigurationError(
            f"source connection {conn_id!r} is not defined: set {variable} to a URI such as {_EXAMPLE_URI} "
            f"(or to JSON with a conn_type), or define {conn_id!r} in the Airflow secrets backend"
        ) from None
    raise ConfigurationError(
        f"source connection {conn_id!r} cannot be read: {variable} {_unreadable_because(value, conn_id)}"
    ) from None


def _unreadable_because(value: str, conn_id: str) -> str:
    """Why Airflow cannot parse a connection's value, in words that never repeat the value (it holds a password)."""
    from airflow.sdk import Connection

    value = value.strip()
    if not value:
        return "is blank"
    try:
        if value.startswith("{"):
            Connection.from_json(value, conn_id=conn_id)
        else:
            Connection.from_uri(value, conn_id=conn_id)
    except json.JSONDecodeError as error:
        return f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
    except TypeError as error:  # an unknown key in the JSON
        return f"holds a field a connection does not have ({error})"
    except ValueError as error:  # a port that is not a number, a bracketed host that is not IPv6
        return f"has an invalid part ({error})"
    except Exception:
        pass
    return f"is not a connection URI such as {_EXAMPLE_URI}, nor JSON with a conn_type"


def _definition(conn_id: str) -> str:
    """Where the connection Airflow found is written: the environment variable is searched first."""
    defined = Settings.from_env().airflow_connection_value(conn_id) is not None
    return connection_variable(conn_id) if defined else "its definition in the Airflow secrets backend"


def _add_connect_options(engine: sa.Engine, options: dict[str, Any]) -> None:
    @sa.event.listens_for(engine, "do_connect")
    def connect_options(dialect, connection_record, cargs, cparams) -> None:
        for name, value in options.items():
            cparams.setdefault(name, value)  # a value in the URL's query wins


def _check_connects(engine: sa.Engine, conn_id: str, password: str | None) -> None:
    service = Service(
        "source database",
        describe(engine),
        f"connection {conn_id!r}",
        timeout=CONNECT_TIMEOUT,
        secrets=(password,) if password else (),
    )

    def connects() -> None:
        with engine.connect():
            pass

    try:
        service.probe(connects, errors=(sa.exc.OperationalError, sa.exc.InterfaceError))
    except sa.exc.DBAPIError as error:  # the driver rejects the parameters (a bad connect_timeout, sslmode...)
        reason = service.unavailable(error).reason
        raise ConfigurationError(f"source connection {conn_id!r} ({describe(engine)}) is malformed: {reason}") from None


def describe(engine: sa.Engine) -> str:
    """The engine's URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)
