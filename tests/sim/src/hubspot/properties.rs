//! HubSpot property definitions (`/crm/v3/properties/{objectType}`): the definition and its
//! rendering, custom properties created through the API, and the validation of property values
//! sent in writes. The default properties of each object are in `defaults.rs`.

use serde_json::{Value, json};

use super::store::{format_time, parse_time};

/// One selectable option of an enumeration property.
#[derive(Debug, Clone)]
pub struct PropertyOption {
    pub label: String,
    pub value: String,
}

/// A property definition.
#[derive(Debug, Clone)]
pub struct Property {
    pub name: String,
    pub label: String,
    /// `string`, `number`, `date`, `datetime`, `enumeration`, `bool`, `phone_number`
    pub property_type: String,
    /// `text`, `textarea`, `number`, `date`, `select`, `radio`, `checkbox`, `booleancheckbox`,
    /// `phonenumber`, `calculation_equation`, ...
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub options: Vec<PropertyOption>,
    pub hubspot_defined: bool,
    /// Set by HubSpot only (`createdate`, `hs_object_id`, ...).
    pub read_only_value: bool,
    pub has_unique_value: bool,
    /// Computed by HubSpot from other properties (a line item's `amount`); read-only.
    pub calculated: bool,
    /// Where an enumeration's options come from when the portal keeps them (owners,
    /// pipelines); `None`: its own list.
    pub options_from: Option<OptionsSource>,
    pub display_order: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Portal data an enumeration's options follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsSource {
    /// The active owners (`hubspot_owner_id`), by owner id.
    Owners,
    /// The object type's pipelines (`pipeline`, `hs_pipeline`), by pipeline id.
    Pipelines,
    /// The stages of the object type's pipelines (`dealstage`, `hs_pipeline_stage`).
    PipelineStages,
}

/// Why a property value was rejected: one element of the `Property values were not valid` list.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidValue {
    pub name: String,
    pub error: &'static str,
    pub message: String,
}

impl InvalidValue {
    pub fn to_json(&self) -> Value {
        json!({"isValid": false, "message": self.message, "error": self.error, "name": self.name})
    }
}

impl Property {
    pub fn standard(
        name: &str,
        label: &str,
        property_type: &str,
        field_type: &str,
        group: &str,
    ) -> Property {
        Property {
            name: name.to_owned(),
            label: label.to_owned(),
            property_type: property_type.to_owned(),
            field_type: field_type.to_owned(),
            group_name: group.to_owned(),
            description: String::new(),
            options: Vec::new(),
            hubspot_defined: true,
            read_only_value: false,
            has_unique_value: false,
            calculated: false,
            options_from: None,
            display_order: -1,
            created_at: 0,
            updated_at: 0,
        }
    }

    pub fn read_only(mut self) -> Property {
        self.read_only_value = true;
        self
    }

    /// Read-only and computed by HubSpot.
    pub fn calculated(mut self) -> Property {
        self.read_only_value = true;
        self.calculated = true;
        self
    }

    pub fn unique(mut self) -> Property {
        self.has_unique_value = true;
        self
    }

    /// Options kept by the portal (filled in by it).
    pub fn options_from(mut self, source: OptionsSource) -> Property {
        self.options_from = Some(source);
        self
    }

    pub fn options(mut self, values: &[(&str, &str)]) -> Property {
        self.options = values
            .iter()
            .map(|(value, label)| PropertyOption {
                label: (*label).to_owned(),
                value: (*value).to_owned(),
            })
            .collect();
        self
    }

