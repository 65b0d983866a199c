//! The sObject types the simulator serves (Account, Contact, Lead, Opportunity) with the
//! standard fields Salesforce documents for them, and their `describe` rendering.

use serde_json::{Value, json};

/// A Salesforce field data type, as `describe` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Email,
    Phone,
    Picklist,
    Boolean,
    Double,
    Currency,
    Percent,
    Int,
    Date,
    DateTime,
    Reference,
    Textarea,
    Url,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Picklist => "picklist",
            FieldType::Boolean => "boolean",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Int => "int",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Reference => "reference",
            FieldType::Textarea => "textarea",
            FieldType::Url => "url",
        }
    }

    pub fn from_name(name: &str) -> Option<FieldType> {
        const ALL: [FieldType; 15] = [
            FieldType::Id,
            FieldType::String,
            FieldType::Email,
            FieldType::Phone,
            FieldType::Picklist,
            FieldType::Boolean,
            FieldType::Double,
            FieldType::Currency,
            FieldType::Percent,
            FieldType::Int,
            FieldType::Date,
            FieldType::DateTime,
            FieldType::Reference,
            FieldType::Textarea,
            FieldType::Url,
        ];
        ALL.into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Double | FieldType::Currency | FieldType::Percent => "xsd:double",
            FieldType::Int => "xsd:int",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }

    /// Types whose values are text (compared case-insensitively in SOQL).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Picklist
                | FieldType::Textarea
                | FieldType::Url
        )
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Double | FieldType::Currency | FieldType::Percent | FieldType::Int
        )
    }

    /// Default length for text types (0 for the others, as describe reports).
    fn default_length(self) -> u32 {
        match self {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::Email | FieldType::Url | FieldType::String | FieldType::Picklist => 255,
            FieldType::Phone => 40,
            FieldType::Textarea => 32000,
            _ => 0,
        }
    }
}

/// One field of an sObject type.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub field_type: FieldType,
    pub length: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub custom: bool,
    /// Set by the server when absent on create (so not required even if not nillable).
    pub defaulted_on_create: bool,
    pub picklist_values: Vec<String>,
    pub reference_to: Option<&'static str>,
}

impl FieldDef {
    fn new(name: &str, label: &str, field_type: FieldType) -> FieldDef {
        FieldDef {
            name: name.to_owned(),
            label: label.to_owned(),
            field_type,
            length: field_type.default_length(),
            nillable: true,
            createable: true,
            updateable: true,
            custom: false,
            defaulted_on_create: false,
            picklist_values: Vec::new(),
            reference_to: None,
        }
    }

    /// A custom field (name ending in `__c`) added at runtime.
    pub fn custom(name: &str, label: &str, field_type: FieldType, length: Option<u32>) -> FieldDef {
        let mut field = FieldDef::new(name, label, field_type);
        field.custom = true;
        if let Some(length) = length {
            field.length = length;
        }
        field
    }

    fn length(mut self, length: u32) -> Self {
        self.length = length;
        self
    }

    fn required(mut self) -> Self {
        self.nillable = false;
        self
    }

    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    fn system(self) -> Self {
        let mut field = self.read_only();
        field.nillable = false;
        field.defaulted_on_create = true;
        field
    }

    fn defaulted(mut self) -> Self {
        self.defaulted_on_create = true;
        self
    }

