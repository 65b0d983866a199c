//! The store against a real Postgres: COPY + upsert, never going backwards,
//! deletes, checkpoints committed with the rows, discovered columns.

use sequin_runtime::registry;
use sequin_runtime::store::{self, Checkpoint, Phase, Row, Table, Writer};
use sequin_spec::model::{Access, Field, FieldType};
use sequin_spec::record::{Cell, Column};
use serde_json::json;

fn customer_table() -> Table {
    let stripe = registry::get("stripe").unwrap();
    let cols = stripe.object_columns("customer").unwrap().to_vec();
    let pk = cols.iter().position(|c| c.name == "id").unwrap();
    Table {
        schema: "stripe".into(),
        name: "customer".into(),
        columns: cols,
        primary_key: pk,
    }
}

fn row(t: &Table, id: &str, email: &str, updated: i64) -> Row {
    let mut cells = vec![Cell::Null; t.columns.len()];
    cells[t.primary_key] = Cell::Text(id.into());
    let e = t.columns.iter().position(|c| c.name == "email").unwrap();
    cells[e] = Cell::Text(email.into());
    let m = t.columns.iter().position(|c| c.name == "metadata").unwrap();
    cells[m] = Cell::Json(json!({"tab": "a\tb", "nl": "x\ny", "bs": "c\\d"}));
    Row {
        cells,
        updated_at: Some(updated),
    }
}

async fn email(admin: &tokio_postgres::Client, id: &str) -> Option<String> {
    admin
        .query_opt("SELECT email FROM stripe.customer WHERE id = $1", &[&id])
        .await
        .unwrap()
        .map(|r| r.get::<_, String>(0))
}

#[tokio::test]
async fn upserts_never_go_backwards_and_checkpoint_atomically() {
    let db = sequin_pgtemp::Database::create("store").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[("stripe", registry::get("stripe").unwrap())])
        .await
        .unwrap();
    let t = customer_table();
    let mut w = Writer::connect(&db.url).await.unwrap();
    assert_eq!(
        w.state("stripe", "customer").await.unwrap().phase,
        Phase::Backfilling
    );

    // A batch with a duplicate key: the last occurrence wins.
    let rows = vec![
        row(&t, "cus_1", "a@x.co", 10),
        row(&t, "cus_2", "b@x.co", 10),
        row(&t, "cus_1", "a2@x.co", 11),
    ];
    let cp = Checkpoint {
        backfill_cursor: Some(Some(json!({"after": "cus_2"}))),
        ..Default::default()
    };
    w.apply("stripe", &t, &rows, &[], &cp).await.unwrap();
    assert_eq!(email(&admin, "cus_1").await.as_deref(), Some("a2@x.co"));
    let meta: serde_json::Value = admin
        .query_one(
            "SELECT metadata FROM stripe.customer WHERE id = 'cus_1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(meta, json!({"tab": "a\tb", "nl": "x\ny", "bs": "c\\d"}));
    let st = w.state("stripe", "customer").await.unwrap();
    assert_eq!(st.backfill_cursor, Some(json!({"after": "cus_2"})));
    assert_eq!(st.rows_synced, 3);

    // An older version arriving late is ignored; a newer one applies.
    w.apply(
        "stripe",
        &t,
        &[row(&t, "cus_1", "old@x.co", 5)],
        &[],
        &Checkpoint::default(),
    )
    .await
    .unwrap();
    assert_eq!(email(&admin, "cus_1").await.as_deref(), Some("a2@x.co"));
    w.apply(
        "stripe",
        &t,
        &[row(&t, "cus_1", "new@x.co", 12)],
        &[],
        &Checkpoint::default(),
    )
    .await
    .unwrap();
    assert_eq!(email(&admin, "cus_1").await.as_deref(), Some("new@x.co"));

    // Deletes, and the phase switch.
    let cp = Checkpoint {
        phase: Some(Phase::Live),
        backfill_cursor: Some(None),
        ..Default::default()
    };
    w.apply("stripe", &t, &[], &["cus_2".to_string()], &cp)
        .await
        .unwrap();
    assert_eq!(email(&admin, "cus_2").await, None);
    let st = w.state("stripe", "customer").await.unwrap();
    assert_eq!((st.phase, st.backfill_cursor), (Phase::Live, None));

    // A failing batch changes nothing, cursor included.
    let mut bad = row(&t, "cus_3", "c@x.co", 20);
    let balance = t.columns.iter().position(|c| c.name == "balance").unwrap();
    bad.cells[balance] = Cell::Text("not a number".into());
    let cp = Checkpoint {
        backfill_cursor: Some(Some(json!("moved"))),
        ..Default::default()
    };
    assert!(w.apply("stripe", &t, &[bad], &[], &cp).await.is_err());
    assert_eq!(
        w.state("stripe", "customer").await.unwrap().backfill_cursor,
        None
    );
    assert_eq!(email(&admin, "cus_3").await, None);
    // The session is usable again after a failed batch.
    w.apply(
        "stripe",
        &t,
        &[row(&t, "cus_4", "d@x.co", 1)],
        &[],
        &Checkpoint::default(),
    )
    .await
    .unwrap();
    assert_eq!(email(&admin, "cus_4").await.as_deref(), Some("d@x.co"));
}

