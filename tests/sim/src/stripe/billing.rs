//! What creating one of the seven core billing objects does beyond filling Stripe's template
//! (customers, products, prices, subscriptions, invoices, payment intents, charges): their
//! checks, the fields Stripe computes and the objects created along with them (a product's
//! default price, a price's product, a subscription's items).

use rand::Rng;
use serde_json::{Map, Value, json};

use super::StripeState;
use super::catalogue::{Change, Kind};
use super::error::StripeError;
use super::objects::{Origin, merge_into, str_param, valid_email};
use super::store::Record;
use crate::common::{SimContext, random_id};

impl StripeState {
    pub(super) fn init_customer(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        if let Some(email) = str_param(params, "email")
            && !valid_email(email)
        {
            return Err(
                StripeError::invalid("email", format!("Invalid email address: {email}"))
                    .with_code("email_invalid"),
            );
        }
        let prefix: String = (0..8)
            .map(|_| b"0123456789ABCDEF"[self.rng.random_range(0..16)] as char)
            .collect();
        obj.insert("invoice_prefix".into(), prefix.into());
        // A new customer has no currency until it is first charged.
        obj.insert("currency".into(), Value::Null);
        Ok(())
    }

    pub(super) fn init_product(
        &mut self,
        ctx: &SimContext,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
        origin: Option<&Origin>,
    ) -> Result<(), StripeError> {
        obj.insert("updated".into(), now.into());
        obj.insert("default_price".into(), Value::Null);
        obj.insert("description".into(), Value::Null);
        if let Some(Value::Array(features)) = params.remove("features") {
            obj.insert("features".into(), Value::Array(features));
        }
        if let Some(Value::Object(price)) = params.remove("default_price_data") {
            // Created after the product exists: remember it and create it right away below.
            let id = obj["id"].as_str().expect("id set").to_owned();
            let mut price_params = price;
            price_params.insert("product".into(), id.clone().into());
            // Insert the product first so the price can reference it.
            let c = self.collections.get_mut(&Kind::Product).expect("exists");
            c.insert("", now, id.clone(), Record::new(obj.clone()));
            let price = self.create(ctx, Kind::Price, None, price_params, Some(now), origin);
            let c = self.collections.get_mut(&Kind::Product).expect("exists");
            c.forget(&id);
            obj.insert("default_price".into(), price?["id"].clone());
        }
        Ok(())
    }

    pub(super) fn init_price(
        &mut self,
        ctx: &SimContext,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
        origin: Option<&Origin>,
    ) -> Result<(), StripeError> {
        let product = str_param(params, "product").map(str::to_owned);
        match (product, params.remove("product_data")) {
            (Some(product), _) => {
                self.require(Kind::Product, &product, "product")?;
            }
            (None, Some(Value::Object(data))) => {
                let product = self.create(ctx, Kind::Product, None, data, Some(now), origin)?;
                params.insert("product".into(), product["id"].clone());
            }
            _ => {
                return Err(StripeError::invalid(
                    "product",
                    "You must specify either `product` or `product_data` when creating a price.",
                )
                .with_code("parameter_missing"));
            }
        }
        for (k, v) in [
            ("nickname", Value::Null),
            ("lookup_key", Value::Null),
            ("unit_amount", Value::Null),
            ("unit_amount_decimal", Value::Null),
        ] {
            obj.insert(k.into(), v);
        }
        match params.remove("recurring") {
            Some(Value::Object(r)) => {
                let mut recurring = json!({"aggregate_usage": null, "interval": "month", "interval_count": 1, "usage_type": "licensed"});
                merge_into("recurring", &mut recurring, Value::Object(r));
                obj.insert("recurring".into(), recurring);
                obj.insert("type".into(), "recurring".into());
            }
            _ => {
                obj.insert("recurring".into(), Value::Null);
                obj.insert("type".into(), "one_time".into());
            }
        }
        if let Some(Value::String(d)) = params.remove("unit_amount_decimal") {
            obj.insert("unit_amount_decimal".into(), d.clone().into());
            if let Ok(n) = d.parse::<f64>() {
                obj.insert("unit_amount".into(), (n.round() as i64).into());
            }
        }
        Ok(())
    }

