//! Associations (v4): the links between records, each with one or more association types
//! (`{category, typeId}`, a type optionally labelled), always in both directions (a contact's
//! link to a company is the company's link to the contact, under the inverse type). HubSpot's
//! own types for the standard pairs (its "association type IDs" table: contact to company 279
//! unlabeled and 1 Primary, deal to contact 3, ...), user-defined labels created per pair, and a
//! custom object's types from its schema. Archiving a record drops its links. A link changed
//! touches neither record: `hs_lastmodifieddate` stays, as at HubSpot, so a search on it never
//! finds association changes. Shapes as `shared/reference/hubspot/v4-associations.json` and
//! `v4-associations-schema.json`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::objects::ObjectType;
use super::store::{HsError, Portal};

/// Who defined an association type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    HubspotDefined,
    UserDefined,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::HubspotDefined => "HUBSPOT_DEFINED",
            Category::UserDefined => "USER_DEFINED",
        }
    }

    fn parse(text: &str) -> Result<Category, HsError> {
        match text {
            "HUBSPOT_DEFINED" => Ok(Category::HubspotDefined),
            "USER_DEFINED" => Ok(Category::UserDefined),
            other => Err(HsError::validation(format!(
                "Unknown association category {other}"
            ))),
        }
    }
}

/// An association type as requests name it: `(associationCategory, associationTypeId)`.
pub type TypeKey = (Category, u32);

/// A record's links to one object type: the linked ids and each one's types.
type Linked = BTreeMap<u64, BTreeSet<TypeKey>>;

/// One association type of a pair, from one side.
#[derive(Debug, Clone, PartialEq)]
pub struct AssociationType {
    pub category: Category,
    pub type_id: u32,
    /// The type of the other direction.
    pub inverse: u32,
    /// `None`: the pair's unlabeled (default) type.
    pub label: Option<String>,
}

/// HubSpot's types of the standard pairs: `(from, to, type, inverse type, label)`; the first
/// type of a pair is its default (unlabeled) one.
const STANDARD_TYPES: &[(ObjectType, ObjectType, u32, u32, Option<&str>)] = &[
    (ObjectType::Contacts, ObjectType::Companies, 279, 280, None),
    (
        ObjectType::Contacts,
        ObjectType::Companies,
        1,
        2,
        Some("Primary"),
    ),
    (ObjectType::Deals, ObjectType::Contacts, 3, 4, None),
    (ObjectType::Deals, ObjectType::Companies, 341, 342, None),
    (
        ObjectType::Deals,
        ObjectType::Companies,
        5,
        6,
        Some("Primary"),
    ),
    (ObjectType::Tickets, ObjectType::Contacts, 16, 15, None),
    (ObjectType::Tickets, ObjectType::Companies, 339, 340, None),
    (ObjectType::Tickets, ObjectType::Deals, 28, 27, None),
    (ObjectType::LineItems, ObjectType::Deals, 20, 19, None),
    (ObjectType::Quotes, ObjectType::Deals, 64, 63, None),
    (ObjectType::Quotes, ObjectType::LineItems, 67, 68, None),
    (ObjectType::Calls, ObjectType::Contacts, 194, 193, None),
    (ObjectType::Calls, ObjectType::Companies, 182, 181, None),
    (ObjectType::Calls, ObjectType::Deals, 206, 205, None),
    (ObjectType::Emails, ObjectType::Contacts, 198, 197, None),
    (ObjectType::Emails, ObjectType::Companies, 186, 185, None),
    (ObjectType::Meetings, ObjectType::Contacts, 200, 199, None),
    (ObjectType::Meetings, ObjectType::Companies, 188, 187, None),
    (ObjectType::Notes, ObjectType::Contacts, 202, 201, None),
    (ObjectType::Notes, ObjectType::Companies, 190, 189, None),
    (ObjectType::Notes, ObjectType::Deals, 214, 213, None),
    (ObjectType::Tasks, ObjectType::Contacts, 204, 203, None),
    (ObjectType::Tasks, ObjectType::Companies, 192, 191, None),
];

