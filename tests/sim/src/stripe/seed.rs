//! Seeded history: the seven core objects with their relations (`seed_records`: customers, each
//! with a product, a price, a subscription, an invoice, a payment intent and a charge), and N
//! records of any other catalogued object built from Stripe's example object.
//!
//! Seeded history is 40 days old: older than the 30-day event retention, so it has no events.

use serde_json::{Map, Value, json};

use super::catalogue::Kind;
use super::objects::new_object;
use super::store::Record;
use super::{Stripe, StripeState};
use crate::common::{fake_company, fake_person, fake_sentence};

/// Seeded history starts this long ago.
const HISTORY_SECS: i64 = 40 * 24 * 3600;

impl Stripe {
    pub(super) fn seed_all(&self, n: usize) {
        let customers = self.seed_customers(n);
        self.seed_billing(&customers);
    }

    /// Seeds `n` customers as history (40 days old, no events); returns their ids oldest first.
    /// Tests that only page through customers use this instead of the full seed, which also
    /// creates products, prices, subscriptions, invoices, payment intents and charges.
    pub fn seed_customers(&self, n: usize) -> Vec<String> {
        let mut st = self.lock();
        let ctx = &self.ctx;
        // History starts 40 days ago (older than the event retention, so it has no events);
        // four objects share each second so that ties on `created` are exercised.
        let base = ctx.clock.now_secs() - HISTORY_SECS;
        let at = |i: usize| base + (i / 4) as i64;
        let mut customers = Vec::with_capacity(n);
        for i in 0..n {
            let person = fake_person(&mut st.rng, i);
            let params = json!({
                "name": person.full_name(),
                "email": person.email,
                "phone": person.phone,
                "description": format!("Customer at {}", person.company),
                "address": {"city": person.city, "country": person.country,
                            "line1": format!("{} Main Street", i + 1), "postal_code": format!("{:05}", 10000 + i)},
                "metadata": {"seed": i.to_string()},
            });
            let v = st
                .create(ctx, Kind::Customer, None, obj(params), Some(at(i)), None)
                .expect("seed customer");
            customers.push(v["id"].as_str().unwrap_or_default().to_owned());
        }
        customers
    }

    /// One product, price, subscription, invoice, payment intent and charge per customer.
    fn seed_billing(&self, customers: &[String]) {
        let n = customers.len();
        let mut st = self.lock();
        let ctx = &self.ctx;
        let base = ctx.clock.now_secs() - HISTORY_SECS;
        let at = |i: usize| base + (i / 4) as i64;
        let mut prices = Vec::with_capacity(n);
        let mut recurring = Vec::with_capacity(n);
        for i in 0..n {
            let company = fake_company(&mut st.rng);
            let name = format!("{} {}", company, fake_sentence(&mut st.rng, 2));
            let description = fake_sentence(&mut st.rng, 6);
            let product = st
                .create(
                    ctx,
                    Kind::Product,
                    None,
                    obj(json!({"name": name, "description": description})),
                    Some(at(i)),
                    None,
                )
                .expect("seed product");
            let is_recurring = i % 3 != 2;
            let mut params = json!({
                "currency": "usd",
                "product": product["id"],
                "unit_amount": 100 * (1 + i as i64 % 50),
                "nickname": format!("Plan {i}"),
            });
            if is_recurring {
                params["recurring"] =
                    json!({"interval": if i % 2 == 0 { "month" } else { "year" }});
            }
            let price = st
                .create(ctx, Kind::Price, None, obj(params), Some(at(i)), None)
                .expect("seed price");
            let pid = price["id"].as_str().unwrap_or_default().to_owned();
            if is_recurring {
                recurring.push(pid.clone());
            }
            prices.push(pid);
        }
        for i in 0..n {
            let customer = &customers[i];
            if !recurring.is_empty() {
                let price = &recurring[i % recurring.len()];
                st.create(
                    ctx,
                    Kind::Subscription,
                    None,
                    obj(json!({"customer": customer, "items": [{"price": price}]})),
                    Some(at(i)),
                    None,
                )
                .expect("seed subscription");
            }
            let invoice = st
                .create(
                    ctx,
                    Kind::Invoice,
                    None,
                    obj(json!({"customer": customer})),
                    Some(at(i)),
                    None,
                )
                .expect("seed invoice");
            if i % 2 == 1 {
                // Every other invoice is paid: finalized in place (history, no events).
                let id = invoice["id"].as_str().unwrap_or_default().to_owned();
                let number = format!("{}-{:04}", &customer[4..10].to_uppercase(), i);
                let rec = st
                    .collections
                    .get_mut(&Kind::Invoice)
                    .and_then(|c| c.get_mut(&id))
                    .expect("just created");
                let mut o = rec.obj.clone();
                for (k, v) in [
                    ("status", json!("paid")),
                    ("paid", json!(true)),
                    ("number", json!(number)),
                ] {
                    o.insert(k.into(), v);
                }
                rec.set(o);
            }
            st.create(
                ctx,
                Kind::PaymentIntent,
                None,
                obj(json!({"amount": 1000 + i as i64, "currency": "usd", "customer": customer})),
                Some(at(i)),
                None,
            )
            .expect("seed payment intent");
            st.create(
                ctx,
                Kind::Charge,
                None,
                obj(
                    json!({"amount": 500 + i as i64, "currency": "usd", "customer": customer,
                           "description": format!("Charge {i}")}),
                ),
                Some(at(i)),
                None,
            )
            .expect("seed charge");
        }
    }

