//! Custom objects (`/crm/v3/schemas`, also served at `/crm-object-schemas/v3/schemas`): a
//! schema defines an object type `2-<n>` with its labels, display, required and searchable
//! properties and associations; its records are then served by the same objects API as the
//! standard ones (`/crm/v3/objects/2-<n>`, or by the object's name or fully qualified name
//! `p<portal>_<name>`). Shapes as `ObjectSchema` and `ObjectSchemaEgg` in
//! `shared/reference/hubspot/v3-schemas.json`.

use serde_json::{Value, json};

use super::defaults;
use super::objects::{ObjectMeta, ObjectType};
use super::properties::{self, Property};
use super::store::{HsError, ObjectStore, Portal, format_time};

/// The simulated portal's id (in fully qualified names).
pub const PORTAL_ID: u64 = 20_480_001;

/// A custom object's definition.
#[derive(Debug, Clone)]
pub struct Schema {
    /// The `<n>` of the type id `2-<n>`.
    pub number: u32,
    pub name: String,
    pub singular: String,
    pub plural: String,
    pub description: String,
    pub primary_display_property: Option<String>,
    pub secondary_display_properties: Vec<String>,
    pub required: Vec<String>,
    pub searchable: Vec<String>,
    /// The object types it associates with, and the association type of each (from it).
    pub associated: Vec<(ObjectType, u32)>,
    pub created: i64,
    pub updated: i64,
}

impl Schema {
    pub fn fully_qualified_name(&self) -> String {
        format!("p{PORTAL_ID}_{}", self.name)
    }

    /// Whether a `{objectType}` path segment names this object.
    pub fn answers_to(&self, text: &str) -> bool {
        text.eq_ignore_ascii_case(&self.name)
            || text.eq_ignore_ascii_case(&self.fully_qualified_name())
    }

    fn meta(&self) -> ObjectMeta {
        let mut defaults: Vec<String> = self.primary_display_property.iter().cloned().collect();
        defaults.extend(self.secondary_display_properties.iter().cloned());
        ObjectMeta {
            name: self.name.clone(),
            singular: self.name.to_uppercase(),
            created_property: "hs_createdate".into(),
            modified_property: "hs_lastmodifieddate".into(),
            default_properties: defaults,
            searchable: self.searchable.clone(),
            required: self.required.clone(),
        }
    }

    /// As the schemas API renders it, with the object's properties.
    fn to_json(&self, properties: &[Property]) -> Value {
        let type_id = ObjectType::Custom(self.number).type_id();
        let associations: Vec<Value> = self
            .associated
            .iter()
            .map(|(to, id)| {
                let to = to.type_id();
                json!({
                    "id": id.to_string(),
                    "fromObjectTypeId": type_id,
                    "toObjectTypeId": to,
                    "name": format!("{}_to_{}", self.name, to.replace('-', "_")),
                    "createdAt": format_time(self.created),
                    "updatedAt": format_time(self.created),
                })
            })
            .collect();
        let mut value = json!({
            "id": self.number.to_string(),
            "objectTypeId": type_id,
            "name": self.name,
            "fullyQualifiedName": self.fully_qualified_name(),
            "labels": {"singular": self.singular, "plural": self.plural},
            "description": self.description,
            "requiredProperties": self.required,
            "searchableProperties": self.searchable,
            "secondaryDisplayProperties": self.secondary_display_properties,
            "properties": properties.iter().map(Property::to_json).collect::<Vec<_>>(),
            "associations": associations,
            "archived": false,
            "createdAt": format_time(self.created),
            "updatedAt": format_time(self.updated),
        });
        if let Some(primary) = &self.primary_display_property {
            value["primaryDisplayProperty"] = json!(primary);
        }
        value
    }
}

/// The object type an `associatedObjects` entry names (`CONTACT`, `COMPANY`, a type id).
fn associated_type(portal: &Portal, name: &str) -> Result<ObjectType, HsError> {
    let singular = name.to_ascii_lowercase();
    portal
        .resolve(&singular)
        .map_err(|_| HsError::validation(format!("Unknown associated object type {name}")))
}

