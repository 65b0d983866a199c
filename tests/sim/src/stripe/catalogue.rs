//! The object catalogue: what `data/stripe.json` says about every object the simulator serves
//! (paths, id shape, operations and their parameters, list filters, events, template), and
//! [`Kind`], the handle naming one of them.
//!
//! Nothing here is written per object: `data/extract_stripe.py` derives it all from Stripe's
//! OpenAPI description and example objects.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Everything extracted from Stripe's spec and fixtures.
#[derive(Deserialize)]
pub(super) struct StripeData {
    pub api_version: String,
    /// The events log's operations, by `"METHOD /path"`.
    pub ops: HashMap<String, OpSpec>,
    /// Top-level objects first, then nested lists (each after its parent).
    pub objects: Vec<ObjectSpec>,
    /// List endpoints not served, with why.
    pub left_out: BTreeMap<String, String>,
}

/// One served object type.
#[derive(Deserialize)]
pub(super) struct ObjectSpec {
    /// Catalogue name: the object type for top-level lists (`issuing.card`), `<parent>.<list>`
    /// for nested ones (`invoice.lines`).
    pub name: String,
    /// The `object` field.
    pub object: String,
    /// The list path as the spec writes it, `/v1/customers/{customer}/tax_ids`.
    pub collection: String,
    pub parent: Option<String>,
    /// The parent's path parameter in the spec (`customer`), the `param` of a missing parent.
    pub parent_param: Option<String>,
    /// The field of a nested record naming its parent (`customer` of a tax id), if it has one.
    pub parent_field: Option<String>,
    pub id_prefix: String,
    pub id_len: usize,
    pub ops: Ops,
    pub filters: Filters,
    pub events: EventTypes,
    /// Nullable fields a create sets from a same-named optional parameter: null when the
    /// parameter is not given (rather than the example object's value).
    pub unset_on_create: Vec<String>,
    /// Fields of the object's schema that the example object leaves out (optional ones Stripe
    /// returns once set, such as a terminal configuration's `tipping`): a write naming one sets
    /// it, where a parameter the object has no field for is dropped.
    pub absent_fields: Vec<String>,
    /// Stripe's example object: every field a new object of this type has.
    pub template: Map<String, Value>,
}

/// The operations Stripe has for an object; `None` where the API has no such call.
#[derive(Deserialize)]
pub(super) struct Ops {
    pub list: OpSpec,
    pub create: Option<OpSpec>,
    pub retrieve: Option<OpSpec>,
    pub update: Option<OpSpec>,
    pub delete: Option<OpSpec>,
}

#[derive(Deserialize)]
pub(super) struct OpSpec {
    pub query: Node,
    pub body: Option<Node>,
}

/// How a list's query parameters (besides paging, `expand` and `created`) select records.
#[derive(Deserialize)]
pub(super) struct Filters {
    /// `?status=open`: the same-named field equals the value (or, for an embedded object, its id).
    pub equal: Vec<String>,
    /// `?arrival_date[gte]=..`: the same-named timestamp field is within the range.
    pub range: Vec<String>,
    /// `?ids[]=..`: the named field (`id`) is one of the values.
    pub within: BTreeMap<String, String>,
    /// Accepted as Stripe accepts them, not applied: no field of the object says what they mean.
    #[allow(dead_code)]
    pub ignored: Vec<String>,
}

/// The event type Stripe emits for each change, `None` where it emits none.
#[derive(Deserialize)]
pub(super) struct EventTypes {
    pub created: Option<String>,
    pub updated: Option<String>,
    pub deleted: Option<String>,
}

/// One parameter's schema, compacted from the OpenAPI description (see `extract_stripe.py`).
#[derive(Deserialize)]
pub(super) struct Node {
    pub t: String,
    #[serde(default)]
    pub p: Map<String, Value>,
    #[serde(default)]
    pub r: Vec<String>,
    pub i: Option<Box<Node>>,
    #[serde(default)]
    pub e: Vec<String>,
    pub max: Option<usize>,
    #[serde(default)]
    pub empty: bool,
    #[serde(default)]
    pub of: Vec<Node>,
}

pub(super) static DATA: LazyLock<StripeData> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../data/stripe.json")).expect("data/stripe.json is valid")
});

/// Catalogue position by name.
static INDEX: LazyLock<HashMap<&'static str, usize>> = LazyLock::new(|| {
    let data: &'static StripeData = &DATA;
    data.objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.name.as_str(), i))
        .collect()
});

/// An operation of the events log.
pub(super) fn event_op(key: &str) -> &'static OpSpec {
    DATA.ops
        .get(key)
        .unwrap_or_else(|| panic!("no operation {key} in data/stripe.json"))
}

/// A change to an object, as its event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Created,
    Updated,
    Deleted,
}

/// One object type served under `/v1`, by its catalogue name: the object type for top-level
/// lists (`Kind::named("refund")`, `Kind::named("issuing.card")`), `<parent>.<list>` for nested
/// ones (`Kind::named("invoice.lines")`, `Kind::named("customer.tax_ids")`).
///
/// The constants name the seven objects the default seed creates with their relations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(&'static str);