    pub(super) fn init_subscription(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &mut Map<String, Value>,
        now: i64,
    ) -> Result<(), StripeError> {
        let customer = str_param(params, "customer").expect("required by the spec");
        self.require(Kind::Customer, customer, "customer")?;
        let id = obj["id"].as_str().expect("id set").to_owned();
        let mut items = Vec::new();
        let mut currency = Value::String("usd".into());
        if let Some(Value::Array(requested)) = params.remove("items") {
            for (i, item) in requested.into_iter().enumerate() {
                let Some(price_id) = item.get("price").and_then(Value::as_str) else {
                    return Err(StripeError::missing_param(&format!("items[{i}][price]")));
                };
                let price = self
                    .require(Kind::Price, price_id, &format!("items[{i}][price]"))?
                    .obj
                    .clone();
                if price.get("type").and_then(Value::as_str) != Some("recurring") {
                    return Err(StripeError::invalid(
                        format!("items[{i}][price]"),
                        "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                    ));
                }
                currency = price["currency"].clone();
                let mut si = Kind::named("subscription_item")
                    .expect("subscription items are catalogued")
                    .template();
                si.insert("id".into(), random_id(&mut self.rng, "si_", 14).into());
                si.insert("created".into(), now.into());
                si.insert("metadata".into(), json!({}));
                si.insert("price".into(), Value::Object(price));
                si.insert(
                    "quantity".into(),
                    item.get("quantity").cloned().unwrap_or(1.into()),
                );
                si.insert("subscription".into(), id.clone().into());
                if let Some(plan) = si.get_mut("plan") {
                    // The legacy `plan` mirrors the price; keep its id consistent.
                    if let Some(p) = plan.as_object_mut() {
                        p.insert("id".into(), price_id.into());
                    }
                }
                items.push(Value::Object(si));
            }
        }
        obj.insert(
            "items".into(),
            json!({"object": "list", "data": items, "has_more": false,
                   "url": format!("/v1/subscription_items?subscription={id}")}),
        );
        obj.insert("currency".into(), currency);
        let month = 30 * 24 * 3600;
        for (k, v) in [
            ("billing_cycle_anchor", now.into()),
            ("start_date", now.into()),
            ("current_period_start", now.into()),
            ("current_period_end", (now + month).into()),
            ("cancel_at", Value::Null),
            ("canceled_at", Value::Null),
            ("ended_at", Value::Null),
            ("trial_start", Value::Null),
            ("trial_end", Value::Null),
            ("next_pending_invoice_item_invoice", Value::Null),
            ("status", "active".into()),
        ] {
            obj.insert(k.into(), v);
        }
        Ok(())
    }

    pub(super) fn init_invoice(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        let Some(customer_id) = str_param(params, "customer") else {
            return Err(StripeError::missing_param("customer"));
        };
        let customer = self
            .require(Kind::Customer, customer_id, "customer")?
            .obj
            .clone();
        let id = obj["id"].as_str().expect("id set").to_owned();
        for (k, v) in [
            ("status", "draft".into()),
            ("number", Value::Null),
            ("paid", false.into()),
            ("amount_due", 0.into()),
            ("amount_paid", 0.into()),
            ("amount_remaining", 0.into()),
            ("subtotal", 0.into()),
            ("total", 0.into()),
            ("customer_email", customer["email"].clone()),
            ("customer_name", customer["name"].clone()),
            ("customer_phone", customer["phone"].clone()),
            ("customer_address", customer["address"].clone()),
            ("customer_shipping", customer["shipping"].clone()),
            ("subscription", Value::Null),
            ("hosted_invoice_url", Value::Null),
            ("invoice_pdf", Value::Null),
            (
                "lines",
                json!({"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")}),
            ),
        ] {
            obj.insert(k.into(), v);
        }
        Ok(())
    }

    pub(super) fn init_payment_intent(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
        id: &str,
    ) -> Result<(), StripeError> {
        if let Some(c) = str_param(params, "customer") {
            self.require(Kind::Customer, c, "customer")?;
        }
        let secret = random_id(&mut self.rng, "", 25);
        for (k, v) in [
            ("client_secret", format!("{id}_secret_{secret}").into()),
            ("status", "requires_payment_method".into()),
            ("canceled_at", Value::Null),
            ("amount_received", 0.into()),
            ("latest_charge", Value::Null),
        ] {
            obj.insert(k.into(), v);
        }
        Ok(())
    }

    pub(super) fn init_charge(
        &mut self,
        obj: &mut Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        for p in ["amount", "currency"] {
            if !params.contains_key(p) {
                return Err(StripeError::missing_param(p));
            }
        }
        if let Some(c) = str_param(params, "customer") {
            self.require(Kind::Customer, c, "customer")?;
        }
        let txn = random_id(&mut self.rng, "txn_", 24);
        obj.insert("amount_captured".into(), params["amount"].clone());
        obj.insert("balance_transaction".into(), txn.into());
        obj.insert("status".into(), "succeeded".into());
        obj.insert("paid".into(), true.into());
        obj.insert("captured".into(), true.into());
        obj.insert("payment_intent".into(), Value::Null);
        obj.insert("invoice".into(), Value::Null);
        obj.insert("description".into(), Value::Null);
        Ok(())
    }

    /// The checks Stripe makes on an update of a core object before applying it.
    pub(super) fn check_core_update(
        &self,
        kind: Kind,
        id: &str,
        params: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        if kind == Kind::Customer
            && let Some(email) = str_param(params, "email")
            && !valid_email(email)
        {
            return Err(
                StripeError::invalid("email", format!("Invalid email address: {email}"))
                    .with_code("email_invalid"),
            );
        }
        if kind == Kind::Product
            && let Some(p) = str_param(params, "default_price")
        {
            let price = self.require(Kind::Price, p, "default_price")?;
            if price.obj.get("product").and_then(Value::as_str) != Some(id) {
                return Err(StripeError::invalid(
                    "default_price",
                    format!("The price `{p}` does not belong to this product."),
                ));
            }
        }
        Ok(())
    }

    /// The checks Stripe makes before deleting a draft-only invoice or a product.
    pub(super) fn check_core_delete(
        &self,
        kind: Kind,
        id: &str,
        obj: &Map<String, Value>,
    ) -> Result<(), StripeError> {
        if kind == Kind::Invoice && obj["status"] != "draft" {
            return Err(StripeError::invalid(
                "invoice",
                "You can only delete draft invoices.",
            ));
        }
        if kind == Kind::Product
            && self.collections[&Kind::Price]
                .records
                .values()
                .any(|p| p.obj.get("product").and_then(Value::as_str) == Some(id))
        {
            return Err(StripeError::invalid(
                "product",
                "This product cannot be deleted because it has one or more user-created prices.",
            ));
        }
        Ok(())
    }

    /// Deleting a subscription cancels it; it stays listable with status=canceled.
    pub(super) fn cancel_subscription(
        &mut self,
        ctx: &SimContext,
        id: &str,
        origin: &Origin,
    ) -> Result<Value, StripeError> {
        let kind = Kind::Subscription;
        let old = self.require(kind, id, "id")?.obj.clone();
        let now = ctx.clock.now_secs();
        let mut obj = old.clone();
        if obj["status"] == "canceled" {
            return Err(
                StripeError::invalid("id", format!("No such subscription: '{id}'"))
                    .with_code("resource_missing"),
            );
        }
        obj.insert("status".into(), "canceled".into());
        obj.insert("canceled_at".into(), now.into());
        obj.insert("ended_at".into(), now.into());
        let value = Value::Object(obj.clone());
        self.collections
            .get_mut(&kind)
            .and_then(|c| c.get_mut(id))
            .expect("checked above")
            .set(obj);
        self.record_event(ctx, kind, Change::Deleted, &value, None, origin);
        Ok(value)
    }

    /// A new subscription's items are subscription items of their own (listed by
    /// `GET /v1/subscription_items?subscription=`), as in Stripe; their creation has no event.
    pub(super) fn store_subscription_items(&mut self, subscription: &Value) {
        let kind = Kind::named("subscription_item").expect("subscription items are catalogued");
        let items = subscription["items"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let c = self
            .collections
            .get_mut(&kind)
            .expect("every kind has a collection");
        for item in items {
            if let Value::Object(obj) = item {
                let id = obj["id"].as_str().unwrap_or_default().to_owned();
                let created = obj.get("created").and_then(Value::as_i64).unwrap_or(0);
                c.insert("", created, id, Record::new(obj));
            }
        }
    }
}