fn field(name: &str, ty: FieldType) -> Column {
    Column::from_field(&Field {
        name: name.into(),
        column: None,
        path: None,
        ty,
        nullable: true,
        access: Access::Writable,
        required_on_create: false,
        format: None,
        max_length: None,
        enum_values: vec![],
        external_id: false,
        pattern: None,
        time_format: None,
        stringly: false,
        merge: None,
        description: None,
    })
}

#[tokio::test]
async fn discovered_tables_and_columns_are_created() {
    let db = sequin_pgtemp::Database::create("store_disc").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    store::migrate(&mut admin, &[]).await.unwrap();
    admin
        .execute(
            "INSERT INTO sequin.connection VALUES ('air', 'airtable')",
            &[],
        )
        .await
        .unwrap();
    let mut t = Table {
        schema: "air".into(),
        name: "deals".into(),
        columns: vec![
            field("id", FieldType::String),
            field("Amount", FieldType::Float),
        ],
        primary_key: 0,
    };
    let mut w = Writer::connect(&db.url).await.unwrap();
    let added = w
        .ensure_table("air", &t, &["id".into(), "number".into()])
        .await
        .unwrap();
    assert_eq!(added, ["id", "amount"]);
    let mut cells = vec![Cell::Text("rec1".into()), Cell::Float(2.5)];
    let r = Row {
        cells: cells.clone(),
        updated_at: None,
    };
    w.apply("air", &t, &[r], &[], &Checkpoint::default())
        .await
        .unwrap();
    t.columns.push(field("Stage Name", FieldType::String));
    let types = ["id".into(), "number".into(), "singleLineText".into()];
    let added = w.ensure_table("air", &t, &types).await.unwrap();
    assert_eq!(added, ["stage_name"]);
    cells.push(Cell::Text("won".into()));
    let r = Row {
        cells,
        updated_at: None,
    };
    w.apply("air", &t, &[r], &[], &Checkpoint::default())
        .await
        .unwrap();
    let r = admin
        .query_one("SELECT amount, stage_name FROM air.deals", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, f64>(0), r.get::<_, String>(1)),
        (2.5, "won".to_string())
    );
    // A field removed upstream keeps its column, marked removed.
    t.columns.pop();
    w.ensure_table("air", &t, &["id".into(), "number".into()])
        .await
        .unwrap();
    let removed: i64 = admin
        .query_one(
            "SELECT count(*) FROM sequin.discovered_column WHERE removed_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(removed, 1);
}

/// The plan of `sql` with `$1` bound to `doc` (a JSON text).
async fn plan(admin: &tokio_postgres::Client, sql: &str, doc: &str) -> String {
    let literal = format!("'{}'", doc.replace('\'', "''"));
    let rows = admin
        .query(&format!("EXPLAIN {}", sql.replace("$1", &literal)), &[])
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Write-through's write-back and its RETURNING query find rows through the
/// primary key's index, for text and bigint keys alike, already in a table
/// of a few thousand rows. Joined with the JSON rows on `key::text`, they
/// read the whole table on every write (always for a bigint key; for a text
/// key until the table is large enough for the planner to change its mind).
#[tokio::test]
async fn write_back_statements_use_the_primary_key_index() {
    use sequin_runtime::write::sql::{self, FinalRows, Key};
    let db = sequin_pgtemp::Database::create("store_plans").unwrap();
    let admin = store::connect(&db.url).await.unwrap();
    for (ty, key) in [("text", "'k' || i"), ("bigint", "i")] {
        let table = format!("public.t_{ty}");
        admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (id {ty} PRIMARY KEY, name text,
                     _sequin_synced_at timestamptz, _sequin_updated_at timestamptz);
                 INSERT INTO {table} SELECT {key}, 'n' || i, now(), now()
                   FROM generate_series(1, 5000) AS i;
                 ANALYZE {table};"
            ))
            .await
            .unwrap();
        let pk = Key { name: "id", ty };
        let columns = ["id".to_string(), "name".to_string()];
        let id = if ty == "text" { "\"k42\"" } else { "42" };
        let doc = format!(
            "[{{\"id\": {id}, \"name\": \"x\", \"__sequin_key\": \"{}\"}}]",
            id.trim_matches('"')
        );
        let keys = format!("[\"{}\"]", id.trim_matches('"'));
        for (what, q, arg) in [
            ("write_back", sql::write_back(&table, pk, &columns), &doc),
            (
                "write_back_created",
                sql::write_back_created(&table, pk, &columns),
                &doc,
            ),
            (
                "returning",
                sql::returning_query("x.id", &table, "x", 1, FinalRows::Table { pk }),
                &keys,
            ),
        ] {
            let p = plan(&admin, &q, arg).await;
            assert!(
                !p.contains("Seq Scan on t_"),
                "{what} ({ty} key) reads the whole table:\n{p}"
            );
            assert!(p.contains("Index"), "{what} ({ty} key):\n{p}");
        }
        // And it does what it says: the row is found and rewritten.
        let n = admin
            .execute(&sql::write_back(&table, pk, &columns), &[&doc])
            .await
            .unwrap();
        assert_eq!(n, 1, "{ty} key");
    }
}