#[allow(non_upper_case_globals)]
impl Kind {
    pub const Customer: Kind = Kind("customer");
    pub const Product: Kind = Kind("product");
    pub const Price: Kind = Kind("price");
    pub const Subscription: Kind = Kind("subscription");
    pub const Invoice: Kind = Kind("invoice");
    pub const PaymentIntent: Kind = Kind("payment_intent");
    pub const Charge: Kind = Kind("charge");

    /// The objects `seed_records` seeds (customers with their billing), in seeding order.
    pub const CORE: [Kind; 7] = [
        Kind::Customer,
        Kind::Product,
        Kind::Price,
        Kind::Subscription,
        Kind::Invoice,
        Kind::PaymentIntent,
        Kind::Charge,
    ];

    /// The object of that catalogue name, if it is served.
    pub fn named(name: &str) -> Option<Kind> {
        INDEX.get_key_value(name).map(|(name, _)| Kind(name))
    }

    /// Every served object, top-level ones first, each nested list after its parent.
    pub fn all() -> impl Iterator<Item = Kind> {
        DATA.objects.iter().map(|o| Kind(o.name.as_str()))
    }

    /// Every object with a list of its own under `/v1` (not nested under another object).
    pub fn top_level() -> impl Iterator<Item = Kind> {
        Kind::all().filter(|k| k.parent().is_none())
    }

    /// List endpoints of Stripe's spec that are not served, with why.
    pub fn left_out() -> &'static BTreeMap<String, String> {
        &DATA.left_out
    }

    pub(super) fn spec(self) -> &'static ObjectSpec {
        let i = INDEX
            .get(self.0)
            .unwrap_or_else(|| panic!("no object {} in data/stripe.json", self.0));
        &DATA.objects[*i]
    }

    /// The catalogue name.
    pub fn name(self) -> &'static str {
        self.0
    }

    /// The `object` field.
    pub fn object(self) -> &'static str {
        &self.spec().object
    }

    /// The list path after `/v1/`, as the spec writes it: `customers`,
    /// `customers/{customer}/tax_ids`.
    pub fn collection(self) -> &'static str {
        self.path()
            .strip_prefix("/v1/")
            .expect("list paths start with /v1/")
    }

    /// The list path as the spec writes it: `/v1/customers/{customer}/tax_ids`.
    pub fn path(self) -> &'static str {
        &self.spec().collection
    }

    /// The list's URL for records under `parent` (ignored for a top-level object).
    pub fn list_url(self, parent: Option<&str>) -> String {
        match (self.parent(), parent) {
            (Some(p), Some(id)) => format!("{}/{id}/{}", p.path(), self.segment()),
            _ => self.path().to_owned(),
        }
    }

    /// The last segment of the list path (`tax_ids`).
    pub(super) fn segment(self) -> &'static str {
        self.path().rsplit('/').next().unwrap_or_default()
    }

    /// The object whose records a nested list belongs to.
    pub fn parent(self) -> Option<Kind> {
        self.spec().parent.as_deref().map(|p| {
            Kind::named(p).unwrap_or_else(|| panic!("parent {p} of {} is catalogued", self.0))
        })
    }

    pub fn can_create(self) -> bool {
        self.spec().ops.create.is_some()
    }

    pub fn can_retrieve(self) -> bool {
        self.spec().ops.retrieve.is_some()
    }

    pub fn can_update(self) -> bool {
        self.spec().ops.update.is_some()
    }

    pub fn can_delete(self) -> bool {
        self.spec().ops.delete.is_some()
    }

    /// The event type Stripe emits for a change, if it emits one at all.
    pub fn event_type(self, change: &str) -> Option<&'static str> {
        let e = &self.spec().events;
        match change {
            "created" => e.created.as_deref(),
            "updated" => e.updated.as_deref(),
            "deleted" => e.deleted.as_deref(),
            _ => None,
        }
    }

    pub(super) fn event_for(self, change: Change) -> Option<&'static str> {
        self.event_type(match change {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Deleted => "deleted",
        })
    }

    /// The resource of a restricted key's permissions (`rak_<resource>_read`/`_write`): the
    /// object type with dots as underscores; Stripe files prices under `plan` ("Prices Read"
    /// is `plan_read`), and a nested list under its parent's.
    pub fn permission_resource(self) -> String {
        if let Some(parent) = self.parent() {
            return parent.permission_resource();
        }
        match self.object() {
            "price" => "plan".to_owned(),
            other => other.replace('.', "_"),
        }
    }

    /// The parent's path parameter as the spec names it (`customer`), for errors.
    pub(super) fn parent_param(self) -> &'static str {
        self.spec().parent_param.as_deref().unwrap_or("id")
    }

    pub(super) fn list_op(self) -> &'static OpSpec {
        &self.spec().ops.list
    }

    pub(super) fn template(self) -> Map<String, Value> {
        self.spec().template.clone()
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.0)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