    /// Renders the definition as the properties API does (`Property` in v3-properties.json).
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "updatedAt": format_time(self.updated_at),
            "createdAt": format_time(self.created_at),
            "name": self.name,
            "label": self.label,
            "type": self.property_type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": self.options.iter().enumerate().map(|(i, o)| json!({
                "label": o.label,
                "value": o.value,
                "displayOrder": i,
                "hidden": false,
            })).collect::<Vec<_>>(),
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": false,
            "hasUniqueValue": self.has_unique_value,
            "hidden": false,
            "hubspotDefined": self.hubspot_defined,
            "modificationMetadata": {
                "archivable": !self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only_value,
            },
            "formField": !self.read_only_value,
            "dataSensitivity": "non_sensitive",
        });
        if !self.hubspot_defined {
            value["archived"] = json!(false);
        }
        if self.options_from == Some(OptionsSource::Owners) {
            value["referencedObjectType"] = json!("OWNER");
        }
        value
    }

    /// Validates and normalizes a value written to this property. An empty string clears it.
    pub fn normalize(&self, raw: &str) -> Result<String, InvalidValue> {
        let invalid = |error: &'static str, message: String| InvalidValue {
            name: self.name.clone(),
            error,
            message,
        };
        if self.read_only_value {
            return Err(invalid(
                "READ_ONLY_VALUE",
                format!(
                    "{} is a read only property; its value cannot be set.",
                    self.name
                ),
            ));
        }
        if raw.is_empty() {
            return Ok(String::new());
        }
        match self.property_type.as_str() {
            "number" => raw
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|_| raw.trim().to_owned())
                .ok_or_else(|| {
                    invalid("INVALID_DECIMAL", format!("{raw} was not a valid number."))
                }),
            "bool" => match raw.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(raw.to_ascii_lowercase()),
                _ => Err(invalid(
                    "INVALID_BOOLEAN",
                    format!("{raw} was not a valid boolean."),
                )),
            },
            "enumeration" => {
                let allowed: Vec<&str> = self.options.iter().map(|o| o.value.as_str()).collect();
                // Multiple-checkbox values are `;`-separated.
                let all_valid = raw.split(';').all(|part| allowed.contains(&part));
                if all_valid {
                    Ok(raw.to_owned())
                } else {
                    Err(invalid(
                        "INVALID_OPTION",
                        format!(
                            "{raw} was not one of the allowed options: [{}]",
                            allowed.join(", ")
                        ),
                    ))
                }
            }
            "date" => {
                let millis = parse_time(raw).ok_or_else(|| {
                    invalid("INVALID_DATE", format!("{raw} is not a valid date."))
                })?;
                if millis.rem_euclid(86_400_000) != 0 {
                    return Err(invalid(
                        "INVALID_DATE",
                        format!(
                            "{raw} is at {millis} which is not midnight UTC: date properties must be at midnight."
                        ),
                    ));
                }
                Ok(format_time(millis)[..10].to_owned())
            }
            "datetime" => parse_time(raw).map(format_time).ok_or_else(|| {
                invalid(
                    "INVALID_DATETIME",
                    format!("{raw} is not a valid datetime."),
                )
            }),
            _ if self.name == "email" || self.field_type == "email" => {
                if crate::salesforce::is_valid_email(raw) {
                    Ok(raw.to_owned())
                } else {
                    Err(invalid(
                        "INVALID_EMAIL",
                        format!("Email address {raw} is invalid"),
                    ))
                }
            }
            _ => Ok(raw.to_owned()),
        }
    }
}

/// Types and field types accepted when creating a property (PropertyCreate's enums).
pub const PROPERTY_TYPES: &[&str] = &[
    "bool",
    "date",
    "datetime",
    "enumeration",
    "number",
    "phone_number",
    "string",
];
pub const FIELD_TYPES: &[&str] = &[
    "booleancheckbox",
    "calculation_equation",
    "checkbox",
    "date",
    "file",
    "html",
    "number",
    "phonenumber",
    "radio",
    "select",
    "text",
    "textarea",
];

/// Builds a custom property from a `PropertyCreate` body; errors are validation messages.
pub fn custom_property(body: &Value, now: i64) -> Result<Property, String> {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let required = |key: &str| text(key).ok_or_else(|| format!("Property {key} is required"));
    let name = required("name")?;
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "Property name {name} is invalid: names may only contain lower-case letters, digits and underscores"
        ));
    }
    let property_type = required("type")?;
    if !PROPERTY_TYPES.contains(&property_type.as_str()) {
        return Err(format!(
            "Unknown property type {property_type}; expected one of {PROPERTY_TYPES:?}"
        ));
    }
    let field_type = required("fieldType")?;
    if !FIELD_TYPES.contains(&field_type.as_str()) {
        return Err(format!(
            "Unknown field type {field_type}; expected one of {FIELD_TYPES:?}"
        ));
    }
    let options = body
        .get("options")
        .and_then(Value::as_array)
        .map(|options| {
            options
                .iter()
                .map(|o| {
                    let value = o
                        .get("value")
                        .and_then(Value::as_str)
                        .ok_or("Option value is required")?;
                    let label = o
                        .get("label")
                        .and_then(Value::as_str)
                        .ok_or("Option label is required")?;
                    Ok(PropertyOption {
                        label: label.to_owned(),
                        value: value.to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, &str>>()
        })
        .transpose()?
        .unwrap_or_default();
    if property_type == "enumeration" && options.is_empty() && field_type != "booleancheckbox" {
        return Err("Enumeration properties require options".to_owned());
    }
    Ok(Property {
        name,
        label: required("label")?,
        property_type,
        field_type,
        group_name: required("groupName")?,
        description: text("description").unwrap_or_default(),
        options,
        hubspot_defined: false,
        read_only_value: false,
        has_unique_value: body
            .get("hasUniqueValue")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        calculated: false,
        options_from: None,
        display_order: body
            .get("displayOrder")
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        created_at: now,
        updated_at: now,
    })
}
