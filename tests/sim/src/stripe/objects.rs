//! Creating, updating and deleting objects of any catalogued type: Stripe's template filled with
//! a new id and the request's parameters (metadata merges, nested objects merge, a field the
//! example object leaves out is added when a parameter sets it, parameters the object has no
//! field for are dropped), ids of other objects checked and embedded where Stripe
//! embeds them, `previous_attributes` computed, and the event Stripe emits recorded.
//!
//! The seven core billing objects add their own checks and computed fields (`billing.rs`).

use serde_json::{Map, Value, json};

use super::StripeState;
use super::catalogue::{Change, DATA, Kind};
use super::error::StripeError;
use super::store::{Event, Record};
use crate::common::{SimContext, random_id};

/// Who asked for a change (recorded in the event's `request`).
pub(super) struct Origin {
    pub request_id: String,
    pub idempotency_key: Option<String>,
}

/// Stripe's magic test-mode ids (`pm_card_visa`, `tok_visa`): accepted wherever an id of a
/// payment method or source is, without an object behind them.
fn test_token(id: &str) -> bool {
    ["tok_", "pm_card_", "src_", "btok_"]
        .iter()
        .any(|p| id.starts_with(p))
}

/// Email syntax as Stripe checks it: something@something.tld, no spaces.
pub(super) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !s.contains(char::is_whitespace)
        && !domain.contains('@')
        && domain
            .rsplit_once('.')
            .is_some_and(|(host, tld)| !host.is_empty() && tld.len() >= 2)
}

