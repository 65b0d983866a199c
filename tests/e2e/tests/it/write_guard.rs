//! The write guard of issue #6: a synced table can only be written through
//! the Sequin proxy, which sends the change to the API first. Every other
//! way of writing it is refused with SQLSTATE 42501 and a message naming
//! the proxy: a direct connection's INSERT, UPDATE, DELETE, COPY, TRUNCATE,
//! with or without a forged `sequin.write_key`, in a DO block or a function;
//! and through the proxy, writes hidden in a DO block or a function, even
//! after setting `sequin.write_key`, COPY, and writes to Sequin's own
//! tables. The key a statement can read does not outlive it. After all of
//! them Postgres and the API hold exactly what they held. An application
//! role with DML rights only writes through the proxy and nowhere else; a
//! function called by a written-through statement cannot use its key on
//! another synced table.
use crate::write_common;

use std::time::Duration;

use sequin_sim::Api;
use tokio_postgres::Client;
use write_common::*;

/// Postgres' own view of the table, to compare before and after.
async fn snapshot(pg: &Client) -> Vec<(String, Option<String>, Option<String>)> {
    pg.query(
        "select id, last_name, title from salesforce.contact order by id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// A refusal by the guard: 42501 naming the Sequin proxy.
fn assert_guard_refusal(r: Result<impl std::fmt::Debug, tokio_postgres::Error>, what: &str) {
    let err = expect_err(r, what);
    let db = db_error(&err);
    assert_eq!(db.code().code(), "42501", "{what}: {db:?}");
    assert!(
        db.message().to_lowercase().contains("proxy"),
        "{what}: the message names the Sequin proxy: {db:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_proxy_are_refused() {
    let t = Setup::start(Api::Salesforce, 5, "write_guard", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let (pg, proxy) = (&t.pg, &t.proxy);

    // A legitimate write through the proxy works (and fills the journal).
    let kept: String = proxy
        .query_one(
            "insert into salesforce.contact (last_name) values ('Palladio') returning id",
            &[],
        )
        .await
        .expect("a write through the proxy")
        .get(0);
    assert!(sf.get("Contact", &kept).is_some());
    // The key the proxy lends a statement does not outlive it, and whatever
    // a statement can read of it does not open the guard to a direct
    // connection.
    let lent: Option<String> = proxy
        .query_one(
            "insert into salesforce.contact (last_name, description) \
             values ('Leak', current_setting('sequin.write_key', true)) \
             returning current_setting('sequin.write_key', true)",
            &[],
        )
        .await
        .expect("a write through the proxy reading settings")
        .get(0);
    let after: Option<String> = proxy
        .query_one("select current_setting('sequin.write_key', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        after.as_deref().unwrap_or("").is_empty(),
        "the writer key is gone after the statement: {after:?}"
    );
    let stored: Option<String> = pg
        .query_one(
            "select description from salesforce.contact where last_name = 'Leak'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for key in [lent, stored].into_iter().flatten() {
        if key.is_empty() {
            continue;
        }
        let direct = sequin_pgtemp::connect(&t.db.url).await;
        direct
            .query("select set_config('sequin.write_key', $1, false)", &[&key])
            .await
            .unwrap();
        assert_guard_refusal(
            direct
                .execute(
                    "update salesforce.contact set title = 'Stolen key' where true",
                    &[],
                )
                .await,
            "a direct write with a key a statement could read",
        );
    }
    let journal = count(pg, "select count(*) from sequin.write_journal").await;
    assert!(journal >= 1, "the journal records the create");
    let before = snapshot(pg).await;
    let in_org = sf.count("Contact", false);
    assert_eq!(before.len(), in_org);

    // --- Direct connection: every kind of write.
    for sql in [
        "insert into salesforce.contact (last_name) values ('Direct')",
        "insert into salesforce.contact (id, last_name) values ('003Dn0000000zzzAAA', 'Direct')",
        "update salesforce.contact set title = 'Direct' where true",
        "update salesforce.contact set title = 'Direct' where last_name = 'Palladio'",
        "delete from salesforce.contact where true",
        "truncate salesforce.contact",
        "insert into salesforce.contact (last_name) select last_name from salesforce.contact",
    ] {
        assert_guard_refusal(pg.execute(sql, &[]).await, sql);
    }
    // COPY FROM STDIN (psql feeds the rows).
    let (out, err) = run_psql(
        &t.db.url,
        "copy salesforce.contact (last_name) from stdin;\nCopied\n\\.\n",
    )
    .await;
    assert!(
        err.contains("ERROR:  42501") && err.to_lowercase().contains("proxy"),
        "COPY refused by the guard:\n{out}\n{err}"
    );
    // A forged key, set either way, changes nothing.
    pg.batch_execute("set sequin.write_key = 'forged'")
        .await
        .expect("a direct session may set any custom setting");
    assert_guard_refusal(
        pg.execute(
            "update salesforce.contact set title = 'Forged' where true",
            &[],
        )
        .await,
        "an update with a forged write key",
    );
    pg.query(
        "select set_config('sequin.write_key', 'forged', false)",
        &[],
    )
    .await
    .unwrap();
    assert_guard_refusal(
        pg.execute(
            "insert into salesforce.contact (last_name) values ('Forged')",
            &[],
        )
        .await,
        "an insert with a forged write key",
    );
    pg.batch_execute("reset sequin.write_key").await.unwrap();
    // In a DO block and in a function.
    assert_guard_refusal(
        pg.execute("do $$ begin delete from salesforce.contact; end $$", &[])
            .await,
        "a delete in a DO block",
    );
    pg.batch_execute(
        "create function public.sneaky_rename(t text) returns bigint language plpgsql as $$
         declare n bigint;
         begin
           perform set_config('sequin.write_key', 'forged', true);
           update salesforce.contact set title = t where true;
           get diagnostics n = row_count;
           return n;
         end $$",
    )
    .await
    .unwrap();
    assert_guard_refusal(
        pg.query("select public.sneaky_rename('Direct')", &[]).await,
        "an update in a function, directly",
    );

    // --- Through the proxy: writes hidden from the proxy's parser.
    match proxy.batch_execute("set sequin.write_key = 'forged'").await {
        Ok(()) => {}
        Err(e) => assert_eq!(db_error(&e).code().code(), "42501", "{e:?}"),
    }
    assert_guard_refusal(
        proxy
            .execute(
                "do $$ begin insert into salesforce.contact (last_name) values ('Hidden'); end $$",
                &[],
            )
            .await,
        "an insert in a DO block through the proxy",
    );
    match proxy
        .query(
            "select set_config('sequin.write_key', 'forged', false)",
            &[],
        )
        .await
    {
        Ok(_) => {}
        Err(e) => assert_eq!(db_error(&e).code().code(), "42501", "{e:?}"),
    }
    assert_guard_refusal(
        proxy
            .query("select public.sneaky_rename('Proxied')", &[])
            .await,
        "an update in a function through the proxy",
    );
    // A fresh proxy session: the same function, no key games.
    let other = t.proxy_client().await;
    assert_guard_refusal(
        other
            .query("select public.sneaky_rename('Proxied')", &[])
            .await,
        "an update in a function through a fresh proxy session",
    );
    // COPY into a synced table through the proxy cannot write through row
    // by row: it is refused, not passed to the guard-less server.
    let (out, err) = run_psql(
        &t.proxy_url,
        "copy salesforce.contact (last_name) from stdin;\nCopied\n\\.\n",
    )
    .await;
    assert!(
        (err.contains("ERROR:  0A000: [Salesforce]: ") || err.contains("ERROR:  42501"))
            && err.contains("COPY"),
        "COPY through the proxy is refused:\n{out}\n{err}"
    );
    // Sequin's own tables are not the client's to write.
    for sql in [
        "delete from sequin.write_journal",
        "update sequin.write_journal set state = 'committed'",
        "truncate sequin.write_journal",
        "update sequin.sync_state set last_error = 'forged'",
        "delete from sequin.sync_state",
    ] {
        let err = expect_err(other.execute(sql, &[]).await, sql);
        assert_eq!(db_error(&err).code().code(), "42501", "{sql}: {err:?}");
    }

    // Nothing changed anywhere.
    assert_eq!(snapshot(pg).await, before, "Postgres holds what it held");
    assert_eq!(
        sf.count("Contact", false),
        in_org,
        "the org holds what it held"
    );
    assert!(
        sf.get("Contact", &kept).unwrap()["Title"].is_null(),
        "the org's record is untouched"
    );
    assert_eq!(
        count(pg, "select count(*) from sequin.write_journal").await,
        journal
    );
    assert_eq!(
        count(
            pg,
            "select count(*) from sequin.sync_state where connection = 'salesforce' and last_error = 'forged'"
        )
        .await,
        0
    );
    // And the proxy still writes.
    let n = other
        .execute(
            "update salesforce.contact set title = 'Architect' where id = $1",
            &[&kept],
        )
        .await
        .expect("a write through the proxy after the refusals");
    assert_eq!(n, 1);
    assert_eq!(sf.get("Contact", &kept).unwrap()["Title"], "Architect");

    t.finish().await;
}

/// Drops a test role: its privileges in the test database, its CONNECT on
/// the database, then the role (psql, so that it also runs while a failed
/// test unwinds).
struct DropRole {
    role: String,
    database_url: String,
    database: String,
}

impl Drop for DropRole {
    fn drop(&mut self) {
        let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            sequin_pgtemp::shared()
                .map(|c| c.url("postgres"))
                .unwrap_or_default()
        });
        let r = &self.role;
        // Each step may find its object gone already (the database is
        // dropped at the end of a passing test): only the last must work.
        for (url, sql) in [
            (&self.database_url, format!("drop owned by {r}")),
            (
                &admin,
                format!("revoke connect on database \"{}\" from {r}", self.database),
            ),
            (&admin, format!("drop role if exists {r}")),
        ] {
            let out = std::process::Command::new(psql())
                .args(["-X", "-q", "-d", url, "-c", &sql])
                .output();
            if let Ok(o) = out
                && !o.status.success()
                && sql.starts_with("drop role")
            {
                eprintln!("{sql}: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

/// An application connects with a role that has DML rights on the synced
/// tables only (as the README recommends): through the proxy it writes
/// through, refusals come back as the API's; directly, the guard refuses
/// it, and it cannot register a writer key of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_role_writes_through_the_proxy() {
    let t = Setup::start(Api::Salesforce, 5, "write_guard_role", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let pg = &t.pg;
    // Roles are cluster-wide: one per test process, dropped even when the
    // test fails (a DATABASE_URL server outlives the test).
    let role = format!("sequin_app_{}", std::process::id());
    let _drop_role = DropRole {
        role: role.clone(),
        database_url: t.db.url.clone(),
        database: t.db.name.clone(),
    };
    pg.batch_execute(&format!(
        "create role {role} login password 'app';
         grant connect on database \"{db}\" to {role};
         grant usage on schema salesforce to {role};
         grant select, insert, update, delete on all tables in schema salesforce to {role};",
        db = t.db.name
    ))
    .await
    .unwrap();
    let as_role = |url: &str| {
        let (scheme, rest) = url.split_once("://").unwrap();
        let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
        format!("{scheme}://{role}:app@{host}")
    };
    let before = sf.count("Contact", false);

    let direct = connect_when_up(&as_role(&t.db.url)).await;
    assert_guard_refusal(
        direct
            .execute(
                "insert into salesforce.contact (last_name) values ('App Direct')",
                &[],
            )
            .await,
        "a direct insert by the application role",
    );
    let err = expect_err(
        direct
            .execute(
                "insert into sequin.writer_key (digest, holder) values (sha256('mine'::bytea), 'app')",
                &[],
            )
            .await,
        "the application role registering a key",
    );
    assert_eq!(db_error(&err).code().code(), "42501", "{err:?}");
    // Sequin's functions are not the application role's to call, nor to
    // build triggers of its own on (a trigger on a temp table running
    // sequin.capture() would forge captured rows).
    for sql in [
        "select sequin.holds_process_key()",
        "select sequin.protect('salesforce.contact'::regclass)",
        "insert into sequin.capture (xid, relid, op, new) values (txid_current(), 'salesforce.contact'::regclass, 'INSERT', '[]')",
        "insert into sequin.write_mark (capture_id) values (1)",
        "create temp table forged (id text); \
         create trigger forge after insert on forged referencing new table as sequin_new \
         for each statement execute function sequin.capture()",
    ] {
        let err = expect_err(direct.batch_execute(sql).await, sql);
        assert_eq!(db_error(&err).code().code(), "42501", "{sql}: {err:?}");
    }
    // Opening a grant takes a current token of a running proxy: a forged
    // one opens nothing, and the write after it is refused.
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(sequin_runtime::guard::key().as_bytes()).to_vec()
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for at in [now_ms, 0] {
        let err = expect_err(
            direct
                .execute(
                    "select sequin.open_grant($1, $2, sha256('forged'::bytea))",
                    &[&digest, &at],
                )
                .await,
            "a forged grant token",
        );
        assert_eq!(db_error(&err).code().code(), "42501", "{err:?}");
    }
    assert_guard_refusal(
        direct
            .execute(
                "insert into salesforce.contact (last_name) values ('Self-granted')",
                &[],
            )
            .await,
        "a direct insert after forged grant tokens",
    );
    // The open grants are Sequin's to write.
    let err = expect_err(
        direct
            .execute(
                "insert into sequin.grant (xid, pid) values (txid_current(), pg_backend_pid())",
                &[],
            )
            .await,
        "the application role opening a grant itself",
    );
    assert_eq!(db_error(&err).code().code(), "42501", "{err:?}");

    let proxied = connect_when_up(&as_role(&t.proxy_url)).await;
    let id: String = proxied
        .query_one(
            "insert into salesforce.contact (last_name) values ('App Proxy') returning id",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("the application role writes through the proxy: {e:?}"))
        .get(0);
    assert_eq!(
        sf.get("Contact", &id).expect("in the org")["LastName"],
        "App Proxy"
    );
    let n = proxied
        .execute(
            "update salesforce.contact set title = 'App' where id = $1",
            &[&id],
        )
        .await
        .expect("update as the application role");
    assert_eq!(n, 1);
    assert_eq!(sf.get("Contact", &id).unwrap()["Title"], "App");
    let err = expect_err(
        proxied
            .execute(
                "insert into salesforce.contact (last_name, account_id) values ('App Orphan', '001Dn0000009999')",
                &[],
            )
            .await,
        "a refused write as the application role",
    );
    assert_rejection(
        &err,
        &Rejection {
            code: "23514",
            prefix: "[Salesforce]: ",
            schema: "salesforce",
            table: "contact",
            column: Some("account_id"),
            message_has: &[],
            detail_has: &["FIELD_INTEGRITY_EXCEPTION"],
        },
    );
    let n = proxied
        .execute("delete from salesforce.contact where id = $1", &[&id])
        .await
        .expect("delete as the application role");
    assert_eq!(n, 1);
    assert!(sf.get("Contact", &id).is_none());
    assert_eq!(sf.count("Contact", false), before);
    drop(direct);
    drop(proxied);
    t.finish().await;
}

/// The grant the proxy holds for a statement opens that statement's table
/// to write-through only: a function the statement calls cannot use it to
/// TRUNCATE (or otherwise change behind the capture) another synced table.
/// The client is a role that may TRUNCATE the synced tables but owns none
/// (an owner could drop the triggers: the README's stated limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_opens_only_its_statement() {
    let t = Setup::start(Api::Salesforce, 5, "write_guard_lent", |sim| {
        salesforce_connection(sim, "contact, account")
    })
    .await;
    t.wait_objects_live("salesforce", &["contact", "account"])
        .await;
    let sf = t.sim.salesforce();
    let pg = &t.pg;
    let role = format!("sequin_maint_{}", std::process::id());
    let _drop_role = DropRole {
        role: role.clone(),
        database_url: t.db.url.clone(),
        database: t.db.name.clone(),
    };
    pg.batch_execute(&format!(
        "create role {role} login password 'maint';
         grant connect on database \"{db}\" to {role};
         grant usage on schema salesforce to {role};
         grant select, insert, update, delete, truncate on all tables in schema salesforce to {role};
         create function public.truncate_accounts() returns text language plpgsql as $$
         begin truncate salesforce.account; return 'Truncator'; end $$;
         create function public.rename_accounts() returns text language plpgsql as $$
         begin update salesforce.account set name = 'Renamed'; return 'Renamer'; end $$;",
        db = t.db.name
    ))
    .await
    .unwrap();
    let proxied = {
        let (scheme, rest) = t.proxy_url.split_once("://").unwrap();
        let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
        connect_when_up(&format!("{scheme}://{role}:maint@{host}")).await
    };
    // A direct TRUNCATE by this role is refused by the guard.
    let direct = {
        let (scheme, rest) = t.db.url.split_once("://").unwrap();
        let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
        connect_when_up(&format!("{scheme}://{role}:maint@{host}")).await
    };
    assert_guard_refusal(
        direct.execute("truncate salesforce.account", &[]).await,
        "a direct TRUNCATE by a role with the TRUNCATE privilege",
    );
    let accounts = count(pg, "select count(*) from salesforce.account").await;
    assert_eq!(accounts, 5);
    let contacts = sf.count("Contact", false);
    for (sql, what) in [
        (
            "insert into salesforce.contact (last_name) values (public.truncate_accounts())",
            "a TRUNCATE of another synced table inside a written-through INSERT",
        ),
        (
            "insert into salesforce.contact (last_name) values (public.rename_accounts())",
            "an UPDATE of another synced table inside a written-through INSERT",
        ),
    ] {
        let err = expect_err(proxied.execute(sql, &[]).await, what);
        let code = db_error(&err).code().code().to_string();
        assert!(code == "42501" || code == "0A000", "{what}: {err:?}");
        assert_eq!(
            count(
                pg,
                "select count(*) from salesforce.account where name <> 'Renamed'"
            )
            .await,
            accounts,
            "{what}: Postgres keeps every account"
        );
        assert_eq!(sf.count("Account", false), 5, "{what}");
        assert_eq!(
            sf.count("Contact", false),
            contacts,
            "{what}: no contact created"
        );
    }
    drop(direct);
    drop(proxied);
    t.finish().await;
}

/// A login role of the application's kind, dropped with the value.
struct AppRole {
    name: String,
    _drop: DropRole,
}

impl AppRole {
    /// Creates role `<prefix>_<pid>` with password `app`, CONNECT on the
    /// test database and `grants` (SQL, `{role}` stands for its name).
    async fn create(t: &Setup, prefix: &str, grants: &str) -> AppRole {
        let name = format!("{prefix}_{}", std::process::id());
        let drop = DropRole {
            role: name.clone(),
            database_url: t.db.url.clone(),
            database: t.db.name.clone(),
        };
        t.pg.batch_execute(&format!(
            "create role {name} login password 'app';
             grant connect on database \"{db}\" to {name};
             {grants}",
            db = t.db.name,
            grants = grants.replace("{role}", &name),
        ))
        .await
        .unwrap();
        AppRole { name, _drop: drop }
    }

    /// `url` with this role's credentials.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
        format!("{scheme}://{}:app@{host}", self.name)
    }
}

/// Every text field of an error, for "this never shows up" checks.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{} | {:?} | {:?} | {:?}",
            d.message(),
            d.detail(),
            d.hint(),
            d.where_()
        ),
        None => format!("{e:?}"),
    }
}

/// Issue #10, items 1 to 3, as an application role with DML rights only,
/// through the proxy: what a statement can set, call or read in its own
/// session changes nothing of what Sequin captures or sends, no process key
/// reaches the client or the server log, and every attempt ends with
/// Postgres and the API equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_statement_cannot_bypass_the_api() {
    // In a process of its own: the key's registration is removed only when the last engine of the process stops.
    if sequin_pgtemp::process::alone(module_path!(), "a_hostile_statement_cannot_bypass_the_api") {
        return;
    }
    let t = Setup::start(Api::Salesforce, 5, "write_hostile", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let pg = &t.pg;
    let role = AppRole::create(
        &t,
        "sequin_hostile",
        "grant usage on schema salesforce to {role};
         grant select, insert, update, delete on all tables in schema salesforce to {role};
         grant usage on schema sequin to {role};",
    )
    .await;
    let app = connect_when_up(&role.url(&t.proxy_url)).await;
    let ids: Vec<String> = pg
        .query("select id from salesforce.contact order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (target, victim) = (&ids[0], &ids[1]);
    let title = |id: &str| sf.get("Contact", id).unwrap()["Title"].clone();
    let (target_title, victim_title) = (title(target), title(victim));
    let key = sequin_runtime::guard::key().to_string();

    // 1. The process key: a failing write with every parameter logged
    // shows no key, and no injected statement's parameters.
    app.batch_execute("set log_parameter_max_length_on_error = -1")
        .await
        .unwrap();
    let err = expect_err(
        simple_rows(
            &app,
            &format!(
                "begin read only; update salesforce.contact set title = 'x' where id = '{target}'"
            ),
        )
        .await,
        "an update in a read-only transaction",
    );
    assert!(!error_text(&err).contains(&key), "{err:?}");
    app.batch_execute("rollback").await.unwrap();
    // A write-back that fails (a RETURNING expression that writes): the
    // error is Sequin's, with no parameters of its statements.
    app.batch_execute(&format!(
        "create function pg_temp.sneaky() returns text language plpgsql as $$
         begin update salesforce.contact set title = 'Sneaky' where id = '{victim}'; return 'x'; end $$"
    ))
    .await
    .unwrap();
    let err = expect_err(
        app.query(
            "update salesforce.contact set title = 'Returned' where id = $1 returning pg_temp.sneaky()",
            &[target],
        )
        .await,
        "a RETURNING expression that writes a synced row",
    );
    let text = error_text(&err);
    assert_eq!(db_error(&err).code().code(), "42501", "{err:?}");
    assert!(
        !text.contains(&key) && !text.contains("parameters: $1"),
        "{text}"
    );
    // The reconciler undoes the API's update of the aborted transaction.
    sequin_e2e::eventually(Duration::from_secs(20), "the update undone", || async {
        let now = title(target);
        (now == target_title, now)
    })
    .await;

    // Sequin's release of a statement (the step that marks its effects and
    // writes its events) is refused to the client: from a RETURNING
    // expression, and after the statement, where it would emit the
    // statement's events again under entries the client names.
    // The counts the RETURNING call gives are right (the client's row and
    // its write-back, one each), so only the closed grant refuses Sequin's
    // own call after it.
    let err = expect_err(
        app.query(
            "update salesforce.contact set title = 'Released' where id = $1 \
             returning sequin.release(0, 'salesforce.contact'::regclass, 0, 2, '{}', '{}')",
            &[target],
        )
        .await,
        "a RETURNING expression that calls sequin.release",
    );
    assert_eq!(db_error(&err).code().code(), "42501", "{err:?}");
    assert!(
        error_text(&err).contains("outside the statement"),
        "{err:?}"
    );
    app.batch_execute("begin").await.unwrap();
    app.execute(
        "update salesforce.contact set title = 'Once' where id = $1",
        &[target],
    )
    .await
    .expect("an update in an explicit transaction");
    let err = expect_err(
        app.query(
            "select sequin.release(0, 'salesforce.contact'::regclass, 0, 2, '{}', '{\"x\": [\"y\"]}')",
            &[],
        )
        .await,
        "sequin.release called after the statement",
    );
    assert_eq!(db_error(&err).code().code(), "42501", "{err:?}");
    assert!(
        error_text(&err).contains("outside the statement"),
        "{err:?}"
    );
    app.batch_execute("rollback").await.unwrap();
    sequin_e2e::eventually(Duration::from_secs(20), "the updates undone", || async {
        let now = title(target);
        (now == target_title, now)
    })
    .await;

    // 2. Capture cannot be switched off: the settings of the old design
    // are ignored, and the write goes to the API like any other.
    let n = app
        .execute(
            "update salesforce.contact set title = 'Captured' \
             where id = $1 and set_config('sequin.capture', 'off', true) is not null",
            &[target],
        )
        .await
        .expect("an update with capture 'off'");
    assert_eq!(n, 1);
    assert_eq!(sf.get("Contact", target).unwrap()["Title"], "Captured");
    let created: String = app
        .query_one(
            "insert into salesforce.contact (last_name) \
             select 'Uncapturable' where set_config('sequin.capture', 'off', true) is not null \
             returning id",
            &[],
        )
        .await
        .expect("an insert with capture 'off'")
        .get(0);
    assert!(created.starts_with("003"), "the API's id: {created}");
    assert_eq!(
        sf.get("Contact", &created).unwrap()["LastName"],
        "Uncapturable"
    );
    let n = app
        .execute(
            "delete from salesforce.contact \
             where id = $1 and set_config('sequin.capture', 'off', true) is not null",
            &[&created],
        )
        .await
        .expect("a delete with capture 'off'");
    assert_eq!(n, 1);
    assert!(sf.get("Contact", &created).is_none());
    // Sequin's own columns are Sequin's.
    let err = expect_err(
        app.execute(
            "update salesforce.contact set title = 'Forever', _sequin_updated_at = 'infinity' where id = $1",
            &[target],
        )
        .await,
        "an update of _sequin_updated_at",
    );
    assert_eq!(db_error(&err).code().code(), "428C9", "{err:?}");
    // A function the statement calls writes other rows: refused, nothing
    // changes anywhere.
    let err = expect_err(
        app.execute(
            "update salesforce.contact set title = pg_temp.sneaky() where id = $1",
            &[target],
        )
        .await,
        "an update whose function writes another row",
    );
    assert_eq!(db_error(&err).code().code(), "0A000", "{err:?}");
    assert!(db_error(&err).message().contains("function"), "{err:?}");

    // 3. Captured rows cannot be forged: a statement that changes nothing
    // sends nothing, whatever it sets.
    let forged = serde_json::json!([
        "UPDATE", "salesforce", "contact",
        {"id": victim, "title": null},
        {"id": victim, "title": "Forged"}
    ])
    .to_string()
        + "\n";
    let n = app
        .execute(
            "update salesforce.contact set title = 'Nothing' \
             where id = 'none' and set_config('sequin.captured', $1, true) is not null \
               and set_config('sequin.capture_cap', '0', true) is not null",
            &[&forged],
        )
        .await
        .expect("an update of no row");
    assert_eq!(n, 0);
    let n = app
        .execute(
            "delete from salesforce.contact \
             where id = 'none' and set_config('sequin.captured', $1, true) is not null",
            &[&forged.replace("UPDATE", "DELETE")],
        )
        .await
        .expect("a delete of no row");
    assert_eq!(n, 0);
    assert_eq!(title(victim), victim_title);

    // Postgres and the API agree on every row, and the victim is untouched.
    sequin_e2e::eventually(
        Duration::from_secs(20),
        "Postgres equals the org",
        || async {
            let rows = snapshot(pg).await;
            let org: Vec<(String, Option<String>, Option<String>)> = rows
                .iter()
                .filter_map(|(id, _, _)| sf.get("Contact", id).map(|c| (id.clone(), c)))
                .map(|(id, c)| {
                    (
                        id,
                        c["LastName"].as_str().map(str::to_string),
                        c["Title"].as_str().map(str::to_string),
                    )
                })
                .collect();
            (
                rows == org && rows.len() == sf.count("Contact", false),
                (rows, org),
            )
        },
    )
    .await;
    assert_eq!(title(victim), victim_title, "the victim is untouched");
    // No key in the server's log either.
    if let Ok(cluster) = sequin_pgtemp::shared() {
        assert!(
            !cluster.log().contains(&key),
            "the server log shows the process key"
        );
    }
    drop(app);
    // Once sequin stops, its key is gone from the database.
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes()).to_vec()
    };
    let running = t.running.as_ref().expect("running");
    assert!(!running.finished());
    let Setup {
        sim,
        running,
        pg,
        db,
        ..
    } = t;
    running
        .expect("running")
        .stop()
        .await
        .expect("the engine stops cleanly");
    assert_eq!(
        count_with(
            &pg,
            "select count(*) from sequin.writer_key where digest = $1",
            &digest
        )
        .await,
        0,
        "the key's registration is removed when sequin stops"
    );
    sim.shutdown().await;
    drop(db);
}

async fn count_with(
    c: &Client,
    sql: &str,
    param: &(dyn tokio_postgres::types::ToSql + Sync),
) -> i64 {
    c.query_one(sql, &[param]).await.unwrap().get(0)
}

/// Row-level security decides which rows a statement changes, and so what
/// reaches the API: a tenant that names another tenant's record, and sets
/// what the old design read as captured rows, changes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_bounds_what_reaches_the_api() {
    let t = Setup::start(Api::Salesforce, 4, "write_rls", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let pg = &t.pg;
    let tenant = AppRole::create(
        &t,
        "sequin_tenant",
        "grant usage on schema salesforce to {role};
         grant select, insert, update, delete on all tables in schema salesforce to {role};",
    )
    .await;
    let ids: Vec<String> = pg
        .query("select id from salesforce.contact order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The first two contacts are the tenant's, the others another's.
    let mine = &ids[..2];
    let theirs = &ids[2..];
    let proxy = t.proxy_client().await;
    for (id, owner) in mine
        .iter()
        .map(|i| (i, tenant.name.as_str()))
        .chain(theirs.iter().map(|i| (i, "someone_else")))
    {
        proxy
            .execute(
                "update salesforce.contact set description = $2 where id = $1",
                &[id, &owner],
            )
            .await
            .expect("tagging contacts with their tenant");
    }
    pg.batch_execute(
        "alter table salesforce.contact enable row level security;
         create policy tenant on salesforce.contact
             using (description = current_user) with check (description = current_user);",
    )
    .await
    .unwrap();
    let app = connect_when_up(&tenant.url(&t.proxy_url)).await;
    let title = |id: &str| sf.get("Contact", id).unwrap()["Title"].clone();
    let their_titles: Vec<_> = theirs.iter().map(|id| title(id)).collect();
    let visible = count(&app, "select count(*) from salesforce.contact").await;
    assert_eq!(visible, 2, "the tenant sees its own contacts only");
    for victim in theirs {
        let forged = serde_json::json!([
            "UPDATE", "salesforce", "contact",
            {"id": victim, "last_name": "x"},
            {"id": victim, "last_name": "Renamed by another tenant"}
        ])
        .to_string()
            + "\n";
        let n = app
            .execute(
                "update salesforce.contact set last_name = 'Renamed by another tenant' \
                 where id = $1 and set_config('sequin.captured', $2, true) is not null",
                &[victim, &forged],
            )
            .await
            .expect("an update of another tenant's row");
        assert_eq!(n, 0, "RLS hides the row");
        let n = app
            .execute(
                "delete from salesforce.contact where id = $1 \
                 and set_config('sequin.captured', $2, true) is not null",
                &[victim, &forged.replace("UPDATE", "DELETE")],
            )
            .await
            .expect("a delete of another tenant's row");
        assert_eq!(n, 0);
        let c = sf.get("Contact", victim).expect("still in the org");
        assert_ne!(c["LastName"], "Renamed by another tenant");
    }
    // The tenant's own rows write through as usual, under its policy.
    let n = app
        .execute(
            "update salesforce.contact set title = 'Mine' where title is distinct from 'Mine'",
            &[],
        )
        .await
        .expect("the tenant updates its rows");
    assert_eq!(n, 2);
    for id in mine {
        assert_eq!(sf.get("Contact", id).unwrap()["Title"], "Mine");
    }
    let after: Vec<_> = theirs.iter().map(|id| title(id)).collect();
    assert_eq!(
        after, their_titles,
        "the other tenant's titles are untouched"
    );
    let created: String = app
        .query_one(
            "insert into salesforce.contact (last_name, description) values ('New', current_user) returning id",
            &[],
        )
        .await
        .expect("the tenant creates a contact")
        .get(0);
    assert_eq!(
        sf.get("Contact", &created).unwrap()["Description"],
        tenant.name.as_str()
    );
    pg.batch_execute("drop policy tenant on salesforce.contact; alter table salesforce.contact disable row level security")
        .await
        .unwrap();
    drop(app);
    t.finish().await;
}

/// Issue #10, item 7, and the client's search_path: statements that wrap
/// a write or disguise its table are handled as what they are, and a
/// session whose search_path puts functions and operators of its own
/// ahead of `pg_catalog` runs none of them in Sequin's statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_and_disguised_writes() {
    let t = Setup::start(Api::Salesforce, 4, "write_wrapped", |sim| {
        salesforce_connection(sim, "contact")
    })
    .await;
    let sf = t.sim.salesforce();
    let pg = &t.pg;
    let proxy = &t.proxy;
    let id: String = pg
        .query_one("select id from salesforce.contact order by id limit 1", &[])
        .await
        .unwrap()
        .get(0);
    let title = |id: &str| sf.get("Contact", id).unwrap()["Title"].clone();
    let before = title(&id);

    // Plain EXPLAIN changes nothing and shows the plan.
    let plan = proxy
        .simple_query(&format!(
            "explain update salesforce.contact set title = 'Explained' where id = '{id}'"
        ))
        .await
        .expect("EXPLAIN of a write");
    assert!(
        plan.iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
        "EXPLAIN returns its plan"
    );
    assert_eq!(title(&id), before);
    // What would execute a write past write-through is refused, clearly.
    for (sql, says) in [
        (
            format!(
                "explain analyze update salesforce.contact set title = 'Analyzed' where id = '{id}'"
            ),
            "EXPLAIN ANALYZE",
        ),
        (
            format!(
                "copy (update salesforce.contact set title = 'Copied' where id = '{id}' returning id) to stdout"
            ),
            "COPY",
        ),
        (
            "prepare later as update salesforce.contact set title = 'Prepared' where id = $1"
                .to_string(),
            "PREPARE",
        ),
    ] {
        let err = expect_err(proxy.batch_execute(&sql).await, &sql);
        assert_eq!(db_error(&err).code().code(), "0A000", "{sql}: {err:?}");
        assert!(db_error(&err).message().contains(says), "{sql}: {err:?}");
        assert_eq!(title(&id), before, "{sql}");
    }
    // A volatile RETURNING expression runs once (RETURNING is computed over
    // the final rows only), and shows only the target's rows.
    pg.batch_execute("create sequence public.returned_once")
        .await
        .unwrap();
    let returned: i64 = proxy
        .query_one(
            "update salesforce.contact set title = 'Counted' where id = $1 returning nextval('public.returned_once')",
            &[&id],
        )
        .await
        .expect("a volatile RETURNING expression")
        .get(0);
    assert_eq!(returned, 1);
    let last: i64 = pg
        .query_one("select last_value from public.returned_once", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, 1, "nextval ran once");
    // A Unicode-escaped name is the same table, written through.
    let n = proxy
        .execute(
            r#"update U&"\0073alesforce".contact set title = 'Escaped' where id = $1"#,
            &[&id],
        )
        .await
        .expect("a write naming the table with U& escapes");
    assert_eq!(n, 1);
    assert_eq!(title(&id), "Escaped");
    // Bytes that are not UTF-8 are refused, not turned into U+FFFD and sent.
    let mut script = b"update salesforce.contact set title = 'Bad ".to_vec();
    script.extend_from_slice(b"\xff\xfe");
    script.extend_from_slice(format!("' where id = '{id}';\n").as_bytes());
    let out = {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(psql())
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "VERBOSITY=verbose",
                "-d",
                &t.proxy_url,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&script).await.unwrap();
        drop(stdin);
        child.wait_with_output().await.unwrap()
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("22021"), "invalid UTF-8 refused: {err}");
    assert_eq!(title(&id), "Escaped");

    // A search_path that puts the session's own functions, operators and
    // types first: Sequin's statements run none of them.
    let role = AppRole::create(
        &t,
        "sequin_pathological",
        &format!(
            "grant usage on schema salesforce to {{role}};
             grant select, insert, update, delete on all tables in schema salesforce to {{role}};
             grant create on database \"{}\" to {{role}};",
            t.db.name
        ),
    )
    .await;
    let app = connect_when_up(&role.url(&t.proxy_url)).await;
    app.batch_execute(
        "create schema evil;
         create function evil.boom() returns boolean language plpgsql as $$
             begin raise exception 'a function of the session ran in a statement of Sequin''s'; end $$;
         create function evil.now() returns timestamptz language sql as 'select case when evil.boom() then pg_catalog.now() end';
         create function evil.jsonb_array_elements(j jsonb) returns setof jsonb language sql
             as 'select x from pg_catalog.jsonb_array_elements(j) x where evil.boom()';
         create function evil.jsonb_array_elements_text(j jsonb) returns setof text language sql
             as 'select x from pg_catalog.jsonb_array_elements_text(j) x where evil.boom()';
         create function evil.jsonb_populate_record(r anyelement, j jsonb) returns anyelement language sql
             as 'select pg_catalog.jsonb_populate_record(r, j) where evil.boom()';
         create function evil.texteq(a text, b text) returns boolean language sql
             as 'select evil.boom()';
         create operator evil.= (leftarg = text, rightarg = text, function = evil.texteq);
         create domain evil.text as pg_catalog.text check (evil.boom());
         create domain evil.int8 as pg_catalog.int8 check (evil.boom());
         set search_path = evil, pg_catalog, salesforce;",
    )
    .await
    .unwrap();
    let created: String = app
        .query_one(
            "insert into contact (last_name, title) values ('Pathological', 'Path') returning id",
            &[],
        )
        .await
        .expect("an insert with a hostile search_path")
        .get(0);
    assert_eq!(
        sf.get("Contact", &created).unwrap()["LastName"],
        "Pathological"
    );
    let n = app
        .execute(
            "update contact set title = 'Still fine' where id operator(pg_catalog.=) $1",
            &[&created],
        )
        .await
        .expect("an update with a hostile search_path");
    assert_eq!(n, 1);
    assert_eq!(title(&created), "Still fine");
    let gone: Vec<tokio_postgres::Row> = app
        .query(
            "delete from contact where id operator(pg_catalog.=) $1 returning last_name",
            &[&created],
        )
        .await
        .expect("a delete with a hostile search_path");
    assert_eq!(gone.len(), 1);
    assert!(sf.get("Contact", &created).is_none());
    drop(app);
    t.finish().await;
}

