"""Upsert by external id through the Sequin proxy with SQLAlchemy 2 Core on
psycopg 3: `insert(...).on_conflict_do_update(index_elements=[ext_id__c])`
on salesforce.account, which write-through turns into Salesforce's upsert.

Usage: python sqlalchemy_upsert.py <postgres-url> <existing account id>.
Exits non-zero with a traceback on the first failed check; prints
`RESULT <json>` with the ids and row counts, which write_salesforce_upsert.rs
checks against the Salesforce simulator.
"""
import json
import sys

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

url = sys.argv[1].replace("postgres://", "postgresql+psycopg://", 1).replace(
    "postgresql://", "postgresql+psycopg://", 1
)
existing = sys.argv[2]

md = sa.MetaData(schema="salesforce")
account = sa.Table(
    "account",
    md,
    # Assigned by Salesforce: read back with RETURNING.
    sa.Column("id", sa.Text, primary_key=True, server_default=sa.FetchedValue()),
    sa.Column("name", sa.Text),
    sa.Column("ext_id__c", sa.Text),
    sa.Column("number_of_employees", sa.BigInteger),
)


def upsert(rows):
    stmt = insert(account).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[account.c.ext_id__c],
        set_={
            "name": stmt.excluded.name,
            "number_of_employees": stmt.excluded.number_of_employees,
        },
    ).returning(account.c.id, account.c.ext_id__c, account.c.name)
    return stmt


def is_account_id(value):
    return isinstance(value, str) and len(value) == 18 and value.startswith("001") and value.isalnum()


engine = sa.create_engine(url)
out = {}
with engine.connect() as conn:
    # A row that creates.
    r = conn.execute(upsert([{"name": "Orm New", "ext_id__c": "ORM-NEW", "number_of_employees": 3}]))
    # The command tag psycopg read (SQLAlchemy's rowcount is -1 with RETURNING).
    assert r.cursor.statusmessage == "INSERT 0 1", r.cursor.statusmessage
    rows = r.all()
    assert len(rows) == 1 and is_account_id(rows[0].id), rows
    assert rows[0].name == "Orm New", rows
    out["created"] = rows[0].id
    conn.commit()

    # A row that updates the record the org already had.
    r = conn.execute(upsert([{"name": "Orm Old Renamed", "ext_id__c": "ORM-OLD", "number_of_employees": 7}]))
    assert r.cursor.statusmessage == "INSERT 0 1", r.cursor.statusmessage
    rows = r.all()
    assert rows[0].id == existing, (rows, existing)
    assert rows[0].name == "Orm Old Renamed", rows
    conn.commit()

    # Several rows in one statement: one creates, one updates.
    r = conn.execute(
        upsert(
            [
                {"name": "Orm Multi", "ext_id__c": "ORM-MULTI", "number_of_employees": 11},
                {"name": "Orm New Again", "ext_id__c": "ORM-NEW", "number_of_employees": 12},
            ]
        )
    )
    assert r.cursor.statusmessage == "INSERT 0 2", r.cursor.statusmessage
    rows = r.all()
    assert len(rows) == 2, rows
    by_ext = {row.ext_id__c: row.id for row in rows}
    assert by_ext["ORM-NEW"] == out["created"], by_ext
    assert is_account_id(by_ext["ORM-MULTI"]) and by_ext["ORM-MULTI"] != out["created"], by_ext
    out["multi"] = by_ext["ORM-MULTI"]
    conn.commit()

    # A validation rule of the org refuses it: the error contract.
    try:
        conn.execute(upsert([{"name": "Orm Bad", "ext_id__c": "ORM-OLD", "number_of_employees": -1}]))
        raise AssertionError("the validation rule should refuse the upsert")
    except DBAPIError as e:
        diag = e.orig.diag
        out["refused"] = {
            "sqlstate": e.orig.sqlstate,
            "message": diag.message_primary,
            "detail": diag.message_detail,
            "column": diag.column_name,
            "table": diag.table_name,
        }
        conn.rollback()

    # ON CONFLICT on a column that is no external id: 0A000.
    try:
        stmt = insert(account).values([{"name": "Orm Wrong", "ext_id__c": "ORM-W"}])
        conn.execute(stmt.on_conflict_do_update(index_elements=[account.c.name], set_={"ext_id__c": stmt.excluded.ext_id__c}))
        raise AssertionError("ON CONFLICT (name) should be refused")
    except DBAPIError as e:
        out["wrong_target"] = {"sqlstate": e.orig.sqlstate, "message": e.orig.diag.message_primary}
        conn.rollback()

    local = conn.execute(
        sa.select(account.c.id, account.c.name, account.c.number_of_employees).where(
            account.c.ext_id__c.in_(["ORM-NEW", "ORM-OLD", "ORM-MULTI"])
        )
    ).all()
    out["local"] = {row.id: [row.name, row.number_of_employees] for row in local}

print("RESULT " + json.dumps(out))
print("sqlalchemy upserts ok")