fn address_shape() -> Value {
    json!({"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null})
}

/// The full shape of a nested object that is `null` in the template, so that setting one key
/// yields an object with every field Stripe returns.
fn shape_for(field: &str) -> Value {
    match field {
        "address" => address_shape(),
        "shipping" | "shipping_details" => {
            json!({"address": address_shape(), "carrier": null, "name": null, "phone": null, "tracking_number": null})
        }
        _ => Value::Object(Map::new()),
    }
}

/// Sets `value` into `target`: objects merge key by key, anything else replaces.
pub(super) fn merge_into(field: &str, target: &mut Value, value: Value) {
    match value {
        Value::Object(m) => {
            if !target.is_object() {
                *target = shape_for(field);
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in m {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                merge_into(&k, slot, v);
            }
        }
        other => *target = other,
    }
}

/// Applies typed parameters to an object: metadata merges (`""` deletes a key, `metadata=`
/// clears), nested objects merge, parameters the object has no field for are accepted and
/// dropped (as Stripe does for e.g. `payment_method` on a customer).
pub(super) fn apply(obj: &mut Map<String, Value>, params: Map<String, Value>) {
    for (k, v) in params {
        if k == "expand" {
            continue;
        }
        if k == "metadata" {
            let md = obj
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            match v {
                Value::Object(m) => {
                    let md = md.as_object_mut().expect("metadata is an object");
                    for (mk, mv) in m {
                        if mv.is_null() {
                            md.remove(&mk);
                        } else {
                            md.insert(mk, mv);
                        }
                    }
                }
                _ => *md = Value::Object(Map::new()),
            }
            continue;
        }
        if let Some(slot) = obj.get_mut(&k) {
            merge_into(&k, slot, v);
        }
    }
}

/// `previous_attributes`: for each changed key the old value; nested objects only list the
/// changed sub-keys (a key that did not exist before shows as null), as in Stripe's events.
pub(super) fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, nv) in new {
        let ov = old.get(k).unwrap_or(&Value::Null);
        if ov == nv {
            continue;
        }
        match (ov, nv) {
            (Value::Object(o), Value::Object(n)) => {
                let mut d = diff(o, n);
                for ok in o.keys() {
                    if !n.contains_key(ok) {
                        d.insert(ok.clone(), o[ok].clone());
                    }
                }
                out.insert(k.clone(), Value::Object(d));
            }
            _ => {
                out.insert(k.clone(), ov.clone());
            }
        }
    }
    out
}

pub(super) fn str_param<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

impl StripeState {
    pub(super) fn new_id(&mut self, kind: Kind) -> String {
        let spec = kind.spec();
        loop {
            let id = random_id(&mut self.rng, &spec.id_prefix, spec.id_len);
            if self.collections[&kind].key_of(&id).is_none() {
                return id;
            }
        }
    }

    pub(super) fn live(&self, kind: Kind, id: &str) -> Option<&Record> {
        self.collections[&kind].get(id)
    }

    pub(super) fn require(
        &self,
        kind: Kind,
        id: &str,
        param: &str,
    ) -> Result<&Record, StripeError> {
        self.live(kind, id)
            .ok_or_else(|| StripeError::no_such(kind, id, param))
    }

    /// The parent named in a nested list's URL: it must exist (404 otherwise). `""` for a
    /// top-level object.
    pub(super) fn require_parent(
        &self,
        kind: Kind,
        parent: Option<&str>,
    ) -> Result<String, StripeError> {
        let Some(parent_kind) = kind.parent() else {
            return Ok(String::new());
        };
        let param = kind.parent_param();
        let id = parent.ok_or_else(|| StripeError::missing_param(param))?;
        if self.live(parent_kind, id).is_none() {
            return Err(StripeError::no_such_parent(parent_kind, id, param));
        }
        Ok(id.to_owned())
    }

    /// A live record addressed by its URL: under `parent` when the URL names one.
    pub(super) fn require_at(
        &self,
        kind: Kind,
        parent: Option<&str>,
        id: &str,
    ) -> Result<&Record, StripeError> {
        if kind.parent().is_some() {
            let parent = self.require_parent(kind, parent)?;
            if self.collections[&kind].parent_of(id) != Some(parent.as_str()) {
                return Err(StripeError::no_such(kind, id, "id"));
            }
        }
        self.require(kind, id, "id")
    }

    /// Creates an object. `parent` names the parent of a nested list's record; `created` is
    /// `None` for API calls (now) and set for seeded history; `origin` is `None` for seeded
    /// history, which has no events (older than the retention).
    pub(super) fn create(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        parent: Option<&str>,
        mut params: Map<String, Value>,
        created: Option<i64>,
        origin: Option<&Origin>,
    ) -> Result<Value, StripeError> {
        let now = created.unwrap_or_else(|| ctx.clock.now_secs());
        let parent = self.require_parent(kind, parent)?;
        let id = self.id_for_create(kind, &mut params)?;
        let mut obj = new_object(kind, &id, now, &parent);
        self.init(ctx, kind, &mut obj, &mut params, now, origin)?;
        self.apply_params(kind, &mut obj, params);
        if kind == Kind::Price
            && let Some(amount) = obj.get("unit_amount").and_then(Value::as_i64)
        {
            obj.insert("unit_amount_decimal".into(), amount.to_string().into());
        }
        let value = Value::Object(obj.clone());
        let c = self
            .collections
            .get_mut(&kind)
            .expect("every kind has a collection");
        c.insert(&parent, now, id.clone(), Record::new(obj));
        if kind == Kind::Subscription {
            self.store_subscription_items(&value);
        }
        self.parent_created(ctx, kind, &id);
        let value = self
            .live(kind, &id)
            .map(|r| Value::Object(r.obj.clone()))
            .unwrap_or(value);
        if let Some(origin) = origin {
            self.record_event(ctx, kind, Change::Created, &value, None, origin);
        }
        self.child_changed(ctx, kind, &value, &parent, origin);
        Ok(value)
    }

    /// The id a create asked for (`id=` where Stripe allows it: products, plans, coupons), else a
    /// new one.
    fn id_for_create(
        &mut self,
        kind: Kind,
        params: &mut Map<String, Value>,
    ) -> Result<String, StripeError> {
        let id = match params.remove("id") {
            Some(Value::String(id)) => id,
            _ => return Ok(self.new_id(kind)),
        };
        if self.collections[&kind].key_of(&id).is_some() {
            let mut name = kind.object().replace(['_', '.'], " ");
            if let Some(first) = name.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            return Err(
                StripeError::invalid("id", format!("{name} already exists."))
                    .with_code("resource_already_exists"),
            );
        }
        Ok(id)
    }

    /// What a create does beyond the template: the core objects' own rules, else the optional
    /// fields not asked for left null and checks that the objects a parameter names exist.
    fn init(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
        origin: Option<&Origin>,
    ) -> Result<(), StripeError> {
        match kind {
            Kind::Customer => self.init_customer(obj, params),
            Kind::Product => self.init_product(ctx, obj, params, now, origin),
            Kind::Price => self.init_price(ctx, obj, params, now, origin),
            Kind::Subscription => self.init_subscription(obj, params, now),
            Kind::Invoice => self.init_invoice(obj, params),
            Kind::PaymentIntent => {
                let id = obj["id"].as_str().unwrap_or_default().to_owned();
                self.init_payment_intent(obj, params, &id)
            }
            Kind::Charge => self.init_charge(obj, params),
            _ => {
                for field in &kind.spec().unset_on_create {
                    if !params.contains_key(field) {
                        obj.insert(field.clone(), Value::Null);
                    }
                }
                self.check_references(params)
            }
        }
    }

    /// `No such charge: 'ch_x'` for a parameter naming a top-level object that does not exist
    /// (`charge` of a refund, `customer` of a tax rate's quote, `coupon` of a promotion code).
    fn check_references(&self, params: &Map<String, Value>) -> Result<(), StripeError> {
        for (name, value) in params {
            let (Some(kind), Some(id)) = (Kind::named(name), value.as_str()) else {
                continue;
            };
            if kind.parent().is_none() && !test_token(id) {
                self.require(kind, id, name)?;
            }
        }
        Ok(())
    }

    /// Applies parameters; a parameter naming an object by id where the object embeds it
    /// (`coupon` of a promotion code, `price` of a subscription item) puts that object there, and
    /// one naming a field the example object leaves out adds that field.
    fn apply_params(
        &self,
        kind: Kind,
        obj: &mut Map<String, Value>,
        mut params: Map<String, Value>,
    ) {
        for field in &kind.spec().absent_fields {
            if params.contains_key(field) && !obj.contains_key(field) {
                obj.insert(field.clone(), Value::Null);
            }
        }
        let mut embedded = Vec::new();
        for (name, value) in &params {
            let Some(id) = value.as_str() else { continue };
            if !obj.get(name).is_some_and(Value::is_object) {
                continue;
            }
            if let Some(record) = Kind::named(name).and_then(|k| self.live(k, id)) {
                embedded.push((name.clone(), Value::Object(record.obj.clone())));
            }
        }
        for (name, _) in &embedded {
            params.remove(name);
        }
        apply(obj, params);
        obj.extend(embedded);
    }

    /// Updates an object addressed by its URL (`parent` for a nested list's record).
    pub(super) fn update(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        parent: Option<&str>,
        id: &str,
        params: Map<String, Value>,
        origin: &Origin,
    ) -> Result<Value, StripeError> {
        let old = self.require_at(kind, parent, id)?.obj.clone();
        self.check_core_update(kind, id, &params)?;
        let mut obj = old.clone();
        self.apply_params(kind, &mut obj, params);
        let previous = diff(&old, &obj);
        if previous.is_empty() {
            return Ok(Value::Object(obj));
        }
        if obj.get("updated").is_some_and(Value::is_i64) {
            obj.insert("updated".into(), ctx.clock.now_secs().into());
        }
        let value = Value::Object(obj.clone());
        self.collections
            .get_mut(&kind)
            .and_then(|c| c.get_mut(id))
            .expect("checked above")
            .set(obj);
        self.record_event(ctx, kind, Change::Updated, &value, Some(previous), origin);
        let parent = self.collections[&kind]
            .parent_of(id)
            .unwrap_or_default()
            .to_owned();
        self.child_changed(ctx, kind, &value, &parent, Some(origin));
        Ok(value)
    }

    /// Deletes an object addressed by its URL; answers Stripe's deleted stub (a subscription is
    /// canceled instead and answered whole).
    pub(super) fn delete(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        parent: Option<&str>,
        id: &str,
        origin: &Origin,
    ) -> Result<Value, StripeError> {
        if kind == Kind::Subscription {
            return self.cancel_subscription(ctx, id, origin);
        }
        let record = self.require_at(kind, parent, id)?;
        self.check_core_delete(kind, id, &record.obj)?;
        let c = self
            .collections
            .get_mut(&kind)
            .expect("every kind has a collection");
        let rec = c.delete(id).expect("checked above");
        let value = Value::Object(rec.obj);
        self.record_event(ctx, kind, Change::Deleted, &value, None, origin);
        let parent = self.collections[&kind]
            .parent_of(id)
            .unwrap_or_default()
            .to_owned();
        self.child_changed(ctx, kind, &value, &parent, Some(origin));
        Ok(json!({"id": id, "object": kind.object(), "deleted": true}))
    }

    pub(super) fn record_event(
        &mut self,
        ctx: &SimContext,
        kind: Kind,
        change: Change,
        object: &Value,
        previous: Option<Map<String, Value>>,
        origin: &Origin,
    ) {
        let Some(event_type) = kind.event_for(change) else {
            return;
        };
        let id = loop {
            let id = random_id(&mut self.rng, "evt_", 24);
            if !self.events.by_id.contains_key(&id) {
                break id;
            }
        };
        let created = ctx.clock.now_secs();
        let mut data = Map::new();
        data.insert("object".into(), object.clone());
        if let Some(p) = previous {
            data.insert("previous_attributes".into(), Value::Object(p));
        }
        let event = json!({
            "api_version": DATA.api_version,
            "created": created,
            "data": data,
            "id": id,
            "livemode": false,
            "object": "event",
            "pending_webhooks": 0,
            "request": {"id": origin.request_id, "idempotency_key": origin.idempotency_key},
            "type": event_type,
        });
        let key = (created, self.events.log.len() as u64);
        self.events.by_id.insert(id, key);
        self.events.log.insert(
            key,
            Event {
                created,
                kind: event_type.to_owned(),
                json: event.to_string(),
            },
        );
    }
}

/// Stripe's template with the fields every new object gets: its id, `created`, test mode, empty
/// metadata and its parent (only those fields the object has).
pub(super) fn new_object(kind: Kind, id: &str, now: i64, parent: &str) -> Map<String, Value> {
    let mut obj = kind.template();
    obj.insert("id".into(), id.into());
    for (field, value) in [
        ("created", Value::from(now)),
        ("livemode", Value::Bool(false)),
        ("metadata", json!({})),
    ] {
        if obj.contains_key(field) {
            obj.insert(field.into(), value);
        }
    }
    if let Some(field) = &kind.spec().parent_field {
        obj.insert(field.clone(), parent.into());
    }
    obj
}
