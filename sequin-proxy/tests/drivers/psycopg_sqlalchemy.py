"""Driver matrix scenario for psycopg 3 and SQLAlchemy through the proxy.

Usage: python psycopg_sqlalchemy.py <postgres-url>. Exits non-zero with a
traceback on the first failed check.
"""
import sys
import threading
import time

import psycopg
from psycopg import errors
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

url = sys.argv[1]

with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("drop table if exists py_item")
    conn.execute("create table py_item (id int primary key, name text not null)")
    # Inserts and selects with parameters (server-side binding), prepared
    # after repeated use (psycopg prepares a statement used 5 times).
    for i in range(10):
        conn.execute("insert into py_item (id, name) values (%s, %s)", (i, f"n{i}"), prepare=(i % 2 == 0))
    row = conn.execute("select name from py_item where id = %s", (3,)).fetchone()
    assert row == ("n3",), row
    # Transaction with rollback.
    try:
        with conn.transaction():
            conn.execute("insert into py_item values (100, 'rolled back')")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert conn.execute("select count(*) from py_item where id = 100").fetchone() == (0,)
    # Server-side error with code and message.
    try:
        conn.execute("insert into py_item values (1, 'dup')")
        raise AssertionError("expected a unique violation")
    except errors.UniqueViolation as e:
        assert e.sqlstate == "23505", e.sqlstate
        assert "duplicate key" in str(e), str(e)
        assert e.diag.table_name == "py_item"
    # COPY in both directions.
    with conn.cursor() as cur:
        with cur.copy("copy py_item (id, name) from stdin") as copy:
            for i in range(1000, 6000):
                copy.write_row((i, f"c{i}"))
        out = bytearray()
        with cur.copy("copy (select id from py_item where id >= 1000 order by id) to stdout") as copy:
            for chunk in copy:
                out += chunk
        assert out.decode().split() == [str(i) for i in range(1000, 6000)]
    # LISTEN/NOTIFY.
    conn.execute("listen py_chan")
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("notify py_chan, 'hello from python'")
    gen = conn.notifies(timeout=10)
    n = next(gen)
    assert (n.channel, n.payload) == ("py_chan", "hello from python"), n
    gen.close()

# Cancel of pg_sleep (psycopg sends a CancelRequest).
with psycopg.connect(url, autocommit=True) as conn:
    timer = threading.Timer(0.5, conn.cancel)
    timer.start()
    started = time.monotonic()
    try:
        conn.execute("select pg_sleep(60)")
        raise AssertionError("expected a cancel")
    except errors.QueryCanceled as e:
        assert e.sqlstate == "57014"
    assert time.monotonic() - started < 30
    assert conn.execute("select 1").fetchone() == (1,)


# SQLAlchemy ORM over psycopg.
class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "py_person"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


engine = sa.create_engine(url.replace("postgres://", "postgresql+psycopg://", 1).replace("postgresql://", "postgresql+psycopg://", 1))
Base.metadata.drop_all(engine)
Base.metadata.create_all(engine)
with Session(engine) as s:
    s.add_all([Person(id=1, name="Ada"), Person(id=2, name="Grace")])
    s.commit()
with Session(engine) as s:
    s.add(Person(id=3, name="Rolled"))
    s.flush()
    s.rollback()
with Session(engine) as s:
    names = [p.name for p in s.scalars(sa.select(Person).where(Person.id >= sa.bindparam("lo")).order_by(Person.id), {"lo": 1})]
    assert names == ["Ada", "Grace"], names
    try:
        s.add(Person(id=1, name="dup"))
        s.commit()
        raise AssertionError("expected IntegrityError")
    except sa.exc.IntegrityError as e:
        assert e.orig.sqlstate == "23505"
        s.rollback()
engine.dispose()
print("psycopg+sqlalchemy ok")