/// The association types and links of a portal.
pub struct Associations {
    /// Types by ordered pair.
    types: BTreeMap<(ObjectType, ObjectType), Vec<AssociationType>>,
    /// Links by `(from type, from id, to type)`: the linked ids and each one's types (as seen
    /// from `from`).
    links: BTreeMap<(ObjectType, u64, ObjectType), Linked>,
    next_user_type: u32,
}

impl Default for Associations {
    fn default() -> Self {
        Self::new()
    }
}

impl Associations {
    pub fn new() -> Associations {
        let mut a = Associations {
            types: BTreeMap::new(),
            links: BTreeMap::new(),
            next_user_type: 1000,
        };
        for (from, to, id, inverse, label) in STANDARD_TYPES {
            a.define(*from, *to, Category::HubspotDefined, *id, *inverse, *label);
        }
        a
    }

    /// Defines a type of `from`→`to` and its inverse.
    pub fn define(
        &mut self,
        from: ObjectType,
        to: ObjectType,
        category: Category,
        type_id: u32,
        inverse: u32,
        label: Option<&str>,
    ) {
        let mut add = |f, t, id, inv| {
            self.types.entry((f, t)).or_default().push(AssociationType {
                category,
                type_id: id,
                inverse: inv,
                label: label.map(str::to_owned),
            });
        };
        add(from, to, type_id, inverse);
        if from != to || type_id != inverse {
            add(to, from, inverse, type_id);
        }
    }

    /// The types of `from`→`to` (empty when the pair cannot be associated).
    pub fn types(&self, from: ObjectType, to: ObjectType) -> &[AssociationType] {
        self.types.get(&(from, to)).map_or(&[], Vec::as_slice)
    }

    fn find(
        &self,
        from: ObjectType,
        to: ObjectType,
        category: Category,
        id: u32,
    ) -> Option<&AssociationType> {
        self.types(from, to)
            .iter()
            .find(|t| t.category == category && t.type_id == id)
    }

    /// Links `from_id` to `to_id` with a type of the pair (and the inverse the other way).
    pub fn link(
        &mut self,
        (from, from_id): (ObjectType, u64),
        (to, to_id): (ObjectType, u64),
        category: Category,
        type_id: u32,
    ) -> Result<(), HsError> {
        let t = self
            .find(from, to, category, type_id)
            .cloned()
            .ok_or_else(|| {
                HsError::validation(format!(
                    "{}/{type_id} is not an association type from {} to {}",
                    category.name(),
                    from.type_id(),
                    to.type_id()
                ))
            })?;
        self.links
            .entry((from, from_id, to))
            .or_default()
            .entry(to_id)
            .or_default()
            .insert((category, type_id));
        self.links
            .entry((to, to_id, from))
            .or_default()
            .entry(from_id)
            .or_default()
            .insert((category, t.inverse));
        Ok(())
    }

    /// Removes some types of a link (all of them with `None`), both ways.
    pub fn unlink(
        &mut self,
        (from, from_id): (ObjectType, u64),
        (to, to_id): (ObjectType, u64),
        only: Option<&[TypeKey]>,
    ) {
        let inverse_of = |c: Category, id: u32| self.find(from, to, c, id).map(|t| (c, t.inverse));
        let inverse: Option<Vec<TypeKey>> =
            only.map(|o| o.iter().filter_map(|(c, id)| inverse_of(*c, *id)).collect());
        let mut drop =
            |key: (ObjectType, u64, ObjectType), other: u64, which: Option<&[TypeKey]>| {
                if let Some(linked) = self.links.get_mut(&key) {
                    if let Some(types) = linked.get_mut(&other) {
                        match which {
                            None => types.clear(),
                            Some(which) => which.iter().for_each(|t| {
                                types.remove(t);
                            }),
                        }
                        if types.is_empty() {
                            linked.remove(&other);
                        }
                    }
                    if linked.is_empty() {
                        self.links.remove(&key);
                    }
                }
            };
        drop((from, from_id, to), to_id, only);
        drop((to, to_id, from), from_id, inverse.as_deref());
    }

