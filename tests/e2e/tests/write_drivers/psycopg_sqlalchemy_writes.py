"""Write-through scenario for psycopg 3 and the SQLAlchemy 2 ORM through the
Sequin proxy, on salesforce.contact.

Usage: python psycopg_sqlalchemy_writes.py <postgres-url>. Exits non-zero
with a traceback on the first failed check; prints `RESULT <json>` with the
ids it wrote, which write_drivers.rs checks against the Salesforce simulator.
"""
import json
import sys
from typing import Optional

import psycopg
from psycopg import errors
import sqlalchemy as sa
from sqlalchemy import FetchedValue, String, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

url = sys.argv[1]
MISSING_ACCOUNT = "001Dn0000009999"


def is_contact_id(value):
    return isinstance(value, str) and len(value) == 18 and value.startswith("003") and value.isalnum()


class Base(DeclarativeBase):
    pass


class Contact(Base):
    __tablename__ = "contact"
    __table_args__ = {"schema": "salesforce"}
    # Assigned by Salesforce: the ORM reads it back with INSERT ... RETURNING.
    id: Mapped[str] = mapped_column(String, primary_key=True, server_default=FetchedValue())
    first_name: Mapped[Optional[str]]
    last_name: Mapped[Optional[str]]
    email: Mapped[Optional[str]]
    title: Mapped[Optional[str]]
    account_id: Mapped[Optional[str]]
    # Computed by Salesforce from the name parts.
    name: Mapped[Optional[str]] = mapped_column(server_default=FetchedValue(), server_onupdate=FetchedValue())


engine = sa.create_engine(url.replace("postgres://", "postgresql+psycopg://", 1))
result = {}

with Session(engine, expire_on_commit=False) as s:
    # INSERT ... RETURNING at flush: the id is Salesforce's.
    andrea = Contact(first_name="Andrea", last_name="Py-Palladio", email="andrea@py.example")
    s.add(andrea)
    s.flush()
    assert is_contact_id(andrea.id), andrea.id
    s.commit()
    s.refresh(andrea)
    assert andrea.name == "Andrea Py-Palladio", andrea.name
    result["orm"] = andrea.id

    # Several objects in one flush: one multi-row INSERT ... RETURNING.
    many = [Contact(last_name=n) for n in ("Py-Scamozzi", "Py-Longhena", "Py-Sansovino")]
    s.add_all(many)
    s.commit()
    for c in many:
        assert is_contact_id(c.id), c.id
    assert len({c.id for c in many}) == 3
    result["many"] = [c.id for c in many]

    # UPDATE by an arbitrary WHERE.
    r = s.execute(
        update(Contact)
        .where(Contact.last_name.like("Py-%"), Contact.last_name != "Py-Sansovino")
        .values(title="Architect")
    )
    assert r.rowcount == 3, r.rowcount
    s.commit()

    # DELETE of a mapped object.
    s.delete(many[2])
    s.commit()
    result["deleted"] = many[2].id

    # A flush Sequin refuses locally (format: email): DataError (22023).
    s.add(Contact(first_name="Andrea", last_name="Py-Invalid", email="andrea__invalid"))
    try:
        s.commit()
        raise AssertionError("the invalid email was accepted")
    except DataError as e:
        assert e.orig.sqlstate == "22023", e.orig.sqlstate
        msg = e.orig.diag.message_primary
        assert msg.startswith("[Salesforce]: "), msg
        assert "`email`" in msg and "invalid" in msg, msg
        assert e.orig.diag.column_name == "email", e.orig.diag.column_name
        assert e.orig.diag.table_name == "contact", e.orig.diag.table_name
    s.rollback()

    # A change Salesforce refuses (the account does not exist): IntegrityError (23514).
    andrea.account_id = MISSING_ACCOUNT
    try:
        s.commit()
        raise AssertionError("the missing account was accepted")
    except IntegrityError as e:
        assert e.orig.sqlstate == "23514", e.orig.sqlstate
        assert e.orig.diag.message_primary.startswith("[Salesforce]: "), e.orig.diag.message_primary
        assert e.orig.diag.column_name == "account_id", e.orig.diag.column_name
    s.rollback()
    s.refresh(andrea)
    assert andrea.account_id is None, andrea.account_id
    assert andrea.title == "Architect", andrea.title

    # A dirty attribute flushed as an UPDATE; the computed Name follows.
    andrea.first_name = "Andrea di Pietro"
    s.commit()
    s.refresh(andrea)
    assert andrea.name == "Andrea di Pietro Py-Palladio", andrea.name

