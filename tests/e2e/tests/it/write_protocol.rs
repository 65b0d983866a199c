//! Write-through across the protocol's shapes, against the Salesforce
//! simulator: several statements in one simple query (results of each, and
//! all-or-nothing when one is refused), pipelined extended-protocol writes,
//! a named prepared statement reused, RETURNING that uses a parameter, and
//! INSERT ... SELECT / UPDATE ... FROM / DELETE ... USING; and Sequin's own
//! statements prepared again now and then, the old ones closed.

use crate::write_common;

use std::time::Duration;

use sequin_e2e::eventually;
use sequin_sim::Api;
use sequin_sim::stripe::Kind;
use tokio_postgres::SimpleQueryMessage;
use write_common::*;

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Sequin's statements prepared on `proxy`'s session: (text, name), by text.
async fn injected(proxy: &tokio_postgres::Client) -> Vec<(String, String)> {
    proxy
        .query(
            "SELECT statement, name FROM pg_prepared_statements
              WHERE name LIKE '__sequin_proxy_injected_%' ORDER BY statement",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn tags(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_shapes() {
    let t = Setup::start(Api::Salesforce, 5, "write_protocol", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let (pg, proxy) = (&t.pg, &t.proxy);

    // --- Several statements in one simple query: each one's results, in order.
    let msgs = proxy
        .simple_query(
            "insert into salesforce.contact (last_name) values ('Multi One') returning id, last_name;
             select count(*) from salesforce.contact where last_name like 'Multi%';
             update salesforce.contact set title = 'Both' where last_name like 'Multi%'",
        )
        .await
        .expect("a multi-statement simple query");
    let r = rows(&msgs);
    assert_eq!(r.len(), 2, "{r:?}");
    let one = r[0][0].clone().unwrap();
    assert!(one.starts_with("003") && one.len() == 18, "API id: {one}");
    assert_eq!(r[0][1].as_deref(), Some("Multi One"));
    assert_eq!(r[1][0].as_deref(), Some("1"));
    assert_eq!(tags(&msgs), vec![1, 1, 1]);
    assert_eq!(sf.get("Contact", &one).unwrap()["Title"], "Both");

    // --- One refused statement undoes the whole implicit transaction: the
    // first insert is rolled back locally and compensated at the API.
    let before = sf.count("Contact", false);
    let e = proxy
        .simple_query(
            "insert into salesforce.contact (last_name) values ('Multi Two');
             insert into salesforce.contact (last_name, email) values ('Multi Bad', 'not-an-email');
             insert into salesforce.contact (last_name) values ('Multi Three')",
        )
        .await
        .expect_err("the second statement is refused");
    assert_eq!(db_error(&e).code().code(), "22023");
    assert_eq!(
        count(pg, "select count(*) from salesforce.contact where last_name in ('Multi Two', 'Multi Three')").await,
        0
    );
    eventually(
        Duration::from_secs(20),
        "the rolled-back create is compensated upstream",
        || async {
            let states: Vec<String> = pg
                .query("select state from sequin.write_journal where request->>'LastName' = 'Multi Two'", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (states == ["compensated"] && sf.count("Contact", false) == before, states)
        },
    )
    .await;

    // --- Pipelined extended-protocol writes on one connection, one named
    // statement reused.
    let insert = proxy
        .prepare("insert into salesforce.contact (last_name, first_name) values ($1, $2) returning id, name")
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        proxy.query_one(&insert, &[&"Pipe", &"A"]),
        proxy.query_one(&insert, &[&"Pipe", &"B"]),
        proxy.query_one(
            "select count(*) from salesforce.contact where last_name = 'Pipe'",
            &[]
        ),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ida, idb): (String, String) = (a.get(0), b.get(0));
    assert_ne!(ida, idb);
    assert_eq!(a.get::<_, Option<String>>(1).as_deref(), Some("A Pipe"));
    assert_eq!(b.get::<_, Option<String>>(1).as_deref(), Some("B Pipe"));
    // The count was pipelined behind both inserts.
    assert_eq!(c.unwrap().get::<_, i64>(0), 2);
    assert!(sf.get("Contact", &ida).is_some() && sf.get("Contact", &idb).is_some());

    // --- INSERT ... ON CONFLICT DO UPDATE: the conflicting row is updated at
    // the API; without a conflict, an explicit Salesforce id is refused.
    let row = proxy
        .query_one(
            "insert into salesforce.contact (id, last_name) values ($1, 'Pipe') \
             on conflict (id) do update set title = 'Upserted' returning id, title",
            &[&ida],
        )
        .await
        .expect("an upsert hitting an existing row");
    assert_eq!(row.get::<_, String>(0), ida);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("Upserted"));
    assert_eq!(sf.get("Contact", &ida).unwrap()["Title"], "Upserted");
    let e = proxy
        .execute(
            "insert into salesforce.contact (id, last_name) values ('003Dn0000000zzzAAA', 'New') \
             on conflict (id) do update set title = 'Upserted'",
            &[],
        )
        .await
        .expect_err("an explicit id on create");
    assert_eq!(db_error(&e).code().code(), "428C9");
    assert_eq!(db_error(&e).column(), Some("id"));

    // --- RETURNING that uses a parameter the rest of the statement does not.
    let row = proxy
        .query_one(
            "insert into salesforce.contact (last_name) values ($1) returning id, last_name || $2",
            &[&"Param", &"-suffix"],
        )
        .await
        .expect("RETURNING with a parameter");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("Param-suffix")
    );

    // --- INSERT ... SELECT, UPDATE ... FROM, DELETE ... USING.
    pg.batch_execute("create table public.names (n text)")
        .await
        .unwrap();
    pg.batch_execute("insert into public.names values ('Sel1'), ('Sel2')")
        .await
        .unwrap();
    let n = proxy
        .execute(
            "insert into salesforce.contact (last_name) select n from public.names",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = proxy
        .execute(
            "update salesforce.contact c set title = 'From ' || p.n from public.names p where c.last_name = p.n",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let ids: Vec<String> = pg
        .query("select id from salesforce.contact where last_name in ('Sel1', 'Sel2') order by last_name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sf.get("Contact", &ids[0]).unwrap()["Title"], "From Sel1");
    let n = proxy
        .execute(
            "delete from salesforce.contact c using public.names p where c.last_name = p.n",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(sf.get("Contact", &ids[0]).is_none() && sf.get("Contact", &ids[1]).is_none());
    assert_no_pending_ids(pg, "salesforce.contact", "id").await;

    // --- The client drops every prepared statement (as a pooler does
    // between clients): write-through prepares its own again.
    for drop_all in ["DISCARD ALL", "DEALLOCATE ALL"] {
        let fresh = t.proxy_client().await;
        fresh
            .execute(
                "update salesforce.contact set title = 'Before' where last_name = 'Pipe'",
                &[],
            )
            .await
            .unwrap();
        fresh.batch_execute(drop_all).await.unwrap();
        let n = fresh
            .execute(
                "update salesforce.contact set title = 'After' where last_name = 'Pipe'",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("a write after {drop_all}: {e:?}"));
        assert_eq!(n, 2);
        assert_eq!(sf.get("Contact", &ida).unwrap()["Title"], "After");
    }
    // --- `sequin status` counts the journal: every effect above settled,
    // the rolled-back create compensated.
    let counts = eventually(Duration::from_secs(20), "the journal settles", || async {
        let w = sequin_runtime::status::read_writes(pg).await.unwrap();
        (w.len() == 1 && w[0].pending == 0, w)
    })
    .await;
    let w = &counts[0];
    assert_eq!(w.connection, "salesforce");
    assert_eq!((w.compensated, w.failed), (1, 0), "{w:?}");
    assert!(w.committed >= 10, "{w:?}");
    let text = sequin_runtime::status::render_writes(&counts);
    assert!(
        text.contains("salesforce") && text.contains("COMPENSATED"),
        "{text}"
    );
    t.finish().await;
}

/// Sequin's own statements of one session (grant, capture, write-back,
/// release) are prepared again after 10 uses, then 20, 40, ..., so that Postgres plans
/// them for the table as it is now (a generic plan made while the table was
/// small scans it); the statements they replace are closed, not left
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequins_statements_are_prepared_again_and_the_old_ones_closed() {
    let t = Setup::start(Api::Stripe, 1, "write_replan", |sim| {
        stripe_connection(sim, "customer")
    })
    .await;
    let proxy = &t.proxy;
    // A synced customer: every statement of this session is an UPDATE's.
    let id: String =
        t.pg.query_one("select id from stripe.customer limit 1", &[])
            .await
            .unwrap()
            .get(0);
    let update = proxy
        .prepare("update stripe.customer set name = $1 where id = $2")
        .await
        .unwrap();
    proxy.execute(&update, &[&"n1", &id]).await.unwrap();
    let before = injected(proxy).await;
    assert!(
        before.len() >= 4,
        "grant, capture, write-back and release are prepared: {before:?}"
    );
    // Uses 11 and 31 prepare each again; the next statement closes the
    // last ones replaced.
    for i in 2..=32 {
        let n = proxy
            .execute(&update, &[&format!("n{i}"), &id])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let after = injected(proxy).await;
    // The same texts, each under a new name: prepared again, and the old
    // statements closed.
    let texts = |v: &[(String, String)]| v.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&after), texts(&before), "{after:?}");
    for ((text, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "prepared again: {text}");
    }
    assert_eq!(
        t.sim.stripe().get(Kind::Customer, &id).unwrap()["name"],
        "n32"
    );
    t.finish().await;
}

/// A RETURNING list is computed by a query Sequin keeps prepared (planned
/// once per session), unless it has a `*`: a column added to the table
/// (a connector's spec gained a field) changes what `*` returns, and
/// Postgres refuses to run a prepared query whose result type changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_list_is_prepared_unless_it_has_a_star() {
    let t = Setup::start(Api::Stripe, 1, "write_returning_prepared", |sim| {
        stripe_connection(sim, "customer")
    })
    .await;
    let proxy = &t.proxy;
    // The RETURNING queries prepared on the session.
    let prepared_returning = || async {
        injected(proxy)
            .await
            .into_iter()
            .map(|(text, _)| text)
            .filter(|text| text.starts_with("SELECT ") && text.contains("email"))
            .collect::<Vec<_>>()
    };
    let listed = proxy
        .prepare("insert into stripe.customer (email) values ($1) returning id, email")
        .await
        .unwrap();
    let starred = proxy
        .prepare("insert into stripe.customer (email) values ($1) returning *")
        .await
        .unwrap();
    for i in 0..2 {
        let row = proxy
            .query_one(&listed, &[&format!("listed{i}@example.com")])
            .await
            .unwrap();
        assert!(row.get::<_, String>(0).starts_with("cus_"));
        assert_eq!(row.get::<_, String>(1), format!("listed{i}@example.com"));
    }
    let kept = prepared_returning().await;
    assert_eq!(
        kept.len(),
        1,
        "the listed RETURNING, prepared once: {kept:?}"
    );
    assert!(kept[0].starts_with("SELECT id, email FROM"), "{kept:?}");

    let before = proxy
        .query_one(&starred, &[&"starred0@example.com"])
        .await
        .unwrap();
    assert_eq!(prepared_returning().await, kept, "`*` is not kept prepared");
    // What Sequin does when a connector's spec gains a field.
    t.pg.batch_execute("ALTER TABLE stripe.customer ADD COLUMN sequin_test_extra text")
        .await
        .unwrap();
    let row = proxy
        .query_one(&listed, &[&"listed2@example.com"])
        .await
        .expect("the prepared RETURNING query is planned again");
    assert_eq!(row.get::<_, String>(1), "listed2@example.com");
    // The client's own prepared statement describes the old columns: a
    // fresh one sees the new column.
    let starred = proxy
        .prepare("insert into stripe.customer (email) values ($1) returning *")
        .await
        .unwrap();
    let after = proxy
        .query_one(&starred, &[&"starred1@example.com"])
        .await
        .expect("RETURNING * after a column was added");
    assert_eq!(after.len(), before.len() + 1);
    assert!(
        after
            .columns()
            .iter()
            .any(|c| c.name() == "sequin_test_extra")
    );

    // More RETURNING lists than a session keeps prepared (64): the ones
    // used longest ago make room, Sequin's own statements stay prepared.
    for i in 0..70 {
        let row = proxy
            .query_one(
                &format!(
                    "insert into stripe.customer (email) values ($1) returning id, '{i}' as k"
                ),
                &[&format!("many{i}@example.com")],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(1), i.to_string());
    }
    let kept: Vec<String> = injected(proxy)
        .await
        .into_iter()
        .map(|(text, _)| text)
        .collect();
    assert!(kept.len() <= 64 + 4, "{} prepared", kept.len());
    assert!(
        kept.iter().any(|s| s.starts_with("WITH pending AS")),
        "the write-back stays prepared"
    );
    assert!(
        kept.iter().any(|s| s.contains("'69' as k")),
        "the last RETURNING list is prepared"
    );
    t.finish().await;
}
