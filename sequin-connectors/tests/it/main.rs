//! The typed records as an application uses them: an API record decoded by
//! the generated `Record` impl is written into the tables the generated DDL
//! creates (in a throwaway Postgres, as the runtime's COPY writes it: each
//! cell's Postgres text), read back with `row_to_json`, and deserialized
//! into the same struct.

use std::io::Write;
use std::process::{Command, Stdio};

use sequin_connectors::{ALL, salesforce, stripe};
use sequin_spec::naming::quote_ident;
use sequin_spec::record::Record;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Runs SQL with psql (unaligned, tuples only) and returns its output.
fn psql(url: &str, sql: &str) -> String {
    let bin = sequin_pgtemp::find_bindir()
        .map(|b| b.join("psql"))
        .unwrap_or_else(|| "psql".into());
    // The SQL goes in on stdin: a connector's DDL (Stripe's, 51 tables) is
    // longer than one command-line argument may be (128 KiB).
    let mut child = Command::new(bin)
        .args([
            "-X",
            "-w",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child
        .stdin
        .take()
        .expect("psql's stdin")
        .write_all(sql.as_bytes())
        .expect("SQL written to psql");
    let out = child.wait_with_output().expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed on {sql}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("psql prints UTF-8")
}

/// A database holding the tables of `connector` in the schema of that name.
fn database_with(connector: &str) -> sequin_pgtemp::Database {
    let db = sequin_pgtemp::Database::create("connectors").expect("a database is created");
    let compiled = ALL
        .iter()
        .find(|c| c.name == connector)
        .expect("compiled in");
    psql(
        &db.url,
        &compiled.ddl.replace(":\"schema\"", &quote_ident(connector)),
    );
    db
}

/// Inserts `record` into its table the way sync stores it, then reads the
/// row back as `row_to_json` renders it.
fn store_and_read<R: Record + DeserializeOwned>(
    db: &sequin_pgtemp::Database,
    schema: &str,
    record: &R,
) -> R {
    let (names, values): (Vec<String>, Vec<String>) = R::columns()
        .iter()
        .zip(record.to_row())
        .filter_map(|(col, cell)| {
            let text = cell.to_pg_text()?;
            Some((
                quote_ident(&col.name),
                format!("'{}'", text.replace('\'', "''")),
            ))
        })
        .unzip();
    let table = format!("{}.{}", quote_ident(schema), quote_ident(R::TABLE));
    psql(
        &db.url,
        &format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            values.join(", ")
        ),
    );
    let row = psql(&db.url, &format!("SELECT row_to_json(t) FROM {table} t"));
    let row: Value = serde_json::from_str(row.trim()).expect("row_to_json prints JSON");
    assert!(
        row.get("_sequin_synced_at").is_some(),
        "metadata columns are in the row: {row}"
    );
    serde_json::from_value(row)
        .unwrap_or_else(|e| panic!("{} row does not deserialize: {e}", R::TABLE))
}

#[test]
fn a_stripe_customer_round_trips_through_its_table() {
    let api = json!({
        "id": "cus_NffrFeUfNV2Hib",
        "object": "customer",
        "address": {"city": "Vicenza", "country": "IT", "line1": null},
        "balance": -1250,
        "created": 1680893993,
        "currency": "eur",
        "delinquent": false,
        "description": "It's a customer",
        "email": "andrea@example.com",
        "invoice_prefix": "0759376C",
        "livemode": false,
        "metadata": {"order_id": "6735"},
        "name": "Andrea Palladio",
        "preferred_locales": ["it", "en"],
        "tax_exempt": "none"
    });
    let customer = stripe::Customer::decode(&api).expect("the API record decodes");
    let db = database_with("stripe");
    let read = store_and_read(&db, "stripe", &customer);
    assert_eq!(read, customer);
    assert_eq!(read.created.unwrap().0, 1_680_893_993_000_000);
    assert_eq!(
        read.preferred_locales.as_deref(),
        Some(&["it".to_string(), "en".to_string()][..])
    );
    assert_eq!(stripe::Customer::TABLE, "customer");
}

#[test]
fn a_salesforce_opportunity_round_trips_through_its_table() {
    let api = json!({
        "attributes": {"type": "Opportunity", "url": "/services/data/v59.0/sobjects/Opportunity/006A"},
        "Id": "006Dn00000A1b2cIAB",
        "Name": "Villa Rotonda",
        "StageName": "Prospecting",
        "Amount": 125000.5,
        "Probability": 10,
        "CloseDate": "2024-09-30",
        "Type": "New Customer",
        "IsClosed": false,
        "FiscalYear": 2024,
        "CreatedDate": "2024-05-01T09:30:00.000+0000"
    });
    let opportunity = salesforce::Opportunity::decode(&api).expect("the API record decodes");
    let db = database_with("salesforce");
    let read = store_and_read(&db, "salesforce", &opportunity);
    assert_eq!(read, opportunity);
    assert_eq!(read.amount.as_ref().unwrap().0, "125000.5");
    assert_eq!(read.r#type.as_deref(), Some("New Customer"));
    assert_eq!(read.close_date.unwrap().0, 19996);
}