# psycopg directly: a server-side prepared statement with parameters.
with psycopg.connect(url, autocommit=True) as conn:
    ids = []
    for last in ("Py-Prepared-1", "Py-Prepared-2"):
        row = conn.execute(
            "insert into salesforce.contact (first_name, last_name) values (%s, %s) returning id",
            ("Vincenzo", last),
            prepare=True,
        ).fetchone()
        assert is_contact_id(row[0]), row
        ids.append(row[0])
    result["prepared"] = ids
    # A multi-row INSERT in one statement, with parameters.
    cur = conn.execute(
        "insert into salesforce.contact (last_name) values (%s), (%s), (%s) returning id",
        ("Py-Multi-1", "Py-Multi-2", "Py-Multi-3"),
    )
    assert cur.rowcount == 3, cur.rowcount
    multi = [r[0] for r in cur.fetchall()]
    assert all(is_contact_id(i) for i in multi), multi
    result["multi"] = multi
    try:
        conn.execute(
            "insert into salesforce.contact (last_name, email) values (%s, %s)",
            ("Py-Invalid", "andrea__invalid"),
            prepare=True,
        )
        raise AssertionError("the invalid email was accepted")
    except errors.InvalidParameterValue as e:
        assert e.sqlstate == "22023"
        assert e.diag.message_primary.startswith("[Salesforce]: ")
    # Pipeline mode: several statements sent before one Sync.
    with conn.pipeline():
        p1 = conn.execute("insert into salesforce.contact (last_name) values (%s) returning id", ("Py-Pipe-1",))
        p2 = conn.execute("insert into salesforce.contact (last_name) values (%s) returning id", ("Py-Pipe-2",))
        p3 = conn.execute(
            "update salesforce.contact set title = %s where last_name like %s", ("Piped", "Py-Pipe-%")
        )
    piped = [p1.fetchone()[0], p2.fetchone()[0]]
    assert all(is_contact_id(i) for i in piped), piped
    assert p3.rowcount == 2, p3.rowcount
    result["piped"] = piped
    # A refused statement in a pipeline: the statements before it in the same
    # implicit transaction are rolled back too, the ones after it skipped.
    try:
        with conn.pipeline():
            conn.execute("insert into salesforce.contact (last_name) values (%s)", ("Py-Pipe-Undone",))
            conn.execute(
                "insert into salesforce.contact (last_name, account_id) values (%s, %s)",
                ("Py-Orphan", MISSING_ACCOUNT),
            )
            conn.execute("insert into salesforce.contact (last_name) values (%s)", ("Py-Pipe-Skipped",))
        raise AssertionError("the missing account was accepted in a pipeline")
    except errors.CheckViolation as e:
        assert e.sqlstate == "23514"
        assert e.diag.message_primary.startswith("[Salesforce]: ")
    assert conn.execute(
        "select count(*) from salesforce.contact where last_name in ('Py-Pipe-Undone', 'Py-Pipe-Skipped')"
    ).fetchone() == (0,)
    # In an explicit transaction the failure aborts it.
    try:
        with conn.transaction():
            try:
                conn.execute(
                    "insert into salesforce.contact (last_name, account_id) values (%s, %s)",
                    ("Py-Orphan", MISSING_ACCOUNT),
                )
                raise AssertionError("the missing account was accepted")
            except errors.CheckViolation as e:
                assert e.sqlstate == "23514"
            try:
                conn.execute("select 1")
                raise AssertionError("the transaction was not aborted")
            except errors.InFailedSqlTransaction:
                pass
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert conn.execute(
        "select count(*) from salesforce.contact where last_name in ('Py-Invalid', 'Py-Orphan')"
    ).fetchone() == (0,)

print("RESULT " + json.dumps(result))
print("psycopg+sqlalchemy writes ok")
