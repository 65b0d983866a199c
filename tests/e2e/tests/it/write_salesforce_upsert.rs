//! Upsert by external id through the Sequin proxy (issue #14): `INSERT ...
//! ON CONFLICT (<external id column>) DO UPDATE` on salesforce.account,
//! whose custom field `Ext_Id__c` is an External ID in the org's describe,
//! becomes Salesforce's upsert (one record by the value in the path,
//! several through sObject Collections by the field). With psql (simple
//! protocol), SQLAlchemy's `on_conflict_do_update` on psycopg 3, and
//! tokio-postgres (extended protocol, a rolled-back transaction): a row
//! that creates and a row that updates give the right ids and command tag,
//! the table and the org agree, a validation rule's refusal follows the
//! error contract with nothing changed, ON CONFLICT on any other column is
//! refused with 0A000 naming the external id column, and a rolled-back
//! upsert is undone at the org (the created record deleted, the updated
//! one restored).

use std::time::Duration;

use crate::write_common;

use sequin_sim::Api;
use sequin_sim::salesforce::Salesforce;
use serde_json::json;
use tokio_postgres::Client;
use write_common::*;

/// The org's Account upserts go by (`ext_id__c` in Postgres).
const EXT: &str = "Ext_Id__c";

/// The sim with the External ID field, a validation rule, and one account
/// (`ext` as its external id) made before the engine starts; its id.
async fn setup(db_prefix: &str, ext: &'static str) -> (Setup, String) {
    let mut existing = String::new();
    let t = Setup::start(Api::Salesforce, 2, db_prefix, |sim| {
        let sf = sim.salesforce();
        sf.add_external_id_field("Account", EXT).unwrap();
        sf.add_validation_rule(json!({
            "object": "Account",
            "name": "Employees_Not_Negative",
            "field": "NumberOfEmployees",
            "condition": "less_than",
            "value": 0,
            "errorMessage": "Employees cannot be negative",
            "errorField": "NumberOfEmployees",
        }))
        .unwrap();
        existing = sf
            .create("Account", json!({"Name": "Before", EXT: ext}))
            .unwrap();
        salesforce_connection(sim, "account")
    })
    .await;
    // The existing record is synced with its external id.
    sequin_e2e::eventually(Duration::from_secs(60), "the existing account synced", || async {
        let n = count(
            &t.pg,
            &format!("select count(*) from salesforce.account where id = '{existing}' and ext_id__c = '{ext}'"),
        )
        .await;
        (n == 1, n)
    })
    .await;
    (t, existing)
}

/// Postgres holds exactly one row with external id `ext`, with `id` and
/// `name`, and so does the org.
async fn assert_agree(t: &Setup, sf: &Salesforce, ext: &str, id: &str, name: &str) {
    let rows =
        t.pg.query(
            "select id, name from salesforce.account where ext_id__c = $1",
            &[&ext],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        [(id.to_string(), name.to_string())],
        "{ext} in Postgres"
    );
    let rec = sf
        .get("Account", id)
        .unwrap_or_else(|| panic!("{id} in the org"));
    assert_eq!(rec["Name"], name, "{id}: {rec}");
    assert_eq!(rec[EXT], ext, "{id}: {rec}");
}