fn text_list(body: &Value, key: &str) -> Vec<String> {
    body.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The properties of an `ObjectSchemaEgg` (their group defaults to the object's).
fn egg_properties(body: &Value, name: &str, now: i64) -> Result<Vec<Property>, HsError> {
    let inputs = body
        .get("properties")
        .and_then(Value::as_array)
        .ok_or_else(|| HsError::validation("Invalid input JSON: properties is required"))?;
    let mut out: Vec<Property> = Vec::new();
    for input in inputs {
        let mut input = input.clone();
        if input.get("groupName").is_none() {
            input["groupName"] = json!(format!("{name}_information"));
        }
        let property = properties::custom_property(&input, now).map_err(HsError::validation)?;
        if out.iter().any(|p| p.name == property.name) {
            return Err(HsError::validation(format!(
                "Property {} is defined twice",
                property.name
            )));
        }
        out.push(property);
    }
    Ok(out)
}

impl Portal {
    /// `GET /crm/v3/schemas`.
    pub fn schemas(&self) -> Vec<Value> {
        self.schemas
            .values()
            .map(|s| s.to_json(&self.store(ObjectType::Custom(s.number)).properties))
            .collect()
    }

    /// `GET /crm/v3/schemas/{objectType}`.
    pub fn schema(&self, object_type: &str) -> Result<Value, HsError> {
        match self.resolve(object_type) {
            Ok(ObjectType::Custom(n)) => {
                let s = &self.schemas[&n];
                Ok(s.to_json(&self.store(ObjectType::Custom(n)).properties))
            }
            _ => Err(HsError::new(
                404,
                "OBJECT_NOT_FOUND",
                format!("Unable to find object type {object_type}"),
            )),
        }
    }

    /// `POST /crm/v3/schemas` with an `ObjectSchemaEgg`: defines a custom object.
    pub fn create_schema(&mut self, body: &Value) -> Result<(ObjectType, Value), HsError> {
        let now = self.clock.now_ms();
        let schema = self.schema_from_egg(body, now)?;
        let mut properties = egg_properties(body, &schema.name, now)?;
        for name in schema
            .required
            .iter()
            .chain(&schema.searchable)
            .chain(&schema.primary_display_property)
            .chain(&schema.secondary_display_properties)
        {
            if !properties.iter().any(|p| &p.name == name) {
                return Err(HsError::validation(format!(
                    "Property {name} is named by the schema but not defined in properties"
                )));
            }
        }
        let meta = schema.meta();
        properties.extend(defaults::custom_object_properties(&meta));
        let object_type = ObjectType::Custom(schema.number);
        let mut schema = schema;
        for (to, id) in schema.associated.iter_mut() {
            *id = self.associations.add_pair(object_type, *to).0;
        }
        let rendered = schema.to_json(&properties);
        self.objects
            .insert(object_type, ObjectStore::new(meta, properties));
        self.schemas.insert(schema.number, schema);
        self.refresh_options();
        Ok((object_type, rendered))
    }

    fn schema_from_egg(&self, body: &Value, now: i64) -> Result<Schema, HsError> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| HsError::validation("Invalid input JSON: name is required"))?;
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(HsError::validation(format!(
                "Object name {name} is invalid: names start with a lower-case letter and hold only lower-case letters, digits and underscores"
            )));
        }
        if ObjectType::parse(name).is_ok() || self.schemas.values().any(|s| s.name == name) {
            return Err(HsError::new(
                409,
                "OBJECT_ALREADY_EXISTS",
                format!("An object type named {name} already exists"),
            ));
        }
        let label = |key: &str| {
            body.pointer(&format!("/labels/{key}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    HsError::validation(format!("Invalid input JSON: labels.{key} is required"))
                })
        };
        // Type ids are assigned once the schema is accepted.
        let associated = text_list(body, "associatedObjects")
            .iter()
            .map(|a| associated_type(self, a).map(|t| (t, 0)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schema {
            number: 2_000_000 + self.schemas.len() as u32 + 1,
            name: name.to_owned(),
            singular: label("singular")?,
            plural: label("plural")?,
            description: body
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            primary_display_property: body
                .get("primaryDisplayProperty")
                .and_then(Value::as_str)
                .map(str::to_owned),
            secondary_display_properties: text_list(body, "secondaryDisplayProperties"),
            required: text_list(body, "requiredProperties"),
            searchable: text_list(body, "searchableProperties"),
            associated,
            created: now,
            updated: now,
        })
    }
}
