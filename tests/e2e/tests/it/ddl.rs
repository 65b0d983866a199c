//! The generated DDL of every connector applies to a real Postgres, and the
//! resulting tables match the specs column by column.

use sequin_spec::model::FieldType;
use sequin_spec::naming::quote_ident;

const SEQUIN_SCHEMA: &str =
    include_str!("../../../../sequin-runtime/migrations/0001_sequin_schema.sql");

#[tokio::test]
async fn generated_ddl_applies_and_matches_the_specs() {
    let db = sequin_pgtemp::Database::create("ddl").unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(SEQUIN_SCHEMA).await.unwrap();
    // Applying twice is harmless (migrations are idempotent).
    client.batch_execute(SEQUIN_SCHEMA).await.unwrap();

    let all = sequin_runtime::registry::all();
    assert!(
        all.len() >= 4,
        "expected the four connectors, got {:?}",
        sequin_runtime::registry::names()
    );
    for c in all {
        let schema = format!("{}_conn", c.spec.name);
        let ddl = c.ddl(&schema);
        client
            .batch_execute(&ddl)
            .await
            .unwrap_or_else(|e| panic!("DDL of {} fails: {e}\n{ddl}", c.spec.name));
        for o in &c.spec.objects {
            let rows = client
                .query(
                    "SELECT column_name::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
                       FROM information_schema.columns c
                       JOIN pg_attribute a ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
                                          AND a.attname = c.column_name
                      WHERE table_schema = $1 AND table_name = $2
                      ORDER BY ordinal_position",
                    &[&schema, &o.name],
                )
                .await
                .unwrap();
            let actual: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let mut expected: Vec<(String, String)> = o
                .fields
                .iter()
                .map(|f| (f.column_name(), f.ty.pg_type().to_string()))
                .collect();
            expected.push((
                "_sequin_synced_at".into(),
                FieldType::Timestamp.pg_type().into(),
            ));
            expected.push((
                "_sequin_updated_at".into(),
                FieldType::Timestamp.pg_type().into(),
            ));
            assert_eq!(
                actual, expected,
                "{}.{} columns differ from the spec",
                schema, o.name
            );
            // The primary key is the API id.
            let pk: Vec<String> = client
                .query(
                    "SELECT a.attname::text FROM pg_index i
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                      WHERE i.indrelid = $1::text::regclass AND i.indisprimary",
                    &[&format!(
                        "{}.{}",
                        quote_ident(&schema),
                        quote_ident(&o.name)
                    )],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let pk_field = o.primary_key_field().unwrap();
            assert_eq!(
                pk,
                vec![pk_field.column_name()],
                "{schema}.{} primary key",
                o.name
            );
        }
    }
}

#[test]
fn ddl_applies_through_psql_variables() {
    // The committed .sql files are usable as they are with psql.
    let cluster = sequin_pgtemp::shared().unwrap();
    let db = sequin_pgtemp::Database::create("ddlpsql").unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sequin-connectors/src");
    for c in sequin_runtime::registry::all() {
        let file = dir.join(format!("{}.sql", c.spec.name));
        let out = std::process::Command::new(cluster.bindir().join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                &format!("schema={}", c.spec.name),
            ])
            .arg("-d")
            .arg(&db.url)
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn identifiers_are_quoted_for_every_keyword_postgres_reserves() {
    let db = sequin_pgtemp::Database::create("ddl_keywords").unwrap();
    let client = sequin_pgtemp::connect(&db.url).await;
    let reserved: Vec<String> = client
        .query(
            "SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T') ORDER BY word",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut ours: Vec<&str> = sequin_spec::naming::RESERVED.to_vec();
    ours.sort();
    assert_eq!(ours, reserved, "naming::RESERVED against pg_get_keywords()");
    // And each one works as a column name once quoted.
    let columns: Vec<String> = reserved
        .iter()
        .map(|w| format!("{} text", quote_ident(w)))
        .collect();
    client
        .batch_execute(&format!("CREATE TABLE keywords ({})", columns.join(", ")))
        .await
        .unwrap();
}