/// Issue #10, item 4: a migration that must change a table a client's open
/// write-through transaction holds, and a second `sequin run` starting,
/// stall nobody: other clients' write-throughs go on, the migration waits
/// (retrying under a short lock_timeout) and finishes once the transaction
/// ends, and the second process then serves writes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_waits_for_open_transactions_and_stalls_no_one() {
    use sequin_sim::stripe::Kind;
    let t = Setup::start(Api::Stripe, 5, "write_migrate_wait", |sim| {
        stripe_connection(sim, "customer, product")
    })
    .await;
    t.wait_objects_live("stripe", &["customer", "product"])
        .await;
    let stripe = t.sim.stripe();
    let customers = stripe.ids(Kind::Customer);
    let products = stripe.ids(Kind::Product);
    // Work for the migration on a table the open transaction has read: a
    // trigger missing, as after an upgrade that changes them.
    t.pg.batch_execute("drop trigger sequin_capture_delete on stripe.product")
        .await
        .unwrap();
    let holder = t.proxy_client().await;
    holder.batch_execute("begin").await.unwrap();
    holder
        .execute(
            "update stripe.customer set name = 'Held' where id = $1",
            &[&customers[0]],
        )
        .await
        .expect("a write-through in the open transaction");
    holder
        .query("select count(*) from stripe.product", &[])
        .await
        .unwrap();

    let mut admin = sequin_runtime::store::connect(&t.db.url).await.unwrap();
    let connector = sequin_runtime::registry::get("stripe").unwrap();
    let migration = tokio::spawn(async move {
        sequin_runtime::store::migrate(&mut admin, &[("stripe", connector)]).await
    });
    // A second `sequin run` starts meanwhile.
    let port = sequin_pgtemp::free_port().unwrap();
    let second = sequin_e2e::Running::start(&format!(
        "database_url: {db}\nproxy:\n  listen: 127.0.0.1:{port}\nconnections:\n{conn}",
        db = t.db.url,
        conn = stripe_connection(&t.sim, "customer, product"),
    ));
    let other = t.proxy_client().await;
    for i in 1..4 {
        let name = format!("Other {i}");
        for (table, id) in [("customer", &customers[i]), ("product", &products[i])] {
            let sql = format!("update stripe.{table} set name = $2 where id = $1");
            let n =
                tokio::time::timeout(Duration::from_secs(10), other.execute(&sql, &[id, &name]))
                    .await
                    .unwrap_or_else(|_| panic!("{sql} is stalled by the migration"))
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            assert_eq!(n, 1);
        }
        assert_eq!(
            stripe.get(Kind::Product, &products[i]).unwrap()["name"],
            name.as_str()
        );
    }
    assert!(
        !migration.is_finished(),
        "the migration waits for the open transaction"
    );
    holder.batch_execute("commit").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), migration)
        .await
        .expect("the migration finishes once the transaction ended")
        .unwrap()
        .expect("the migration succeeds");
    let protected: bool =
        t.pg.query_one("select sequin.protected('stripe.product')", &[])
            .await
            .unwrap()
            .get(0);
    assert!(protected, "the trigger is back");
    // The second process serves write-through as well.
    let through_second = connect_when_up(&proxy_url(&t.db.url, port)).await;
    let n = through_second
        .execute(
            "update stripe.customer set name = 'Second' where id = $1",
            &[&customers[4]],
        )
        .await
        .expect("a write through the second process");
    assert_eq!(n, 1);
    assert_eq!(
        stripe.get(Kind::Customer, &customers[4]).unwrap()["name"],
        "Second"
    );
    assert!(!second.finished(), "the second process runs");
    second
        .stop()
        .await
        .expect("the second process stops cleanly");
    t.finish().await;
}