    /// Drops every link of an archived record.
    pub fn forget(&mut self, object_type: ObjectType, id: u64) {
        let keys: Vec<_> = self
            .links
            .range((object_type, id, ObjectType::Contacts)..)
            .take_while(|((t, i, _), _)| *t == object_type && *i == id)
            .map(|(k, linked)| (k.2, linked.keys().copied().collect::<Vec<_>>()))
            .collect();
        for (to, others) in keys {
            for other in others {
                self.unlink((object_type, id), (to, other), None);
            }
        }
    }

    /// The records `from_id` is linked to in `to`, with their types, by ascending id.
    pub fn linked(
        &self,
        from: ObjectType,
        from_id: u64,
        to: ObjectType,
    ) -> Vec<(u64, Vec<TypeKey>)> {
        self.links
            .get(&(from, from_id, to))
            .map(|linked| {
                linked
                    .iter()
                    .map(|(id, types)| (*id, types.iter().copied().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `AssociationSpecWithLabel` of a type of `from`→`to`.
    pub fn spec_json(&self, from: ObjectType, to: ObjectType, (category, id): TypeKey) -> Value {
        let mut spec = json!({"category": category.name(), "typeId": id});
        // An unlabeled type has no label member (not a null one).
        if let Some(label) = self
            .find(from, to, category, id)
            .and_then(|t| t.label.clone())
        {
            spec["label"] = json!(label);
        }
        spec
    }

    /// Makes two object types associable (a custom object's `associatedObjects`): a
    /// user-defined, unlabeled type each way; returns `(from→to, to→from)`.
    pub fn add_pair(&mut self, from: ObjectType, to: ObjectType) -> (u32, u32) {
        let id = self.next_user_type;
        self.next_user_type += 2;
        self.define(from, to, Category::UserDefined, id, id + 1, None);
        (id, id + 1)
    }

    /// Adds a user-defined label to a pair (and its inverse label the other way); returns the
    /// new types `(from→to, to→from)`.
    pub fn add_label(
        &mut self,
        from: ObjectType,
        to: ObjectType,
        label: &str,
        inverse_label: Option<&str>,
    ) -> Result<(u32, u32), HsError> {
        if self
            .types(from, to)
            .iter()
            .any(|t| t.label.as_deref() == Some(label))
        {
            return Err(HsError::new(
                409,
                "CONFLICT",
                format!("An association label {label} already exists for this pair"),
            ));
        }
        let id = self.next_user_type;
        let inverse = if inverse_label.is_some() || from != to {
            id + 1
        } else {
            id
        };
        self.next_user_type += 2;
        self.types
            .entry((from, to))
            .or_default()
            .push(AssociationType {
                category: Category::UserDefined,
                type_id: id,
                inverse,
                label: Some(label.to_owned()),
            });
        if inverse != id || from != to {
            self.types
                .entry((to, from))
                .or_default()
                .push(AssociationType {
                    category: Category::UserDefined,
                    type_id: inverse,
                    inverse: id,
                    label: Some(inverse_label.unwrap_or(label).to_owned()),
                });
        }
        Ok((id, inverse))
    }
}

/// `[{associationCategory, associationTypeId}]` (an `AssociationSpec` list).
pub fn parse_specs(value: &Value) -> Result<Vec<TypeKey>, HsError> {
    let items = value.as_array().ok_or_else(|| {
        HsError::validation("Invalid input JSON: expected a list of association types")
    })?;
    items
        .iter()
        .map(|spec| {
            let category = spec
                .get("associationCategory")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    HsError::validation("Invalid input JSON: associationCategory is required")
                })?;
            let id = spec
                .get("associationTypeId")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    HsError::validation("Invalid input JSON: associationTypeId is required")
                })?;
            Ok((Category::parse(category)?, id as u32))
        })
        .collect()
}

impl Portal {
    /// The live record `id` of a type, as a number.
    pub(super) fn live_record(&self, object_type: ObjectType, id: &str) -> Result<u64, HsError> {
        id.parse::<u64>()
            .ok()
            .filter(|n| {
                self.store(object_type)
                    .records
                    .get(n)
                    .is_some_and(|r| r.archived_at.is_none())
            })
            .ok_or_else(HsError::not_found)
    }