    fn picklist(mut self, values: &[&str]) -> Self {
        self.picklist_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    fn references(mut self, object: &'static str) -> Self {
        self.reference_to = Some(object);
        self
    }

    /// Must a create supply this field?
    pub fn required_on_create(&self) -> bool {
        !self.nillable
            && self.createable
            && !self.defaulted_on_create
            && self.field_type != FieldType::Boolean
    }

    pub fn describe(&self) -> Value {
        let numeric = self.field_type.is_numeric();
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.field_type.name(),
            "soapType": self.field_type.soap_type(),
            "length": self.length,
            "byteLength": if self.field_type.is_text() { self.length * 3 } else { 0 },
            "precision": if numeric && self.field_type != FieldType::Int { 18 } else { 0 },
            "scale": if numeric && self.field_type != FieldType::Int { 2 } else { 0 },
            "digits": if self.field_type == FieldType::Int { 9 } else { 0 },
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "custom": self.custom,
            "calculated": !self.createable && !self.updateable && self.name == "Name",
            "defaultedOnCreate": self.defaulted_on_create,
            "filterable": self.field_type != FieldType::Textarea,
            "sortable": self.field_type != FieldType::Textarea,
            "unique": false,
            "externalId": false,
            "idLookup": self.field_type == FieldType::Id,
            "nameField": self.name == "Name",
            "referenceTo": self.reference_to.map(|o| vec![o]).unwrap_or_default(),
            "relationshipName": self.reference_to.map(|_| self.name.trim_end_matches("Id").to_owned()),
            "picklistValues": self.picklist_values.iter().map(|value| json!({
                "active": true,
                "defaultValue": false,
                "label": value,
                "validFor": null,
                "value": value,
            })).collect::<Vec<_>>(),
        })
    }
}

/// An sObject type: name, key prefix and fields.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    pub name: &'static str,
    pub label: &'static str,
    pub label_plural: &'static str,
    pub key_prefix: &'static str,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn describe(&self, version: &str) -> Value {
        let mut value = self.describe_global_entry(version);
        value["fields"] = self.fields.iter().map(FieldDef::describe).collect();
        value
    }

    /// The object's entry in `GET /sobjects` (describe without fields).
    pub fn describe_global_entry(&self, version: &str) -> Value {
        let base = format!("/services/data/{version}/sobjects/{}", self.name);
        json!({
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": false,
            "createable": true,
            "updateable": true,
            "deletable": true,
            "queryable": true,
            "retrieveable": true,
            "replicateable": true,
            "urls": {
                "sobject": base,
                "describe": format!("{base}/describe"),
                "rowTemplate": format!("{base}/{{ID}}"),
            },
        })
    }
}

/// Fields every sObject carries.
fn system_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("Id", "Record ID", FieldType::Id).system(),
        FieldDef::new("IsDeleted", "Deleted", FieldType::Boolean).system(),
    ]
}

fn audit_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("OwnerId", "Owner ID", FieldType::Reference)
            .references("User")
            .required()
            .defaulted(),
        FieldDef::new("CreatedDate", "Created Date", FieldType::DateTime).system(),
        FieldDef::new("CreatedById", "Created By ID", FieldType::Reference)
            .references("User")
            .system(),
        FieldDef::new(
            "LastModifiedDate",
            "Last Modified Date",
            FieldType::DateTime,
        )
        .system(),
        FieldDef::new(
            "LastModifiedById",
            "Last Modified By ID",
            FieldType::Reference,
        )
        .references("User")
        .system(),
        FieldDef::new("SystemModstamp", "System Modstamp", FieldType::DateTime).system(),
    ]
}

const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Banking",
    "Construction",
    "Education",
    "Energy",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Technology",
];
pub const OPPORTUNITY_STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
pub const LEAD_STATUSES: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];

fn with_standard(mut fields: Vec<FieldDef>) -> Vec<FieldDef> {
    let mut all = system_fields();
    all.append(&mut fields);
    all.extend(audit_fields());
    all
}

fn name_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("LastName", "Last Name", FieldType::String)
            .length(80)
            .required(),
        FieldDef::new("FirstName", "First Name", FieldType::String).length(40),
        FieldDef::new("Salutation", "Salutation", FieldType::Picklist)
            .picklist(&["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."]),
        // The compound full name, computed from first and last name.
        FieldDef::new("Name", "Full Name", FieldType::String)
            .length(121)
            .read_only(),
    ]
}