    /// Seeds `n` records of every catalogued object: the core ones with their relations (as
    /// `seed_records`), every other one topped up to `n` from Stripe's example object (see
    /// [`Stripe::seed_objects`]). Nested lists get `n` records in all, spread over their parents.
    pub fn seed_every_object(&self, n: usize) {
        self.seed_all(n);
        // An object naming another by id (a setup attempt's `setup_intent`, a value list item's
        // `value_list`) is seeded after it, so that its records point at seeded ones.
        let mut pending: Vec<Kind> = Kind::all().filter(|k| !Kind::CORE.contains(k)).collect();
        while !pending.is_empty() {
            let ready: Vec<Kind> = pending
                .iter()
                .copied()
                .filter(|k| {
                    referenced(*k)
                        .iter()
                        .all(|r| r == k || !pending.contains(r))
                })
                .collect();
            // A cycle of references: seed the rest in catalogue order.
            let batch = if ready.is_empty() {
                pending.clone()
            } else {
                ready
            };
            for kind in &batch {
                let have = self.len(*kind);
                if have < n {
                    self.seed_objects(*kind, n - have);
                }
            }
            pending.retain(|k| !batch.contains(k));
        }
    }

    /// Seeds `n` records of one object as history (no events) from Stripe's example object: new
    /// ids, `created` spread from 40 days ago (four records a minute, so ties occur), metadata
    /// `seed=i`, fields naming another object's id pointed at seeded records of it (round robin),
    /// and the records of a nested list spread over the parent's records. Returns their ids,
    /// oldest first; none for a nested list whose parent has no records.
    pub fn seed_objects(&self, kind: Kind, n: usize) -> Vec<String> {
        let mut st = self.lock();
        let base = self.ctx.clock.now_secs() - HISTORY_SECS;
        let parents = kind
            .parent()
            .map(|p| st.collections[&p].ids(None))
            .unwrap_or_else(|| vec![String::new()]);
        if parents.is_empty() {
            return Vec::new();
        }
        let references = st.references(kind);
        let offset = st.collections[&kind].records.len();
        let ids: Vec<String> = (0..n)
            .map(|i| {
                let created = base + ((offset + i) / 4) as i64 * 60;
                let parent = &parents[i % parents.len()];
                let id = st.new_id(kind);
                let mut obj = new_object(kind, &id, created, parent);
                if obj.contains_key("metadata") {
                    obj.insert("metadata".into(), json!({"seed": (offset + i).to_string()}));
                }
                for (field, ids) in &references {
                    obj.insert(field.clone(), ids[i % ids.len()].clone().into());
                }
                let c = st
                    .collections
                    .get_mut(&kind)
                    .expect("every kind has a collection");
                c.insert(parent, created, id.clone(), Record::new(obj));
                id
            })
            .collect();
        // Lists Stripe embeds in a parent show the seeded children.
        st.render_all(&self.ctx, kind);
        ids
    }
}

/// The top-level object a field holding an id is named after: `customer`, or the one object
/// of a namespace whose type ends with it (`value_list` of `radar.value_list`).
fn kind_named_by(field: &str) -> Option<Kind> {
    if let Some(k) = Kind::named(field) {
        return k.parent().is_none().then_some(k);
    }
    let suffix = format!(".{field}");
    let mut matching = Kind::top_level().filter(|k| k.name().ends_with(&suffix));
    let only = matching.next()?;
    matching.next().is_none().then_some(only)
}

/// The objects `kind`'s records need first: its parent (a nested list), and the top-level
/// objects whose ids its example object holds in fields named after them.
fn referenced(kind: Kind) -> Vec<Kind> {
    kind.spec()
        .template
        .iter()
        .filter(|(_, v)| v.is_string())
        .filter_map(|(field, _)| kind_named_by(field))
        .chain(kind.parent())
        .collect()
}

impl StripeState {
    /// The template's fields that hold the id of another top-level object (`customer`, `charge`)
    /// with the live ids of that object, for fields whose object has records; not the field
    /// naming a nested record's parent, which its parent sets.
    fn references(&self, kind: Kind) -> Vec<(String, Vec<String>)> {
        let parent_field = kind.spec().parent_field.as_deref();
        kind.spec()
            .template
            .iter()
            .filter(|(field, v)| v.is_string() && Some(field.as_str()) != parent_field)
            .filter_map(|(field, _)| {
                let target = kind_named_by(field)?;
                let ids = self.collections[&target].ids(None);
                (!ids.is_empty()).then(|| (field.clone(), ids))
            })
            .collect()
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