    /// Links two live records with the given types (`LabelsBetweenObjectPair` of the result).
    pub fn associate(
        &mut self,
        (from, from_id): (ObjectType, &str),
        (to, to_id): (ObjectType, &str),
        types: &[TypeKey],
    ) -> Result<Value, HsError> {
        let a = self.live_record(from, from_id)?;
        let b = self.live_record(to, to_id)?;
        if types.is_empty() {
            return Err(HsError::validation(
                "At least one association type is required",
            ));
        }
        for (category, id) in types {
            // Checked before any is applied: all or nothing.
            if !self
                .associations
                .types(from, to)
                .iter()
                .any(|t| t.category == *category && t.type_id == *id)
            {
                return Err(HsError::validation(format!(
                    "{}/{id} is not an association type from {} to {}",
                    category.name(),
                    from.type_id(),
                    to.type_id()
                )));
            }
        }
        for (category, id) in types {
            self.associations.link((from, a), (to, b), *category, *id)?;
        }
        Ok(self.labels_between(from, a, to, b))
    }

    /// Links two live records with the pair's default (unlabeled) type.
    pub fn associate_default(
        &mut self,
        (from, from_id): (ObjectType, &str),
        (to, to_id): (ObjectType, &str),
    ) -> Result<TypeKey, HsError> {
        let default = self
            .associations
            .types(from, to)
            .iter()
            .find(|t| t.label.is_none())
            .map(|t| (t.category, t.type_id))
            .ok_or_else(|| {
                HsError::validation(format!(
                    "{} and {} cannot be associated",
                    from.type_id(),
                    to.type_id()
                ))
            })?;
        self.associate((from, from_id), (to, to_id), &[default])?;
        Ok(default)
    }

    /// Removes some types of a link (all with `None`); unknown records or links are no error.
    pub fn dissociate(
        &mut self,
        (from, from_id): (ObjectType, &str),
        (to, to_id): (ObjectType, &str),
        only: Option<&[TypeKey]>,
    ) {
        if let (Ok(a), Ok(b)) = (from_id.parse::<u64>(), to_id.parse::<u64>()) {
            self.associations.unlink((from, a), (to, b), only);
        }
    }

    /// `LabelsBetweenObjectPair`: the labels of the link `from`→`to` (unlabeled types have none).
    pub(super) fn labels_between(&self, from: ObjectType, a: u64, to: ObjectType, b: u64) -> Value {
        let labels: Vec<String> = self
            .associations
            .linked(from, a, to)
            .into_iter()
            .filter(|(id, _)| *id == b)
            .flat_map(|(_, types)| types)
            .filter_map(|(c, id)| {
                self.associations
                    .types(from, to)
                    .iter()
                    .find(|t| t.category == c && t.type_id == id)
                    .and_then(|t| t.label.clone())
            })
            .collect();
        json!({
            "fromObjectTypeId": from.type_id(),
            "fromObjectId": a.to_string(),
            "toObjectTypeId": to.type_id(),
            "toObjectId": b.to_string(),
            "labels": labels,
        })
    }

    /// The associations of `from_id` to `to` (`MultiAssociatedObjectWithLabel` each).
    pub fn associations_of(
        &self,
        from: ObjectType,
        from_id: &str,
        to: ObjectType,
    ) -> Result<Vec<Value>, HsError> {
        let a = self.live_record(from, from_id)?;
        Ok(self
            .associations
            .linked(from, a, to)
            .into_iter()
            .map(|(b, types)| {
                let specs: Vec<Value> = types
                    .into_iter()
                    .map(|t| self.associations.spec_json(from, to, t))
                    .collect();
                json!({"toObjectId": b.to_string(), "associationTypes": specs})
            })
            .collect())
    }
}
