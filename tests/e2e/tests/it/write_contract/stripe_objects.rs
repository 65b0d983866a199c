//! Write-through of every top-level Stripe object, driven by the spec: for
//! each object, the operations its endpoints declare are run through the
//! proxy against the Stripe simulator (INSERT ... RETURNING id, UPDATE of a
//! writable column, DELETE), and the ones it does not declare are refused
//! with 0A000, with nothing changed at Stripe or in Postgres. The values each
//! INSERT and UPDATE writes come from [`CASES`]; an object whose spec gains a
//! write endpoint without a case fails the test, naming it.
//!
//! Objects Stripe creates itself (disputes, issuing authorizations ...) are
//! updated through their update-only columns (`access: update_only`).
//!
//! Then the refusals of the error contract on these objects: creates Stripe
//! refuses (a missing nested parameter, an id of nothing), local checks
//! (format, enum, length, required, an update-only column on INSERT),
//! read-only and create-only columns on UPDATE.

use std::collections::HashSet;
use std::time::Instant;

use crate::sync_common::{row_equals, spec_columns};
use crate::write_common::*;
use sequin_sim::Api;
use sequin_sim::stripe::{Kind, Stripe};
use sequin_spec::model::{FieldType, Object};

/// A write operation of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    const ALL: [Op; 3] = [Op::Create, Op::Update, Op::Delete];

    /// The verb write-through's 0A000 names.
    fn verb(self) -> &'static str {
        match self {
            Op::Create => "created",
            Op::Update => "updated",
            Op::Delete => "deleted",
        }
    }
}

/// What the test writes to one object.
struct Case {
    /// The spec's object (the table's name).
    object: &'static str,
    /// The INSERT's columns and SQL values. `{table}` stands for the id of a
    /// seeded row of `stripe.table`, `{table:filter}` for one matching a
    /// WHERE clause.
    insert: &'static [(&'static str, &'static str)],
    /// The UPDATE's column and SQL value (`None`: the object has no update).
    update: Option<(&'static str, &'static str)>,
    /// Operations the spec declares that cannot succeed through SQL, with
    /// the refusal expected.
    refused: &'static [Refused],
    /// Columns written that Stripe reads back in another shape (a list
    /// object for an array of items) or only when expanded: the row is still
    /// Stripe's record, but does not contain the value written.
    unread: &'static [&'static str],
}

/// An operation refused although the object has its endpoint.
struct Refused {
    op: Op,
    sqlstate: &'static str,
    /// A piece of the message (Stripe's own text for Stripe's refusals).
    message: &'static str,
}

const fn case(
    object: &'static str,
    insert: &'static [(&'static str, &'static str)],
    update: (&'static str, &'static str),
) -> Case {
    Case {
        object,
        insert,
        update: Some(update),
        refused: &[],
        unread: &[],
    }
}