/// psql without `-t`: the rows and the command tags show.
async fn psql_with_tags(url: &str, script: &str) -> (String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(psql())
        .args(["-X", "-A", "-v", "VERBOSITY=verbose", "-d", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("psql finishes in time")
        .unwrap();
    assert!(o.status.success(), "psql exits 0: {o:?}");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The `id` column of the row psql printed for external id `ext` (lines
/// `id|ext_id__c`).
fn psql_id(out: &str, ext: &str, nth: usize) -> String {
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(_, e)| *e == ext)
        .map(|(id, _)| id.to_string())
        .nth(nth)
        .unwrap_or_else(|| panic!("row {nth} of {ext} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_upserts_by_external_id() {
    let (t, existing) = setup("sf_upsert_psql", "PSQL-OLD").await;
    let sf = t.sim.salesforce();
    let script = "\
INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Psql New', 'PSQL-NEW') ON CONFLICT (ext_id__c) DO UPDATE SET name = EXCLUDED.name RETURNING id, ext_id__c;
INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Psql Old Renamed', 'PSQL-OLD') ON CONFLICT (ext_id__c) DO UPDATE SET name = EXCLUDED.name RETURNING id, ext_id__c;
INSERT INTO salesforce.account AS a (name, ext_id__c, number_of_employees) VALUES ('Psql Multi', 'PSQL-MULTI', 10), ('Psql New Again', 'PSQL-NEW', 20) ON CONFLICT (ext_id__c) DO UPDATE SET name = EXCLUDED.name, number_of_employees = EXCLUDED.number_of_employees RETURNING a.id, a.ext_id__c;
INSERT INTO salesforce.account (name, ext_id__c, number_of_employees) VALUES ('Psql Bad', 'PSQL-BAD', -5) ON CONFLICT (ext_id__c) DO UPDATE SET name = EXCLUDED.name, number_of_employees = EXCLUDED.number_of_employees;
INSERT INTO salesforce.account (name, ext_id__c, number_of_employees) VALUES ('Psql Old Bad', 'PSQL-OLD', -1) ON CONFLICT (ext_id__c) DO UPDATE SET name = EXCLUDED.name, number_of_employees = EXCLUDED.number_of_employees;
INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Psql Wrong', 'PSQL-W') ON CONFLICT (name) DO UPDATE SET ext_id__c = EXCLUDED.ext_id__c;
INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Psql Nothing', 'PSQL-N') ON CONFLICT (ext_id__c) DO NOTHING;
";
    let in_org = sf.count("Account", false);
    let (out, err) = psql_with_tags(&t.proxy_url, script).await;
    // Tags: one row, one row, two rows; then four refusals.
    let tags: Vec<&str> = out.lines().filter(|l| l.starts_with("INSERT ")).collect();
    assert_eq!(
        tags,
        ["INSERT 0 1", "INSERT 0 1", "INSERT 0 2"],
        "{out}\n{err}"
    );
    let created = psql_id(&out, "PSQL-NEW", 0);
    assert!(
        created.starts_with("001") && created.len() == 18,
        "{created}"
    );
    assert_eq!(
        psql_id(&out, "PSQL-OLD", 0),
        existing,
        "the upsert found the existing record"
    );
    assert_eq!(
        psql_id(&out, "PSQL-NEW", 1),
        created,
        "the second upsert updated the first's record"
    );
    let multi = psql_id(&out, "PSQL-MULTI", 0);
    assert!(multi.starts_with("001") && multi != created, "{multi}");
    assert_agree(&t, sf, "PSQL-NEW", &created, "Psql New Again").await;
    assert_agree(&t, sf, "PSQL-OLD", &existing, "Psql Old Renamed").await;
    assert_agree(&t, sf, "PSQL-MULTI", &multi, "Psql Multi").await;
    assert_eq!(
        sf.get("Account", &created).unwrap()["NumberOfEmployees"],
        20
    );
    assert_eq!(
        sf.count("Account", false),
        in_org + 2,
        "two records created"
    );
    // The validation rule's refusals: 23514, the org's message, the column.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("ERROR:")).collect();
    assert_eq!(errors.len(), 4, "{err}");
    for e in &errors[..2] {
        assert!(
            e.starts_with("ERROR:  23514: [Salesforce]: Employees cannot be negative"),
            "{e}\n{err}"
        );
    }
    assert!(
        err.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        "DETAIL names the code: {err}"
    );
    assert!(err.contains("COLUMN NAME:  number_of_employees"), "{err}");
    // Nothing changed: no PSQL-BAD anywhere, PSQL-OLD as it was.
    assert_eq!(
        count(
            &t.pg,
            "select count(*) from salesforce.account where ext_id__c = 'PSQL-BAD'"
        )
        .await,
        0
    );
    assert_agree(&t, sf, "PSQL-OLD", &existing, "Psql Old Renamed").await;
    assert_eq!(
        sf.count("Account", false),
        in_org + 2,
        "nothing created by the refusals"
    );
    // ON CONFLICT on anything else: 0A000 naming the external id column.
    for e in &errors[2..] {
        assert!(e.starts_with("ERROR:  0A000: [Salesforce]:"), "{e}");
        assert!(e.contains("ON CONFLICT (ext_id__c) DO UPDATE"), "{e}");
    }
    assert_no_pending_ids(&t.pg, "salesforce.account", "id").await;
    // The journal says what each upsert became: two creates and two
    // updates committed, the two refused upserts rejected.
    sequin_e2e::eventually(Duration::from_secs(30), "the journal settled", || async {
        let rows =
            t.pg.query(
                "select op, state, count(*) from sequin.write_journal where object = 'account' \
                  group by 1, 2 order by 1, 2",
                &[],
            )
            .await
            .unwrap();
        let got: Vec<(String, String, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let want: Vec<(String, String, i64)> = [
            ("create", "committed", 2),
            ("update", "committed", 2),
            ("upsert", "rejected", 2),
        ]
        .iter()
        .map(|(o, s, n)| (o.to_string(), s.to_string(), *n))
        .collect();
        (got == want, got)
    })
    .await;
    rolled_back_upserts_are_undone(&t, sf, &existing).await;
    t.finish().await;
}

/// tokio-postgres (extended protocol) in a transaction that rolls back:
/// the reconciler deletes the record the upsert created and restores the
/// one it updated.
async fn rolled_back_upserts_are_undone(t: &Setup, sf: &Salesforce, existing: &str) {
    let c: &Client = &t.proxy;
    c.batch_execute("BEGIN").await.unwrap();
    let sql = "INSERT INTO salesforce.account (name, ext_id__c) VALUES ($1, $2) \
               ON CONFLICT (ext_id__c) DO UPDATE SET name = EXCLUDED.name RETURNING id";
    let made: String = c
        .query_one(sql, &[&"Tx New", &"TX-NEW"])
        .await
        .unwrap()
        .get(0);
    let kept: String = c
        .query_one(sql, &[&"Tx Renamed", &"PSQL-OLD"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, existing);
    assert!(
        sf.get("Account", &made).is_some(),
        "created at the org meanwhile"
    );
    assert_eq!(sf.get("Account", existing).unwrap()["Name"], "Tx Renamed");
    c.batch_execute("ROLLBACK").await.unwrap();
    sequin_e2e::eventually(Duration::from_secs(30), "the upserts undone", || async {
        let gone = sf.get("Account", &made).is_none();
        let name = sf.get("Account", existing).unwrap()["Name"].clone();
        (gone && name == "Psql Old Renamed", (gone, name))
    })
    .await;
    assert_agree(t, sf, "PSQL-OLD", existing, "Psql Old Renamed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_on_conflict_do_update_upserts() {
    let python = tokio::task::spawn_blocking(sequin_pgtemp::drivers::python_env)
        .await
        .unwrap();
    let (t, existing) = setup("sf_upsert_orm", "ORM-OLD").await;
    let sf = t.sim.salesforce();
    let in_org = sf.count("Account", false);
    let (ok, out, err) = sequin_pgtemp::drivers::run_script(
        tokio::process::Command::new(python)
            .arg(driver_scripts().join("sqlalchemy_upsert.py"))
            .arg(&t.proxy_url)
            .arg(&existing),
    )
    .await;
    assert!(ok, "the SQLAlchemy upsert scenario failed:\n{out}\n{err}");
    let result = script_result(&out);
    let created = result["created"].as_str().unwrap();
    let multi = result["multi"].as_str().unwrap();
    assert_agree(&t, sf, "ORM-NEW", created, "Orm New Again").await;
    assert_agree(&t, sf, "ORM-OLD", &existing, "Orm Old Renamed").await;
    assert_agree(&t, sf, "ORM-MULTI", multi, "Orm Multi").await;
    assert_eq!(
        sf.get("Account", &existing).unwrap()["NumberOfEmployees"],
        7
    );
    assert_eq!(sf.count("Account", false), in_org + 2);
    let refused = &result["refused"];
    assert_eq!(refused["sqlstate"], "23514", "{refused}");
    assert_eq!(
        refused["message"],
        "[Salesforce]: Employees cannot be negative (column `number_of_employees`)"
    );
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        "{refused}"
    );
    assert_eq!(refused["column"], "number_of_employees");
    assert_eq!(refused["table"], "account");
    let wrong = &result["wrong_target"];
    assert_eq!(wrong["sqlstate"], "0A000", "{wrong}");
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .contains("ON CONFLICT (ext_id__c) DO UPDATE"),
        "{wrong}"
    );
    // The local rows the script read are the org's.
    let local = result["local"].as_object().unwrap();
    assert_eq!(local.len(), 3, "{local:?}");
    assert_eq!(local[&existing], json!(["Orm Old Renamed", 7]));
    assert_no_pending_ids(&t.pg, "salesforce.account", "id").await;
    t.finish().await;
}