/// The standard objects, in the order `GET /sobjects` lists them.
pub fn standard_objects() -> Vec<ObjectDef> {
    let account = ObjectDef {
        name: "Account",
        label: "Account",
        label_plural: "Accounts",
        key_prefix: "001",
        fields: with_standard(vec![
            FieldDef::new("Name", "Account Name", FieldType::String).required(),
            FieldDef::new("Type", "Account Type", FieldType::Picklist).picklist(&[
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Channel Partner / Reseller",
                "Other",
            ]),
            FieldDef::new("Industry", "Industry", FieldType::Picklist).picklist(INDUSTRIES),
            FieldDef::new("Phone", "Account Phone", FieldType::Phone),
            FieldDef::new("Website", "Website", FieldType::Url),
            FieldDef::new("AnnualRevenue", "Annual Revenue", FieldType::Currency),
            FieldDef::new("NumberOfEmployees", "Employees", FieldType::Int),
            FieldDef::new("BillingCity", "Billing City", FieldType::String).length(40),
            FieldDef::new("BillingCountry", "Billing Country", FieldType::String).length(80),
            FieldDef::new("Description", "Account Description", FieldType::Textarea),
        ]),
    };
    let mut contact_fields =
        vec![FieldDef::new("AccountId", "Account ID", FieldType::Reference).references("Account")];
    contact_fields.extend(name_fields());
    contact_fields.extend([
        FieldDef::new("Title", "Title", FieldType::String).length(128),
        FieldDef::new("Email", "Email", FieldType::Email).length(80),
        FieldDef::new("Phone", "Business Phone", FieldType::Phone),
        FieldDef::new("MobilePhone", "Mobile Phone", FieldType::Phone),
        FieldDef::new("LeadSource", "Lead Source", FieldType::Picklist).picklist(LEAD_SOURCES),
        FieldDef::new("Birthdate", "Birthdate", FieldType::Date),
        FieldDef::new("HasOptedOutOfEmail", "Email Opt Out", FieldType::Boolean)
            .required()
            .defaulted(),
        FieldDef::new("Description", "Contact Description", FieldType::Textarea),
    ]);
    let contact = ObjectDef {
        name: "Contact",
        label: "Contact",
        label_plural: "Contacts",
        key_prefix: "003",
        fields: with_standard(contact_fields),
    };
    let mut lead_fields = name_fields();
    lead_fields.extend([
        FieldDef::new("Title", "Title", FieldType::String).length(128),
        FieldDef::new("Company", "Company", FieldType::String).required(),
        FieldDef::new("Email", "Email", FieldType::Email).length(80),
        FieldDef::new("Phone", "Phone", FieldType::Phone),
        FieldDef::new("Status", "Status", FieldType::Picklist)
            .picklist(LEAD_STATUSES)
            .required()
            .defaulted(),
        FieldDef::new("LeadSource", "Lead Source", FieldType::Picklist).picklist(LEAD_SOURCES),
        FieldDef::new("Industry", "Industry", FieldType::Picklist).picklist(INDUSTRIES),
        FieldDef::new("AnnualRevenue", "Annual Revenue", FieldType::Currency),
        FieldDef::new("NumberOfEmployees", "Employees", FieldType::Int),
        FieldDef::new("IsConverted", "Converted", FieldType::Boolean)
            .required()
            .defaulted(),
    ]);
    let lead = ObjectDef {
        name: "Lead",
        label: "Lead",
        label_plural: "Leads",
        key_prefix: "00Q",
        fields: with_standard(lead_fields),
    };
    let opportunity = ObjectDef {
        name: "Opportunity",
        label: "Opportunity",
        label_plural: "Opportunities",
        key_prefix: "006",
        fields: with_standard(vec![
            FieldDef::new("AccountId", "Account ID", FieldType::Reference).references("Account"),
            FieldDef::new("Name", "Name", FieldType::String)
                .length(120)
                .required(),
            FieldDef::new("Description", "Description", FieldType::Textarea),
            FieldDef::new("StageName", "Stage", FieldType::Picklist)
                .picklist(OPPORTUNITY_STAGES)
                .required(),
            FieldDef::new("Amount", "Amount", FieldType::Currency),
            FieldDef::new("Probability", "Probability (%)", FieldType::Percent),
            FieldDef::new("CloseDate", "Close Date", FieldType::Date).required(),
            FieldDef::new("Type", "Opportunity Type", FieldType::Picklist).picklist(&[
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "New Customer",
            ]),
            FieldDef::new("LeadSource", "Lead Source", FieldType::Picklist).picklist(LEAD_SOURCES),
            FieldDef::new("IsClosed", "Closed", FieldType::Boolean).system(),
            FieldDef::new("IsWon", "Won", FieldType::Boolean).system(),
        ]),
    };
    vec![account, contact, lead, opportunity]
}
