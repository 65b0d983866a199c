//! HubSpot's CRM object types: the twelve standard objects the simulator serves (contacts,
//! companies, deals, tickets, products, line items, quotes and the calls, emails, meetings,
//! notes and tasks engagements) and the portal's custom objects, with what each type's API
//! says about it: its `{objectType}` names and type id, its created and last-modified
//! properties, the properties a read returns when it names none, the properties a free-text
//! search looks at, and those a create must set.
//!
//! Sources: the object type table of HubSpot's CRM docs ("Object type IDs": `0-1` contacts ...
//! `0-48` calls), the "Properties returned by default" table of the objects API descriptions
//! (`shared/reference/hubspot/v3-tickets.json` and siblings), and each object's guide.

use super::store::HsError;

/// A CRM object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Contacts,
    Companies,
    Deals,
    Tickets,
    Products,
    LineItems,
    Quotes,
    Calls,
    Emails,
    Meetings,
    Notes,
    Tasks,
    /// A custom object of the portal, by the number in its type id `2-<n>`.
    Custom(u32),
}

/// Every standard object type the simulator serves.
pub const STANDARD: [ObjectType; 12] = [
    ObjectType::Contacts,
    ObjectType::Companies,
    ObjectType::Deals,
    ObjectType::Tickets,
    ObjectType::Products,
    ObjectType::LineItems,
    ObjectType::Quotes,
    ObjectType::Calls,
    ObjectType::Emails,
    ObjectType::Meetings,
    ObjectType::Notes,
    ObjectType::Tasks,
];

/// What the API says about a standard object type.
struct Standard {
    /// The plural `{objectType}` of the paths (`line_items`).
    name: &'static str,
    /// Other names the API accepts (the singular, the type id).
    aliases: &'static [&'static str],
    type_id: &'static str,
    /// As error messages name it (`LINE_ITEM`).
    singular: &'static str,
    created: &'static str,
    modified: &'static str,
    /// Returned besides the three system properties when a read names none.
    defaults: &'static [&'static str],
    searchable: &'static [&'static str],
    required: &'static [&'static str],
}

const ENGAGEMENT_TIMES: (&str, &str) = ("hs_createdate", "hs_lastmodifieddate");

fn standard(object_type: ObjectType) -> Option<&'static Standard> {
    const fn engagement(
        name: &'static str,
        aliases: &'static [&'static str],
        type_id: &'static str,
        singular: &'static str,
        searchable: &'static [&'static str],
    ) -> Standard {
        Standard {
            name,
            aliases,
            type_id,
            singular,
            created: ENGAGEMENT_TIMES.0,
            modified: ENGAGEMENT_TIMES.1,
            defaults: &[],
            searchable,
            // Every engagement is placed on the timeline by hs_timestamp.
            required: &["hs_timestamp"],
        }
    }
    static TABLE: [Standard; 12] = [
        Standard {
            name: "contacts",
            aliases: &["contact", "0-1"],
            type_id: "0-1",
            singular: "CONTACT",
            // Contacts predate the `hs_` naming of the modified time.
            created: "createdate",
            modified: "lastmodifieddate",
            defaults: &["email", "firstname", "lastname"],
            searchable: &["firstname", "lastname", "email", "phone", "company"],
            required: &[],
        },
        Standard {
            name: "companies",
            aliases: &["company", "0-2"],
            type_id: "0-2",
            singular: "COMPANY",
            created: "createdate",
            modified: "hs_lastmodifieddate",
            defaults: &["domain", "name"],
            searchable: &["name", "domain", "phone"],
            required: &[],
        },
        Standard {
            name: "deals",
            aliases: &["deal", "0-3"],
            type_id: "0-3",
            singular: "DEAL",
            created: "createdate",
            modified: "hs_lastmodifieddate",
            defaults: &["amount", "closedate", "dealname", "dealstage", "pipeline"],
            searchable: &[
                "dealname",
                "pipeline",
                "dealstage",
                "description",
                "dealtype",
            ],
            required: &[],
        },
        Standard {
            name: "tickets",
            aliases: &["ticket", "0-5"],
            type_id: "0-5",
            singular: "TICKET",
            created: "createdate",
            modified: "hs_lastmodifieddate",
            defaults: &[
                "content",
                "hs_pipeline",
                "hs_pipeline_stage",
                "hs_ticket_category",
                "hs_ticket_priority",
                "subject",
            ],
            searchable: &["subject", "content"],
            required: &["subject", "hs_pipeline_stage"],
        },
        Standard {
            name: "products",
            aliases: &["product", "0-7"],
            type_id: "0-7",
            singular: "PRODUCT",
            created: "createdate",
            modified: "hs_lastmodifieddate",
            defaults: &["description", "name", "price"],
            searchable: &["name", "description", "hs_sku"],
            required: &["name"],
        },
        Standard {
            name: "line_items",
            aliases: &["line_item", "lineitems", "0-8"],
            type_id: "0-8",
            singular: "LINE_ITEM",
            created: "createdate",
            modified: "hs_lastmodifieddate",
            defaults: &["name", "price", "quantity"],
            searchable: &["name", "hs_sku"],
            required: &[],
        },
        Standard {
            name: "quotes",
            aliases: &["quote", "0-14"],
            type_id: "0-14",
            singular: "QUOTE",
            created: "hs_createdate",
            modified: "hs_lastmodifieddate",
            defaults: &[
                "hs_expiration_date",
                "hs_public_url_key",
                "hs_status",
                "hs_title",
            ],
            searchable: &["hs_title"],
            required: &["hs_title", "hs_expiration_date"],
        },
        engagement(
            "calls",
            &["call", "0-48"],
            "0-48",
            "CALL",
            &["hs_call_title", "hs_call_body"],
        ),
        engagement(
            "emails",
            &["email", "0-49"],
            "0-49",
            "EMAIL",
            &["hs_email_subject", "hs_email_text"],
        ),
        engagement(
            "meetings",
            &["meeting", "0-47"],
            "0-47",
            "MEETING",
            &["hs_meeting_title", "hs_meeting_body"],
        ),
        engagement(
            "notes",
            &["note", "0-46"],
            "0-46",
            "NOTE",
            &["hs_note_body"],
        ),
        engagement(
            "tasks",
            &["task", "0-27"],
            "0-27",
            "TASK",
            &["hs_task_subject", "hs_task_body"],
        ),
    ];
    STANDARD
        .iter()
        .position(|t| *t == object_type)
        .map(|i| &TABLE[i])
}