/// Per object: the INSERT (Stripe's required create parameters, ids of
/// seeded objects) and the UPDATE.
const CASES: &[Case] = &[
    case(
        "customer",
        &[("name", "'Write Through'"), ("email", "'wt@example.com'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "product",
        &[("name", "'Write-through product'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "price",
        &[
            ("currency", "'usd'"),
            ("product", "'{product}'"),
            ("unit_amount", "1200"),
        ],
        ("nickname", "'updated'"),
    ),
    // Items are written as `[{price}]` and read as a list object.
    Case {
        unread: &["items"],
        ..case(
            "subscription",
            &[
                ("customer", "'{customer}'"),
                ("items", "'[{\"price\": \"{price:type = 'recurring'}\"}]'"),
            ],
            ("description", "'updated through the proxy'"),
        )
    },
    case(
        "invoice",
        &[("customer", "'{customer}'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "payment_intent",
        &[("amount", "2000"), ("currency", "'usd'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "charge",
        &[("amount", "1500"), ("currency", "'usd'")],
        ("description", "'updated through the proxy'"),
    ),
    // Custom accounts request their capabilities (read back as their status).
    Case {
        unread: &["capabilities"],
        ..case(
            "account",
            &[
                ("type", "'custom'"),
                ("country", "'US'"),
                ("capabilities", "'{\"transfers\": {\"requested\": true}}'"),
            ],
            ("email", "'owner@example.com'"),
        )
    },
    Case {
        object: "apple_pay_domain",
        insert: &[("domain_name", "'pay.example.com'")],
        update: None,
        refused: &[],
        unread: &[],
    },
    case(
        "billing_portal_configuration",
        &[
            ("business_profile", "'{\"headline\": \"Write-through\"}'"),
            ("features", "'{\"invoice_history\": {\"enabled\": true}}'"),
        ],
        ("default_return_url", "'https://example.com/account'"),
    ),
    // Payment mode needs line items, included only when expanded.
    Case {
        unread: &["line_items"],
        ..case(
            "checkout_session",
            &[
                ("success_url", "'https://example.com/success'"),
                ("mode", "'payment'"),
                (
                    "line_items",
                    "'[{\"price\": \"{price:type = 'one_time'}\", \"quantity\": 1}]'",
                ),
            ],
            ("client_reference_id", "'unused'"),
        )
    },
    case(
        "coupon",
        &[
            ("percent_off", "25"),
            ("duration", "'once'"),
            ("name", "'Write-through'"),
        ],
        ("name", "'Updated'"),
    ),
    case(
        "credit_note",
        // Stripe credits finalized invoices only.
        &[
            ("invoice", "'{invoice:status = 'paid'}'"),
            ("amount", "100"),
        ],
        ("memo", "'updated through the proxy'"),
    ),
    // Update-only: created by Stripe, its metadata set by an update.
    case("dispute", &[], ("metadata", "'{\"k\": \"v\"}'")),
    case(
        "file_link",
        &[("file", "'{file}'")],
        ("metadata", "'{\"k\": \"v\"}'"),
    ),
    case(
        "identity_verification_session",
        &[("type", "'document'")],
        ("type", "'id_number'"),
    ),
    case(
        "invoiceitem",
        &[
            ("customer", "'{customer}'"),
            ("amount", "500"),
            ("currency", "'usd'"),
        ],
        ("description", "'updated through the proxy'"),
    ),
    // Update-only: created by Stripe, its metadata set by an update.
    case(
        "issuing_authorization",
        &[],
        ("metadata", "'{\"k\": \"v\"}'"),
    ),
    case(
        "issuing_cardholder",
        &[
            ("name", "'Jenny Rosen'"),
            (
                "billing",
                "'{\"address\": {\"line1\": \"1 Main St\", \"city\": \"San Francisco\", \"state\": \"CA\", \"postal_code\": \"94111\", \"country\": \"US\"}}'",
            ),
        ],
        ("email", "'jenny@example.com'"),
    ),
    case(
        "issuing_card",
        &[("currency", "'usd'"), ("type", "'virtual'")],
        ("status", "'inactive'"),
    ),
    case(
        "issuing_dispute",
        &[("transaction", "'{issuing_transaction}'")],
        ("amount", "300"),
    ),
    // Update-only: created by Stripe, its metadata set by an update.
    case("issuing_settlement", &[], ("metadata", "'{\"k\": \"v\"}'")),
    // Update-only: created by Stripe, its metadata set by an update.
    case("issuing_transaction", &[], ("metadata", "'{\"k\": \"v\"}'")),
    // Line items are included only when expanded.
    Case {
        unread: &["line_items"],
        ..case(
            "payment_link",
            &[(
                "line_items",
                "'[{\"price\": \"{price}\", \"quantity\": 1}]'",
            )],
            // Update-only (deactivates the link).
            ("active", "false"),
        )
    },
    case(
        "payment_method_domain",
        &[("domain_name", "'shop.example.com'")],
        ("enabled", "false"),
    ),
    case(
        "payment_method",
        &[("type", "'card'"), ("card", "'{\"token\": \"tok_visa\"}'")],
        ("billing_details", "'{\"name\": \"Jenny Rosen\"}'"),
    ),
    case(
        "payout",
        &[("amount", "1000"), ("currency", "'usd'")],
        ("metadata", "'{\"k\": \"v\"}'"),
    ),
    case(
        "plan",
        &[
            ("currency", "'usd'"),
            ("interval", "'month'"),
            ("amount", "900"),
            ("product", "'{product}'"),
        ],
        ("nickname", "'updated'"),
    ),
    Case {
        object: "promotion_code",
        insert: &[("code", "'WRITE25'")],
        update: Some(("active", "true")),
        // The coupon is read as the whole coupon object (a json column) and
        // written as its id, which no column carries.
        refused: &[Refused {
            op: Op::Create,
            sqlstate: "23502",
            message: "Missing required param: coupon.",
        }],
        unread: &[],
    },
    case(
        "quote",
        &[("customer", "'{customer}'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "radar_value_list",
        &[("alias", "'write_through'"), ("name", "'Write-through'")],
        ("name", "'Updated'"),
    ),
    case(
        "refund",
        &[("charge", "'{charge:status = 'succeeded' and not refunded}'")],
        ("metadata", "'{\"k\": \"v\"}'"),
    ),
    case(
        "reporting_report_run",
        &[
            ("report_type", "'balance.summary.1'"),
            (
                "parameters",
                "'{\"interval_start\": 1680307200, \"interval_end\": 1682899200}'",
            ),
        ],
        ("report_type", "'unused'"),
    ),
    case(
        "setup_intent",
        &[("customer", "'{customer}'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "shipping_rate",
        &[
            ("display_name", "'Ground'"),
            ("type", "'fixed_amount'"),
            ("fixed_amount", "'{\"amount\": 500, \"currency\": \"usd\"}'"),
        ],
        ("tax_behavior", "'inclusive'"),
    ),
    case(
        "subscription_schedule",
        &[
            ("customer", "'{customer}'"),
            (
                "phases",
                "'[{\"items\": [{\"price\": \"{price:type = 'recurring'}\"}]}]'",
            ),
        ],
        ("end_behavior", "'cancel'"),
    ),
    case(
        "terminal_configuration",
        &[("tipping", "'{\"usd\": {\"fixed_amounts\": [100, 200]}}'")],
        ("tipping", "'{\"usd\": {\"fixed_amounts\": [300]}}'"),
    ),
    case(
        "terminal_location",
        &[
            ("display_name", "'Shop'"),
            (
                "address",
                "'{\"line1\": \"1 Main St\", \"city\": \"San Francisco\", \"state\": \"CA\", \"postal_code\": \"94111\", \"country\": \"US\"}'",
            ),
        ],
        ("display_name", "'Shop 2'"),
    ),
    Case {
        object: "terminal_reader",
        insert: &[("label", "'Front desk'")],
        update: Some(("label", "'Back office'")),
        // A reader is registered with the code it shows, a create parameter
        // no column carries.
        refused: &[Refused {
            op: Op::Create,
            sqlstate: "23502",
            message: "Missing required param: registration_code.",
        }],
        unread: &[],
    },
    case(
        "topup",
        &[("amount", "2500"), ("currency", "'usd'")],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "transfer",
        &[
            ("amount", "700"),
            ("currency", "'usd'"),
            ("destination", "'{account}'"),
        ],
        ("description", "'updated through the proxy'"),
    ),
    case(
        "treasury_financial_account",
        &[("supported_currencies", "array['usd']")],
        ("metadata", "'{\"k\": \"v\"}'"),
    ),
    case(
        "webhook_endpoint",
        &[
            ("url", "'https://example.com/hook'"),
            ("enabled_events", "array['customer.created']"),
        ],
        ("description", "'updated through the proxy'"),
    ),
];

/// Operations Stripe has that the spec deliberately does not map, and why.
const NOT_MAPPED: &[(&str, Op, &str)] = &[
    (
        "subscription",
        Op::Delete,
        "DELETE /v1/subscriptions/{id} cancels: the subscription stays, so a deleted row would come back",
    ),
    (
        "file",
        Op::Create,
        "files are created by a multipart upload to files.stripe.com",
    ),
];

/// Records seeded per object (three: the third price is one-time).
const SEED: usize = 3;

/// Every top-level object's writes and refusals, against one simulator, one
/// engine and one proxy.
pub async fn every_object() {
    let started = Instant::now();
    let objects = stripe_objects();
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let t = Setup::start(Api::Stripe, 0, "write_stripe_objects", |sim| {
        sim.stripe().seed_every_object(SEED);
        stripe_connection(sim, &names.join(", "))
    })
    .await;
    let synced = started.elapsed();
    let mut run = Run {
        t: &t,
        stripe: t.sim.stripe(),
        created: HashSet::new(),
        problems: Vec::new(),
        full: Vec::new(),
        written: [0; 3],
    };
    for obj in &objects {
        run.object(obj).await;
    }
    for name in CASES.iter().map(|c| c.object) {
        if !objects.iter().any(|o| o.name == name) {
            run.problems.push(format!(
                "{name}: a case for an object the spec does not have"
            ));
        }
    }
    refusals(&run).await;
    eprintln!(
        "stripe write-through: {} objects; created {}, updated {}, deleted {}; create+update+delete end to end on {} ({}); synced in {:.1?}, all in {:.1?}",
        objects.len(),
        run.written[0],
        run.written[1],
        run.written[2],
        run.full.len(),
        run.full.join(", "),
        synced,
        started.elapsed()
    );
    assert!(
        run.problems.is_empty(),
        "{} problems:\n{}",
        run.problems.len(),
        run.problems.join("\n")
    );
    assert!(
        run.full.len() >= 10,
        "create, update and delete end to end on at least 10 objects: {:?}",
        run.full
    );
    t.finish().await;
}

/// The spec's top-level objects.
fn stripe_objects() -> Vec<Object> {
    sequin_runtime::registry::get("stripe")
        .expect("stripe is compiled in")
        .spec
        .objects
        .iter()
        .filter(|o| o.parent.is_none())
        .cloned()
        .collect()
}

fn kind_of(obj: &Object) -> Kind {
    Kind::named(&obj.api_name)
        .unwrap_or_else(|| panic!("the simulator serves no `{}`", obj.api_name))
}

/// Whether the spec declares an operation.
fn declares(obj: &Object, op: Op) -> bool {
    let e = &obj.endpoints;
    match op {
        Op::Create => e.create.is_some(),
        Op::Update => e.update.is_some(),
        Op::Delete => e.delete.is_some(),
    }
}

/// Whether Stripe (the simulator, from the reference OpenAPI) has it.
fn stripe_has(kind: Kind, op: Op) -> bool {
    match op {
        Op::Create => kind.can_create(),
        Op::Update => kind.can_update(),
        Op::Delete => kind.can_delete(),
    }
}

/// The test's state: what it found wrong, and the objects it wrote end to
/// end.
struct Run<'a> {
    t: &'a Setup,
    stripe: &'a Stripe,
    /// Ids the test created (never picked as seeded references).
    created: HashSet<String>,
    problems: Vec<String>,
    full: Vec<String>,
    /// Objects created, updated and deleted through the proxy.
    written: [usize; 3],
}

impl Run<'_> {
    fn problem(&mut self, obj: &Object, what: impl std::fmt::Display) {
        self.problems.push(format!("{}: {what}", obj.name));
    }

    /// One object: the spec's operations agree with Stripe's, then each is
    /// run (or refused).
    async fn object(&mut self, obj: &Object) {
        let kind = kind_of(obj);
        for op in Op::ALL {
            let mapped_apart = NOT_MAPPED
                .iter()
                .any(|(o, m, _)| *o == obj.name && *m == op);
            if declares(obj, op) != stripe_has(kind, op) && !mapped_apart {
                self.problem(
                    obj,
                    format!(
                        "the spec {} {op:?}, Stripe {} it",
                        if declares(obj, op) {
                            "declares"
                        } else {
                            "lacks"
                        },
                        if stripe_has(kind, op) { "has" } else { "lacks" }
                    ),
                );
            }
        }
        let writes = Op::ALL.iter().any(|op| declares(obj, *op));
        let case = CASES.iter().find(|c| c.object == obj.name);
        let case = match (writes, case) {
            (true, None) => {
                return self.problem(
                    obj,
                    "has write endpoints but no case in CASES (stripe_objects.rs): add its INSERT values and an UPDATE",
                );
            }
            (false, Some(_)) => return self.problem(obj, "a case for an object without writes"),
            (false, None) => None,
            (true, Some(c)) => Some(c),
        };
        let mut done = Vec::new();
        let target = self.create(obj, kind, case, &mut done).await;
        let Some(target) = target else { return };
        self.update(obj, kind, case, &target, &mut done).await;
        self.delete(obj, kind, &target, &mut done).await;
        for op in &done {
            self.written[*op as usize] += 1;
        }
        if done == Op::ALL {
            self.full.push(obj.name.clone());
        }
    }

    /// The refusal expected for an operation the spec declares.
    fn refusal(case: Option<&Case>, op: Op) -> Option<&'static Refused> {
        case.and_then(|c| c.refused.iter().find(|r| r.op == op))
    }

    /// The INSERT; returns the id the later steps write: the created
    /// record's, or a seeded one's where the object cannot be created
    /// (`None`: no record to write).
    async fn create(
        &mut self,
        obj: &Object,
        kind: Kind,
        case: Option<&Case>,
        done: &mut Vec<Op>,
    ) -> Option<String> {
        let table = format!("stripe.{}", obj.name);
        let before = self.stripe.len(kind);
        let (sql, expected) = match case.filter(|_| declares(obj, Op::Create)) {
            Some(c) => {
                let (columns, values) = self.columns_values(obj, c.insert).await?;
                let sql = format!("insert into {table} ({columns}) values ({values}) returning id");
                (sql, Self::refusal(case, Op::Create).map(expected_refusal))
            }
            None => (
                format!("insert into {table} (id) values ('x_write_through') returning id"),
                Some(("0A000", format!("cannot be {}", Op::Create.verb()))),
            ),
        };
        let result = self.t.proxy.query_one(&sql, &[]).await;
        let id = match (result, expected) {
            (Ok(row), None) => row.get::<_, String>(0),
            (Ok(row), Some((code, _))) => {
                self.problem(
                    obj,
                    format!(
                        "{sql}: expected {code}, created {:?}",
                        row.get::<_, String>(0)
                    ),
                );
                return None;
            }
            (Err(e), None) => {
                self.problem(obj, format!("{sql}: {}", describe(&e)));
                return None;
            }
            (Err(e), Some((code, message))) => {
                self.check_refused(obj, &sql, &e, code, &message);
                self.check_unchanged(obj, kind, before).await;
                return self.seeded(&obj.name).await;
            }
        };
        self.created.insert(id.clone());
        let Some(record) = self.stripe.get(kind, &id) else {
            self.problem(
                obj,
                format!("{sql}: returned {id}, which Stripe does not hold"),
            );
            return None;
        };
        if self.stripe.len(kind) != before + 1 {
            self.problem(obj, "the INSERT made other than one record at Stripe");
        }
        self.row_is_record(obj, &id, &record, "after the INSERT")
            .await;
        if let Some(c) = case {
            let read: Vec<(&str, &str)> = c
                .insert
                .iter()
                .filter(|(column, _)| !c.unread.contains(column))
                .copied()
                .collect();
            self.holds(obj, &id, &read, "the INSERT").await;
        }
        done.push(Op::Create);
        Some(id)
    }

    /// The UPDATE of the target record.
    async fn update(
        &mut self,
        obj: &Object,
        kind: Kind,
        case: Option<&Case>,
        id: &str,
        done: &mut Vec<Op>,
    ) {
        let table = format!("stripe.{}", obj.name);
        let before = self.stripe.get(kind, id);
        let (set, expected) = match (declares(obj, Op::Update), case.and_then(|c| c.update)) {
            (true, Some((column, value))) => (
                (column, value),
                Self::refusal(case, Op::Update).map(expected_refusal),
            ),
            (true, None) => {
                return self.problem(obj, "declares an update but its case has no UPDATE");
            }
            (false, _) => (
                ("id", "id"),
                Some(("0A000", format!("cannot be {}", Op::Update.verb()))),
            ),
        };
        let sql = format!("update {table} set {} = {} where id = $1", set.0, set.1);
        match (self.t.proxy.execute(&sql, &[&id]).await, expected) {
            (Ok(n), None) => {
                if n != 1 {
                    return self.problem(obj, format!("{sql}: {n} rows"));
                }
                let after = self.stripe.get(kind, id);
                if after == before {
                    return self.problem(obj, format!("{sql}: Stripe's record did not change"));
                }
                if let Some(record) = after {
                    self.row_is_record(obj, id, &record, "after the UPDATE")
                        .await;
                }
                self.holds(obj, id, &[set], "the UPDATE").await;
                done.push(Op::Update);
            }
            (Ok(n), Some((code, _))) => {
                self.problem(obj, format!("{sql}: expected {code}, updated {n} rows"))
            }
            (Err(e), None) => self.problem(obj, format!("{sql}: {}", describe(&e))),
            (Err(e), Some((code, message))) => {
                self.check_refused(obj, &sql, &e, code, &message);
                if self.stripe.get(kind, id) != before {
                    self.problem(obj, format!("{sql}: refused, but Stripe's record changed"));
                }
            }
        }
    }

    /// The DELETE of the target record (or its 0A000).
    async fn delete(&mut self, obj: &Object, kind: Kind, id: &str, done: &mut Vec<Op>) {
        let sql = format!("delete from stripe.{} where id = $1", obj.name);
        let before = self.stripe.len(kind);
        let result = self.t.proxy.execute(&sql, &[&id]).await;
        let local = count(
            &self.t.pg,
            &format!(
                "select count(*) from stripe.{} where id = '{}'",
                obj.name,
                id.replace('\'', "''")
            ),
        )
        .await;
        match (result, declares(obj, Op::Delete)) {
            (Ok(1), true) => {
                if self.stripe.get(kind, id).is_some() {
                    self.problem(obj, format!("{sql}: Stripe still holds {id}"));
                } else if local != 0 {
                    self.problem(obj, format!("{sql}: the row is still in Postgres"));
                } else {
                    done.push(Op::Delete);
                }
            }
            (Ok(n), true) => self.problem(obj, format!("{sql}: {n} rows")),
            (Err(e), true) => self.problem(obj, format!("{sql}: {}", describe(&e))),
            (Ok(n), false) => self.problem(obj, format!("{sql}: expected 0A000, {n} rows")),
            (Err(e), false) => {
                let message = format!("cannot be {}", Op::Delete.verb());
                self.check_refused(obj, &sql, &e, "0A000", &message);
                if self.stripe.len(kind) != before || self.stripe.get(kind, id).is_none() {
                    self.problem(obj, format!("{sql}: refused, but Stripe lost the record"));
                }
                if local != 1 {
                    self.problem(obj, format!("{sql}: refused, but the row is gone"));
                }
            }
        }
    }

    /// A refusal follows the contract: the SQLSTATE, `[Stripe]: ` and the
    /// message, the table named.
    fn check_refused(
        &mut self,
        obj: &Object,
        sql: &str,
        e: &tokio_postgres::Error,
        code: &str,
        message: &str,
    ) {
        let Some(db) = e.as_db_error() else {
            return self.problem(obj, format!("{sql}: not an ErrorResponse: {e:?}"));
        };
        let fine = db.code().code() == code
            && db.message().starts_with("[Stripe]: ")
            && db.message().contains(message)
            && db.table() == Some(obj.name.as_str());
        if !fine {
            self.problem(
                obj,
                format!(
                    "{sql}: expected {code} with {message:?}, got {}",
                    describe(e)
                ),
            );
        }
    }

    /// After a refused INSERT: Stripe holds nothing new, no provisional row.
    async fn check_unchanged(&mut self, obj: &Object, kind: Kind, before: usize) {
        if self.stripe.len(kind) != before {
            self.problem(obj, "a refused INSERT left a record at Stripe");
        }
        let pending = count(
            &self.t.pg,
            &format!(
                "select count(*) from stripe.{} where id like '\\_pending\\_%'",
                obj.name
            ),
        )
        .await;
        if pending != 0 {
            self.problem(obj, "a refused INSERT left a row in Postgres");
        }
    }

    /// The row equals Stripe's record, every column of the spec.
    async fn row_is_record(
        &mut self,
        obj: &Object,
        id: &str,
        record: &serde_json::Value,
        when: &str,
    ) {
        let cols = spec_columns("stripe", &obj.name);
        let (equal, row) =
            row_equals(&self.t.pg, "stripe", &obj.name, "id", id, &cols, record).await;
        if !equal {
            let want: Vec<_> = cols
                .iter()
                .map(|c| crate::sync_common::api_value(c, record))
                .collect();
            let diffs: Vec<String> = match row {
                None => vec!["no row".into()],
                Some(row) => cols
                    .iter()
                    .zip(row.iter().zip(&want))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(c, (a, b))| format!("{}: Postgres {a:?}, Stripe {b:?}", c.name))
                    .collect(),
            };
            self.problem(
                obj,
                format!("{when}, the row is not Stripe's record: {diffs:?}"),
            );
        }
    }

    /// The row holds the values written (json: contains them, as Stripe
    /// fills in the rest of a nested object).
    async fn holds(&mut self, obj: &Object, id: &str, set: &[(&str, &str)], what: &str) {
        if set.is_empty() {
            return;
        }
        let mut conds = Vec::new();
        for (column, value) in set {
            let value = self.resolve(value).await.unwrap_or_default();
            let json = obj
                .fields
                .iter()
                .any(|f| f.name == *column && f.ty == FieldType::Json);
            conds.push(if json {
                format!("{column} @> {value}")
            } else {
                format!("{column} = {value}")
            });
        }
        let sql = format!(
            "select count(*) from stripe.{} where id = $1 and {}",
            obj.name,
            conds.join(" and ")
        );
        let n: i64 = match self.t.pg.query_one(&sql, &[&id]).await {
            Ok(r) => r.get(0),
            Err(e) => return self.problem(obj, format!("{sql}: {e:?}")),
        };
        if n != 1 {
            self.problem(
                obj,
                format!("after {what}, the row lacks the values written: {sql}"),
            );
        }
    }

    /// `a, b` and `'x', 1` of an INSERT, placeholders resolved.
    async fn columns_values(
        &mut self,
        obj: &Object,
        insert: &[(&str, &str)],
    ) -> Option<(String, String)> {
        let mut values = Vec::new();
        for (_, v) in insert {
            match self.resolve(v).await {
                Some(v) => values.push(v),
                None => {
                    self.problem(obj, format!("no seeded record for {v}"));
                    return None;
                }
            }
        }
        let columns: Vec<&str> = insert.iter().map(|(c, _)| *c).collect();
        Some((columns.join(", "), values.join(", ")))
    }

    /// A SQL value with its `{table}` / `{table:filter}` placeholders
    /// replaced by seeded ids.
    async fn resolve(&self, value: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let inner = &rest[start + 1..start + len];
            let (table, filter) = inner.split_once(':').unwrap_or((inner, "true"));
            if !table.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                // JSON braces, not a placeholder.
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
            out.push_str(&rest[..start]);
            out.push_str(&self.seeded_where(table, filter).await?);
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// A seeded record of `table` (never one the test created).
    async fn seeded(&self, table: &str) -> Option<String> {
        self.seeded_where(table, "true").await
    }

    async fn seeded_where(&self, table: &str, filter: &str) -> Option<String> {
        let created: Vec<&str> = self.created.iter().map(String::as_str).collect();
        let sql = format!(
            "select id from stripe.{table} where ({filter}) and id <> all($1) order by id limit 1"
        );
        self.t
            .pg
            .query_opt(&sql, &[&created])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .map(|r| r.get(0))
    }
}

/// The SQLSTATE and message piece of an expected refusal.
fn expected_refusal(r: &Refused) -> (&'static str, String) {
    (r.sqlstate, r.message.to_owned())
}

/// An error in one line: SQLSTATE, message, detail, column.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} {} (detail {:?}, column {:?})",
            db.code().code(),
            db.message(),
            db.detail(),
            db.column()
        ),
        None => format!("{e:?}"),
    }
}

/// The tables the refusals write, none of which may change.
const REFUSED_TABLES: [&str; 6] = [
    "product",
    "shipping_rate",
    "invoiceitem",
    "webhook_endpoint",
    "coupon",
    "issuing_cardholder",
];

/// The error contract on these objects: refusals by Stripe and by the local
/// checks, each leaving Stripe and Postgres as they were.
async fn refusals(run: &Run<'_>) {
    let (proxy, stripe, pg) = (&run.t.proxy, run.stripe, &run.t.pg);
    let objects = stripe_objects();
    let kinds = REFUSED_TABLES.map(|t| kind_of(objects.iter().find(|o| o.name == t).unwrap()));
    let counts = || kinds.map(|k| stripe.len(k));
    let before = counts();
    refused_by_stripe(proxy, pg).await;
    refused_locally(proxy).await;
    // Read-only and create-only columns on UPDATE (428C9).
    let coupon: String = pg
        .query_one("select id from stripe.coupon order by id limit 1", &[])
        .await
        .unwrap()
        .get(0);
    let coupons = Kind::named("coupon").unwrap();
    let coupon_before = stripe.get(coupons, &coupon);
    for (column, value) in [("created", "now()"), ("duration", "'forever'")] {
        let sql = format!("update stripe.coupon set {column} = {value} where id = $1");
        let err = expect_err(proxy.execute(&sql, &[&coupon]).await, &sql);
        refused(&err, "coupon", "428C9", Some(column), &[], &[]);
    }
    assert_eq!(
        stripe.get(coupons, &coupon),
        coupon_before,
        "the coupon kept"
    );
    assert_eq!(
        counts(),
        before,
        "Stripe holds nothing new: {REFUSED_TABLES:?}"
    );
    for table in REFUSED_TABLES {
        assert_no_pending_ids(pg, &format!("stripe.{table}"), "id").await;
    }
    let refused_rows = count(
        pg,
        "select (select count(*) from stripe.shipping_rate where display_name = 'Refused') \
              + (select count(*) from stripe.issuing_cardholder where name = 'Refused') \
              + (select count(*) from stripe.product where name = 'Refused')",
    )
    .await;
    assert_eq!(refused_rows, 0, "no refused row in Postgres");
}

/// Writes Stripe refuses: the SQLSTATE its error code maps to, its own
/// message, the column of its parameter, its code and status in the DETAIL.
async fn refused_by_stripe(proxy: &tokio_postgres::Client, pg: &tokio_postgres::Client) {
    // A product that has prices cannot be deleted (archive it instead).
    let product: String = pg
        .query_one(
            "select product from stripe.price where product is not null order by id limit 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let err = expect_err(
        proxy
            .execute("delete from stripe.product where id = $1", &[&product])
            .await,
        "a delete of a product with prices",
    );
    refused(
        &err,
        "product",
        "23514",
        None,
        &["cannot be deleted because it has one or more user-created prices"],
        &["invalid_request_error", "400"],
    );
    let kept = count(
        pg,
        &format!("select count(*) from stripe.product where id = '{product}'"),
    )
    .await;
    assert_eq!(kept, 1, "the refused DELETE keeps the row");
    // A nested object missing a required parameter (23502).
    let err = expect_err(
        proxy
            .execute(
                "insert into stripe.shipping_rate (display_name, type, fixed_amount) \
                 values ('Refused', 'fixed_amount', '{\"amount\": 500}')",
                &[],
            )
            .await,
        "a fixed amount without its currency",
    );
    refused(
        &err,
        "shipping_rate",
        "23502",
        Some("fixed_amount"),
        &["Missing required param: fixed_amount[currency]."],
        &["parameter_missing", "400"],
    );
    // An id of nothing: Stripe's 400 resource_missing (P0002).
    let err = expect_err(
        proxy
            .execute(
                "insert into stripe.invoiceitem (customer, amount, currency) \
                 values ('cus_NoSuchCustomer', 500, 'usd')",
                &[],
            )
            .await,
        "an invoice item of a customer that does not exist",
    );
    refused(
        &err,
        "invoiceitem",
        "P0002",
        Some("customer"),
        &["No such customer: 'cus_NoSuchCustomer'"],
        &["resource_missing", "400", "request id: req_"],
    );
}

/// Local checks, before any request: a required column (23502), an enum
/// (23514), a length (22001), a format (22023), an update-only column
/// (428C9).
async fn refused_locally(proxy: &tokio_postgres::Client) {
    let local: &[(&str, &str, &str, &str)] = &[
        (
            "insert into stripe.webhook_endpoint (enabled_events) values (array['*'])",
            "webhook_endpoint",
            "23502",
            "url",
        ),
        (
            "insert into stripe.coupon (percent_off, duration) values (10, 'sometimes')",
            "coupon",
            "23514",
            "duration",
        ),
        (
            "insert into stripe.coupon (percent_off, name) values (10, repeat('x', 41))",
            "coupon",
            "22001",
            "name",
        ),
        (
            "insert into stripe.issuing_cardholder (name, email, billing) \
             values ('Refused', 'not-an-email', '{}')",
            "issuing_cardholder",
            "22023",
            "email",
        ),
    ];
    for (sql, table, code, column) in local {
        let err = expect_err(proxy.execute(*sql, &[]).await, sql);
        refused(&err, table, code, Some(column), &[], &[]);
    }
    // An update-only column set by an INSERT (428C9, saying so).
    let sql = "insert into stripe.product (name, default_price) values ('Refused', 'price_1')";
    let err = expect_err(proxy.execute(sql, &[]).await, sql);
    refused(
        &err,
        "product",
        "428C9",
        Some("default_price"),
        &["can only be set by an UPDATE"],
        &[],
    );
}

/// Checks a refusal of a write of `stripe.table`.
fn refused(
    err: &tokio_postgres::Error,
    table: &str,
    code: &str,
    column: Option<&str>,
    message_has: &[&str],
    detail_has: &[&str],
) {
    assert_rejection(
        err,
        &Rejection {
            code,
            prefix: "[Stripe]: ",
            schema: "stripe",
            table,
            column,
            message_has,
            detail_has,
        },
    );
}