/// A database migrated by the release before migration 8 (grants by an
/// advisory lock that the guard looked up in pg_locks, 0006 as it landed)
/// upgrades in place: `migrate` applies only what it has not run, and 0008
/// brings the grant table, the token function, the guard and the journal's
/// columns the code uses now. (Every other test's fresh database runs the
/// same files in the same order, so they exercise this path too.)
#[tokio::test]
async fn a_database_of_the_previous_release_upgrades() {
    let db = sequin_pgtemp::Database::create("store_upgrade").unwrap();
    let mut admin = store::connect(&db.url).await.unwrap();
    let previous = [
        include_str!("../../migrations/0001_sequin_schema.sql"),
        include_str!("../../migrations/0002_write_through.sql"),
        include_str!("../../migrations/0003_backfill_total.sql"),
        include_str!("../../migrations/0004_journal_retention.sql"),
        include_str!("../../migrations/0005_release.sql"),
        include_str!("../../migrations/0006_grants.sql"),
        include_str!("../../migrations/0007_status.sql"),
    ];
    admin
        .batch_execute(
            "CREATE SCHEMA sequin;
             CREATE TABLE sequin.schema_version (
                 version int PRIMARY KEY,
                 applied_at timestamp with time zone NOT NULL DEFAULT now());",
        )
        .await
        .unwrap();
    for (i, sql) in previous.iter().enumerate() {
        admin.batch_execute(sql).await.unwrap();
        admin
            .execute(
                "INSERT INTO sequin.schema_version (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await
            .unwrap();
    }
    let shape = "SELECT to_regprocedure('sequin.granted()') IS NOT NULL,
                        to_regprocedure('sequin.open_grant(bytea,bigint,bytea)') IS NOT NULL,
                        to_regclass('sequin.grant') IS NOT NULL,
                        to_regclass('sequin.write_outcome') IS NOT NULL,
                        (SELECT string_agg(attname, ',' ORDER BY attname) FROM pg_attribute
                          WHERE attrelid = 'sequin.write_journal'::regclass
                            AND attname IN ('backend', 'process', 'written') AND NOT attisdropped),
                        EXISTS (SELECT 1 FROM pg_attribute
                                 WHERE attrelid = 'sequin.writer_key'::regclass
                                   AND attname = 'grant_key' AND NOT attisdropped)";
    let read = |row: tokio_postgres::Row| {
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3),
            row.get::<_, String>(4),
            row.get::<_, bool>(5),
        )
    };
    assert_eq!(
        read(admin.query_one(shape, &[]).await.unwrap()),
        (true, false, false, false, "backend".to_string(), false),
        "0006 as it landed"
    );
    store::migrate(&mut admin, &[("stripe", registry::get("stripe").unwrap())])
        .await
        .unwrap();
    assert_eq!(
        read(admin.query_one(shape, &[]).await.unwrap()),
        (false, true, true, true, "process,written".to_string(), true),
        "after 0008"
    );
    let row = admin
        .query_one(
            "SELECT array_to_string(proargnames, ','),
                    (SELECT max(version) FROM sequin.schema_version),
                    pg_get_functiondef('sequin.guard()'::regprocedure) LIKE '%sequin.grant WHERE%',
                    has_function_privilege('public', 'sequin.open_grant(bytea,bigint,bytea)', 'EXECUTE'),
                    has_table_privilege('public', 'sequin.grant', 'INSERT')
               FROM pg_proc WHERE oid = 'sequin.open_grant(bytea,bigint,bytea)'::regprocedure",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "kid,at,mac");
    assert_eq!(row.get::<_, i32>(1), 16);
    assert!(row.get::<_, bool>(2), "the guard reads sequin.grant");
    assert!(
        row.get::<_, bool>(3),
        "clients' sessions may call open_grant"
    );
    assert!(!row.get::<_, bool>(4), "only Sequin's role writes grants");
}