impl ObjectType {
    /// Parses a standard `{objectType}` path segment (`contacts`, `contact`, `0-1`, ...) or a
    /// custom object's type id (`2-1000001`); a custom object's name needs the portal
    /// ([`super::store::Portal::resolve`]).
    pub fn parse(text: &str) -> Result<ObjectType, HsError> {
        let lower = text.to_ascii_lowercase();
        if let Some(found) = STANDARD.iter().copied().find(|t| {
            let s = standard(*t).expect("standard");
            s.name == lower || s.aliases.contains(&lower.as_str())
        }) {
            return Ok(found);
        }
        if let Some(n) = lower.strip_prefix("2-").and_then(|n| n.parse::<u32>().ok()) {
            return Ok(ObjectType::Custom(n));
        }
        Err(HsError::validation(format!(
            "Unable to infer object type from: {text}"
        )))
    }

    /// The type id (`0-1`, `2-1000001`).
    pub fn type_id(self) -> String {
        match self {
            ObjectType::Custom(n) => format!("2-{n}"),
            standard_type => standard(standard_type)
                .expect("standard")
                .type_id
                .to_owned(),
        }
    }
}

/// What the portal knows of one object type (a standard one's is fixed, a custom one's comes
/// from its schema).
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    /// The `{objectType}` of the paths (`line_items`; a custom object's `name`).
    pub name: String,
    /// As batch errors name it (`LINE_ITEM`).
    pub singular: String,
    pub created_property: String,
    pub modified_property: String,
    /// Returned (with the three system properties) when a read names none.
    pub default_properties: Vec<String>,
    /// Looked at by a search's free-text `query`.
    pub searchable: Vec<String>,
    /// A create without one of these is refused.
    pub required: Vec<String>,
}

impl ObjectMeta {
    /// The fixed description of a standard object type.
    pub fn standard(object_type: ObjectType) -> ObjectMeta {
        let s = standard(object_type).expect("a standard object type");
        let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        ObjectMeta {
            name: s.name.to_owned(),
            singular: s.singular.to_owned(),
            created_property: s.created.to_owned(),
            modified_property: s.modified.to_owned(),
            default_properties: owned(s.defaults),
            searchable: owned(s.searchable),
            required: owned(s.required),
        }
    }

    /// The system properties every read includes: created, last modified, record id.
    pub fn system_properties(&self) -> [&str; 3] {
        [
            &self.created_property,
            &self.modified_property,
            "hs_object_id",
        ]
    }

    /// Whether `name` is the created or modified time (both names of the modified time are
    /// accepted by searches on every object).
    pub fn time_of(&self, name: &str) -> Option<RecordTime> {
        if name == self.created_property || name == "createdate" || name == "hs_createdate" {
            Some(RecordTime::Created)
        } else if name == "lastmodifieddate" || name == "hs_lastmodifieddate" {
            Some(RecordTime::Modified)
        } else {
            None
        }
    }
}

/// One of the two times every record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTime {
    Created,
    Modified,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_type_id_parses_back() {
        for t in STANDARD {
            let meta = ObjectMeta::standard(t);
            assert_eq!(ObjectType::parse(&meta.name).unwrap(), t);
            assert_eq!(ObjectType::parse(&t.type_id()).unwrap(), t);
        }
        assert_eq!(
            ObjectType::parse("2-1000001").unwrap(),
            ObjectType::Custom(1_000_001)
        );
        assert_eq!(ObjectType::Custom(7).type_id(), "2-7");
        assert!(ObjectType::parse("widgets").is_err());
    }
}
