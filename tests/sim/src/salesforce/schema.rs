//! The sObject types the simulator serves (Account, Contact, Lead, Opportunity) with the
//! standard fields Salesforce's Object Reference documents for them (as a default Enterprise
//! org has them), and their `describe` rendering.

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
    /// A compound address (`BillingAddress`): read-only, assembled from its component fields.
    Address,
    /// A compound geolocation (`Site__c`): read-only, assembled from its `__Latitude__s` and
    /// `__Longitude__s` parts.
    Location,
    /// Binary content sent as base64 (Attachment.Body).
    Base64,
    /// Values of several types (the old and new values of field history).
    AnyType,
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
            FieldType::Address => "address",
            FieldType::Location => "location",
            FieldType::Base64 => "base64",
            FieldType::AnyType => "anyType",
        }
    }

    /// The type of a custom field named in a control request (compound types are not offered).
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
            FieldType::Address => "urn:address",
            FieldType::Location => "urn:location",
            FieldType::Base64 => "xsd:base64Binary",
            FieldType::AnyType => "xsd:anyType",
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
            FieldType::Base64 => 5_242_880,
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
    /// Total digits and digits after the point of `double`/`currency`/`percent` fields.
    pub precision: u32,
    pub scale: u32,
    /// Maximum digits of an `int` field.
    pub digits: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub custom: bool,
    /// Set by the server when absent on create (so not required even if not nillable).
    pub defaulted_on_create: bool,
    /// The value the server stores when a create leaves the field out.
    pub default_value: Option<Value>,
    pub picklist_values: Vec<String>,
    /// A restricted picklist refuses values outside `picklist_values`.
    pub restricted_picklist: bool,
    /// The objects a reference may point at (more than one: a polymorphic key like Lead.OwnerId).
    pub reference_to: Vec<&'static str>,
    /// The compound field this one is a component of (`BillingCity` -> `BillingAddress`).
    pub compound_field_name: Option<&'static str>,
    /// describe's `extraTypeInfo` (`personname`, `imageurl`, `plaintextarea`, ...).
    pub extra_type_info: Option<&'static str>,
    /// A formula or roll-up summary field (`calculated` in describe): its value is computed
    /// from the record's other values on every write.
    pub formula: Option<Formula>,
    /// An External ID: upserts may go by it (`externalId` in describe).
    pub external_id: bool,
    /// Values are unique among the object's records (`unique` in describe).
    pub unique: bool,
}

/// How a formula field's value follows from the record's other values.
pub type Formula = fn(&std::collections::HashMap<String, Value>) -> Value;

impl FieldDef {
    pub(super) fn new(name: &str, label: &str, field_type: FieldType) -> FieldDef {
        let numeric_with_scale = matches!(
            field_type,
            FieldType::Double | FieldType::Currency | FieldType::Percent
        );
        FieldDef {
            name: name.to_owned(),
            label: label.to_owned(),
            field_type,
            length: field_type.default_length(),
            precision: if numeric_with_scale { 18 } else { 0 },
            scale: if numeric_with_scale { 2 } else { 0 },
            digits: if field_type == FieldType::Int { 9 } else { 0 },
            nillable: true,
            createable: true,
            updateable: true,
            custom: false,
            defaulted_on_create: false,
            default_value: None,
            picklist_values: Vec::new(),
            restricted_picklist: false,
            reference_to: Vec::new(),
            compound_field_name: None,
            extra_type_info: None,
            formula: None,
            external_id: false,
            unique: false,
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

    pub(super) fn length(mut self, length: u32) -> Self {
        self.length = length;
        self
    }

    pub(super) fn required(mut self) -> Self {
        self.nillable = false;
        self
    }

    pub(super) fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    /// Settable on create only (e.g. Lead.IsConverted, Opportunity.ContactId).
    pub(super) fn create_only(mut self) -> Self {
        self.updateable = false;
        self
    }

    pub(super) fn system(self) -> Self {
        let mut field = self.read_only();
        field.nillable = false;
        field.defaulted_on_create = true;
        field
    }

    pub(super) fn defaulted(mut self) -> Self {
        self.defaulted_on_create = true;
        self
    }

    /// A checkbox: never null, `false` unless the create says otherwise.
    pub(super) fn flag(mut self) -> Self {
        self.nillable = false;
        self.defaulted_on_create = true;
        self.default_value = Some(Value::Bool(false));
        self
    }

    pub(super) fn default_to(mut self, value: Value) -> Self {
        self.defaulted_on_create = true;
        self.default_value = Some(value);
        self
    }

    pub(super) fn numeric(mut self, precision: u32, scale: u32) -> Self {
        self.precision = precision;
        self.scale = scale;
        self
    }

    pub(super) fn digits(mut self, digits: u32) -> Self {
        self.digits = digits;
        self
    }

    pub(super) fn picklist(mut self, values: &[&str]) -> Self {
        self.picklist_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    pub(super) fn restricted(mut self) -> Self {
        self.restricted_picklist = true;
        self
    }

    pub(super) fn references(self, object: &'static str) -> Self {
        self.references_any(&[object])
    }

    pub(super) fn references_any(mut self, objects: &[&'static str]) -> Self {
        self.reference_to = objects.to_vec();
        self
    }

    pub(super) fn part_of(mut self, compound: &'static str) -> Self {
        self.compound_field_name = Some(compound);
        self
    }

    pub(super) fn extra(mut self, info: &'static str) -> Self {
        self.extra_type_info = Some(info);
        self
    }

    /// Must a create supply this field?
    pub fn required_on_create(&self) -> bool {
        !self.nillable
            && self.createable
            && !self.defaulted_on_create
            && self.field_type != FieldType::Boolean
    }

    /// Long text areas (and compound fields) cannot appear in `WHERE` or `ORDER BY`.
    fn filterable(&self) -> bool {
        match self.field_type {
            FieldType::Textarea => self.length <= 255,
            FieldType::Address | FieldType::Location | FieldType::Base64 | FieldType::AnyType => {
                false
            }
            _ => true,
        }
    }

    pub fn describe(&self) -> Value {
        let numeric = self.field_type.is_numeric() && self.field_type != FieldType::Int;
        let filterable = self.filterable();
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.field_type.name(),
            "soapType": self.field_type.soap_type(),
            "length": self.length,
            "byteLength": if self.field_type.is_text() { self.length * 3 } else { 0 },
            "precision": if numeric { self.precision } else { 0 },
            "scale": if numeric { self.scale } else { 0 },
            "digits": self.digits,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "custom": self.custom,
            // Only formula fields are `calculated`; system-computed standard fields (Contact.Name,
            // Opportunity.ExpectedRevenue) are plain read-only fields in describe.
            "calculated": self.formula.is_some(),
            "calculatedFormula": self.formula.map(|_| "(computed by the simulator)"),
            "defaultedOnCreate": self.defaulted_on_create,
            "defaultValue": self.default_value.as_ref().filter(|v| v.is_boolean()),
            "filterable": filterable,
            "sortable": filterable,
            "groupable": filterable && !self.field_type.is_numeric() && self.field_type != FieldType::DateTime,
            "unique": self.unique,
            "externalId": self.external_id,
            "idLookup": self.field_type == FieldType::Id,
            "nameField": self.name == "Name",
            "compoundFieldName": self.compound_field_name,
            "extraTypeInfo": self.extra_type_info,
            "referenceTo": self.reference_to,
            "polymorphicForeignKey": self.reference_to.len() > 1,
            "relationshipName": (!self.reference_to.is_empty()).then(|| self.name.trim_end_matches("Id").to_owned()),
            "restrictedPicklist": self.restricted_picklist,
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
    /// A custom object (`__c`).
    pub custom: bool,
    /// describeGlobal's `queryable` and `retrieveable` (false for event types).
    pub queryable: bool,
    /// describeGlobal's `createable`, `updateable` and `deletable`.
    pub writable: bool,
    /// An implementation restriction: a query without `WHERE` is refused with this message.
    pub requires_filter: Option<&'static str>,
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
            "custom": self.custom,
            "createable": self.writable,
            "updateable": self.writable,
            "deletable": self.writable,
            "queryable": self.queryable,
            "retrieveable": self.queryable,
            "replicateable": self.queryable,
            "urls": {
                "sobject": base,
                "describe": format!("{base}/describe"),
                "rowTemplate": format!("{base}/{{ID}}"),
            },
        })
    }
}

/// Key prefixes of objects that references point at but the simulator does not serve; a
/// reference to one of them is accepted when it is a well-formed id with the right prefix.
pub const FOREIGN_KEY_PREFIXES: &[(&str, &str)] = &[
    ("User", "005"),
    ("Group", "00G"),
    ("Campaign", "701"),
    ("Pricebook2", "01s"),
    ("Individual", "0PK"),
    ("DandBCompany", "06E"),
];

/// Fields every sObject carries first.
pub(super) fn system_fields(object: &'static str) -> Vec<FieldDef> {
    vec![
        FieldDef::new("Id", &format!("{object} ID"), FieldType::Id).system(),
        FieldDef::new("IsDeleted", "Deleted", FieldType::Boolean).system(),
        // Set on the survivor's losers by a merge, which the simulator does not offer.
        FieldDef::new("MasterRecordId", "Master Record ID", FieldType::Reference)
            .references(object)
            .read_only(),
    ]
}

pub(super) fn owner(targets: &[&'static str]) -> FieldDef {
    FieldDef::new("OwnerId", "Owner ID", FieldType::Reference)
        .references_any(targets)
        .required()
        .defaulted()
}

pub(super) fn audit_fields() -> Vec<FieldDef> {
    vec![
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

/// Activity and recently-viewed dates: filled by tasks/events and the UI, never by the API.
pub(super) fn activity_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("LastActivityDate", "Last Activity", FieldType::Date).read_only(),
        FieldDef::new("LastViewedDate", "Last Viewed Date", FieldType::DateTime).read_only(),
        FieldDef::new(
            "LastReferencedDate",
            "Last Referenced Date",
            FieldType::DateTime,
        )
        .read_only(),
    ]
}

/// The component fields of a compound address and the compound itself: `prefix` is `Billing`,
/// `Mailing`, ... (empty for Lead's `Street`/`City`/... and `Address`).
pub(super) fn address_fields(prefix: &str, label: &str, compound: &'static str) -> Vec<FieldDef> {
    let name = |part: &str| format!("{prefix}{part}");
    let label = |part: &str| {
        if label.is_empty() {
            part.to_owned()
        } else {
            format!("{label} {part}")
        }
    };
    vec![
        FieldDef::new(&name("Street"), &label("Street"), FieldType::Textarea)
            .length(255)
            .extra("plaintextarea")
            .part_of(compound),
        FieldDef::new(&name("City"), &label("City"), FieldType::String)
            .length(40)
            .part_of(compound),
        FieldDef::new(&name("State"), &label("State/Province"), FieldType::String)
            .length(80)
            .part_of(compound),
        FieldDef::new(
            &name("PostalCode"),
            &label("Zip/Postal Code"),
            FieldType::String,
        )
        .length(20)
        .part_of(compound),
        FieldDef::new(&name("Country"), &label("Country"), FieldType::String)
            .length(80)
            .part_of(compound),
        FieldDef::new(&name("Latitude"), &label("Latitude"), FieldType::Double)
            .numeric(18, 15)
            .part_of(compound),
        FieldDef::new(&name("Longitude"), &label("Longitude"), FieldType::Double)
            .numeric(18, 15)
            .part_of(compound),
        FieldDef::new(
            &name("GeocodeAccuracy"),
            &label("Geocode Accuracy"),
            FieldType::Picklist,
        )
        .picklist(GEOCODE_ACCURACIES)
        .restricted()
        .length(40)
        .part_of(compound),
        FieldDef::new(compound, &label("Address"), FieldType::Address).read_only(),
    ]
}

/// The person-name fields of Contact and Lead; `Name` is assembled from the parts.
fn name_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("LastName", "Last Name", FieldType::String)
            .length(80)
            .required()
            .part_of("Name"),
        FieldDef::new("FirstName", "First Name", FieldType::String)
            .length(40)
            .part_of("Name"),
        FieldDef::new("Salutation", "Salutation", FieldType::Picklist)
            .picklist(&["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."])
            .length(40)
            .part_of("Name"),
        FieldDef::new("MiddleName", "Middle Name", FieldType::String)
            .length(40)
            .part_of("Name"),
        FieldDef::new("Suffix", "Name Suffix", FieldType::String)
            .length(40)
            .part_of("Name"),
        FieldDef::new("Name", "Full Name", FieldType::String)
            .length(121)
            .extra("personname")
            .read_only(),
    ]
}

fn photo_url() -> FieldDef {
    FieldDef::new("PhotoUrl", "Photo URL", FieldType::Url)
        .extra("imageurl")
        .read_only()
}

fn clean_status() -> FieldDef {
    FieldDef::new("CleanStatus", "Clean Status", FieldType::Picklist)
        .picklist(CLEAN_STATUSES)
        .restricted()
        .length(40)
        .default_to(Value::String("Pending".into()))
}

fn email_bounce_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new(
            "EmailBouncedReason",
            "Email Bounced Reason",
            FieldType::String,
        ),
        FieldDef::new(
            "EmailBouncedDate",
            "Email Bounced Date",
            FieldType::DateTime,
        ),
    ]
}

pub const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
pub const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
];
pub const RATINGS: &[&str] = &["Hot", "Warm", "Cold"];
const CLEAN_STATUSES: &[&str] = &[
    "Matched",
    "Different",
    "Acknowledged",
    "NotFound",
    "Inactive",
    "Pending",
    "SelectMatch",
    "Skipped",
];
const GEOCODE_ACCURACIES: &[&str] = &[
    "Address",
    "NearAddress",
    "Block",
    "Street",
    "ExtendedZip",
    "Zip",
    "Neighborhood",
    "City",
    "County",
    "State",
    "Unknown",
];

/// The default org's opportunity stages with their default probability and forecast category
/// (Setup > Opportunity Stages), which a create or a stage change applies.
pub const STAGES: &[(&str, u32, &str)] = &[
    ("Prospecting", 10, "Pipeline"),
    ("Qualification", 10, "Pipeline"),
    ("Needs Analysis", 20, "Pipeline"),
    ("Value Proposition", 50, "Pipeline"),
    ("Id. Decision Makers", 60, "Pipeline"),
    ("Perception Analysis", 70, "Pipeline"),
    ("Proposal/Price Quote", 75, "Pipeline"),
    ("Negotiation/Review", 90, "Pipeline"),
    ("Closed Won", 100, "Closed"),
    ("Closed Lost", 0, "Omitted"),
];
/// `ForecastCategoryName` (the label) and the `ForecastCategory` API value it implies.
pub const FORECAST_CATEGORIES: &[(&str, &str)] = &[
    ("Omitted", "Omitted"),
    ("Pipeline", "Pipeline"),
    ("Best Case", "BestCase"),
    ("Commit", "Forecast"),
    ("Closed", "Closed"),
];
pub const LEAD_STATUSES: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];

fn object(
    name: &'static str,
    label_plural: &'static str,
    key_prefix: &'static str,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    let mut all = system_fields(name);
    all.extend(fields);
    ObjectDef {
        name,
        label: name,
        label_plural,
        key_prefix,
        fields: all,
        custom: false,
        queryable: true,
        writable: true,
        requires_filter: None,
    }
}

fn account() -> ObjectDef {
    use FieldType as T;
    let mut fields = vec![
        FieldDef::new("Name", "Account Name", T::String).required(),
        FieldDef::new("Type", "Account Type", T::Picklist).picklist(&[
            "Prospect",
            "Customer - Direct",
            "Customer - Channel",
            "Channel Partner / Reseller",
            "Installation Partner",
            "Technology Partner",
            "Other",
        ]),
        FieldDef::new("ParentId", "Parent Account ID", T::Reference).references("Account"),
    ];
    fields.extend(address_fields("Billing", "Billing", "BillingAddress"));
    fields.extend(address_fields("Shipping", "Shipping", "ShippingAddress"));
    fields.extend([
        FieldDef::new("Phone", "Account Phone", T::Phone),
        FieldDef::new("Fax", "Account Fax", T::Phone),
        FieldDef::new("AccountNumber", "Account Number", T::String).length(40),
        FieldDef::new("Website", "Website", T::Url),
        photo_url(),
        FieldDef::new("Sic", "SIC Code", T::String).length(20),
        FieldDef::new("Industry", "Industry", T::Picklist)
            .picklist(INDUSTRIES)
            .length(40),
        FieldDef::new("AnnualRevenue", "Annual Revenue", T::Currency).numeric(18, 0),
        FieldDef::new("NumberOfEmployees", "Employees", T::Int).digits(8),
        FieldDef::new("Ownership", "Ownership", T::Picklist)
            .picklist(&["Public", "Private", "Subsidiary", "Other"])
            .length(40),
        FieldDef::new("TickerSymbol", "Ticker Symbol", T::String).length(20),
        FieldDef::new("Description", "Account Description", T::Textarea),
        FieldDef::new("Rating", "Account Rating", T::Picklist)
            .picklist(RATINGS)
            .length(40),
        FieldDef::new("Site", "Account Site", T::String).length(80),
        owner(&["User"]),
    ]);
    fields.extend(audit_fields());
    fields.extend(activity_fields());
    fields.extend([
        FieldDef::new("Jigsaw", "Data.com Key", T::String).length(20),
        FieldDef::new("JigsawCompanyId", "Jigsaw Company ID", T::String)
            .length(20)
            .read_only(),
        clean_status(),
        FieldDef::new("AccountSource", "Account Source", T::Picklist)
            .picklist(LEAD_SOURCES)
            .length(40),
        FieldDef::new("DunsNumber", "D-U-N-S Number", T::String).length(9),
        FieldDef::new("Tradestyle", "Tradestyle", T::String),
        FieldDef::new("NaicsCode", "NAICS Code", T::String).length(8),
        FieldDef::new("NaicsDesc", "NAICS Description", T::String).length(120),
        FieldDef::new("YearStarted", "Year Started", T::String).length(4),
        FieldDef::new("SicDesc", "SIC Description", T::String).length(80),
        FieldDef::new("DandbCompanyId", "D&B Company ID", T::Reference).references("DandBCompany"),
    ]);
    object("Account", "Accounts", "001", fields)
}

fn contact() -> ObjectDef {
    use FieldType as T;
    let mut fields =
        vec![FieldDef::new("AccountId", "Account ID", T::Reference).references("Account")];
    fields.extend(name_fields());
    fields.extend(address_fields("Other", "Other", "OtherAddress"));
    fields.extend(address_fields("Mailing", "Mailing", "MailingAddress"));
    fields.extend([
        FieldDef::new("Phone", "Business Phone", T::Phone),
        FieldDef::new("Fax", "Business Fax", T::Phone),
        FieldDef::new("MobilePhone", "Mobile Phone", T::Phone),
        FieldDef::new("HomePhone", "Home Phone", T::Phone),
        FieldDef::new("OtherPhone", "Other Phone", T::Phone),
        FieldDef::new("AssistantPhone", "Asst. Phone", T::Phone),
        FieldDef::new("ReportsToId", "Reports To ID", T::Reference).references("Contact"),
        FieldDef::new("Email", "Email", T::Email).length(80),
        FieldDef::new("Title", "Title", T::String).length(128),
        FieldDef::new("Department", "Department", T::String).length(80),
        FieldDef::new("AssistantName", "Assistant's Name", T::String).length(40),
        FieldDef::new("LeadSource", "Lead Source", T::Picklist)
            .picklist(LEAD_SOURCES)
            .length(40),
        FieldDef::new("Birthdate", "Birthdate", T::Date),
        FieldDef::new("Description", "Contact Description", T::Textarea),
        owner(&["User"]),
        FieldDef::new("HasOptedOutOfEmail", "Email Opt Out", T::Boolean).flag(),
        FieldDef::new("HasOptedOutOfFax", "Fax Opt Out", T::Boolean).flag(),
        FieldDef::new("DoNotCall", "Do Not Call", T::Boolean).flag(),
    ]);
    fields.extend(audit_fields());
    fields.extend(activity_fields());
    fields.extend([
        FieldDef::new(
            "LastCURequestDate",
            "Last Stay-in-Touch Request Date",
            T::DateTime,
        )
        .read_only(),
        FieldDef::new(
            "LastCUUpdateDate",
            "Last Stay-in-Touch Save Date",
            T::DateTime,
        )
        .read_only(),
    ]);
    fields.extend(email_bounce_fields());
    fields.extend([
        // True while a bounce is recorded; the server derives it from the two fields above.
        FieldDef::new("IsEmailBounced", "Is Email Bounced", T::Boolean).system(),
        photo_url(),
        FieldDef::new("Jigsaw", "Data.com Key", T::String).length(20),
        FieldDef::new("JigsawContactId", "Jigsaw Contact ID", T::String)
            .length(20)
            .read_only(),
        clean_status(),
        FieldDef::new("IndividualId", "Individual ID", T::Reference).references("Individual"),
    ]);
    object("Contact", "Contacts", "003", fields)
}

fn lead() -> ObjectDef {
    use FieldType as T;
    let mut fields = name_fields();
    fields.extend([
        FieldDef::new("Title", "Title", T::String).length(128),
        FieldDef::new("Company", "Company", T::String).required(),
    ]);
    fields.extend(address_fields("", "", "Address"));
    fields.extend([
        FieldDef::new("Phone", "Phone", T::Phone),
        FieldDef::new("MobilePhone", "Mobile Phone", T::Phone),
        FieldDef::new("Fax", "Fax", T::Phone),
        FieldDef::new("Email", "Email", T::Email).length(80),
        FieldDef::new("Website", "Website", T::Url),
        photo_url(),
        FieldDef::new("Description", "Description", T::Textarea),
        FieldDef::new("LeadSource", "Lead Source", T::Picklist)
            .picklist(LEAD_SOURCES)
            .length(40),
        FieldDef::new("Status", "Status", T::Picklist)
            .picklist(LEAD_STATUSES)
            .length(40)
            .required()
            .default_to(Value::String(LEAD_STATUSES[0].into())),
        FieldDef::new("Industry", "Industry", T::Picklist)
            .picklist(INDUSTRIES)
            .length(40),
        FieldDef::new("Rating", "Rating", T::Picklist)
            .picklist(RATINGS)
            .length(40),
        FieldDef::new("AnnualRevenue", "Annual Revenue", T::Currency).numeric(18, 0),
        FieldDef::new("NumberOfEmployees", "Employees", T::Int).digits(8),
        // A lead queue (Group) or a user may own a lead.
        owner(&["Group", "User"]),
        FieldDef::new("HasOptedOutOfEmail", "Email Opt Out", T::Boolean).flag(),
        // Conversion happens through convertLead, not a field write; only an insert may set it.
        FieldDef::new("IsConverted", "Converted", T::Boolean)
            .flag()
            .create_only(),
        FieldDef::new("ConvertedDate", "Converted Date", T::Date).read_only(),
        FieldDef::new("ConvertedAccountId", "Converted Account ID", T::Reference)
            .references("Account")
            .read_only(),
        FieldDef::new("ConvertedContactId", "Converted Contact ID", T::Reference)
            .references("Contact")
            .read_only(),
        FieldDef::new(
            "ConvertedOpportunityId",
            "Converted Opportunity ID",
            T::Reference,
        )
        .references("Opportunity")
        .read_only(),
        FieldDef::new("IsUnreadByOwner", "Unread By Owner", T::Boolean).flag(),
    ]);
    fields.extend(audit_fields());
    fields.extend([
        FieldDef::new("HasOptedOutOfFax", "Fax Opt Out", T::Boolean).flag(),
        FieldDef::new("DoNotCall", "Do Not Call", T::Boolean).flag(),
    ]);
    fields.extend(activity_fields());
    fields.extend([
        FieldDef::new("LastTransferDate", "Last Transfer Date", T::Date).read_only(),
        FieldDef::new("Jigsaw", "Data.com Key", T::String).length(20),
        FieldDef::new("JigsawContactId", "Jigsaw Contact ID", T::String)
            .length(20)
            .read_only(),
        clean_status(),
        FieldDef::new("CompanyDunsNumber", "Company D-U-N-S Number", T::String).length(9),
        FieldDef::new("DandbCompanyId", "D&B Company ID", T::Reference).references("DandBCompany"),
    ]);
    fields.extend(email_bounce_fields());
    fields.push(
        FieldDef::new("IndividualId", "Individual ID", T::Reference).references("Individual"),
    );
    object("Lead", "Leads", "00Q", fields)
}

fn opportunity() -> ObjectDef {
    use FieldType as T;
    let stage_names: Vec<&str> = STAGES.iter().map(|(name, _, _)| *name).collect();
    let forecast_names: Vec<&str> = FORECAST_CATEGORIES.iter().map(|(name, _)| *name).collect();
    let forecast_values: Vec<&str> = FORECAST_CATEGORIES
        .iter()
        .map(|(_, value)| *value)
        .collect();
    let mut fields = vec![
        FieldDef::new("AccountId", "Account ID", T::Reference).references("Account"),
        FieldDef::new("IsPrivate", "Private", T::Boolean).flag(),
        FieldDef::new("Name", "Name", T::String)
            .length(120)
            .required(),
        FieldDef::new("Description", "Description", T::Textarea),
        FieldDef::new("StageName", "Stage", T::Picklist)
            .picklist(&stage_names)
            .length(40)
            .required(),
        FieldDef::new("Amount", "Amount", T::Currency),
        // Defaults to the stage's probability, and follows stage changes unless set alongside.
        FieldDef::new("Probability", "Probability (%)", T::Percent)
            .numeric(3, 0)
            .defaulted(),
        FieldDef::new("ExpectedRevenue", "Expected Amount", T::Currency).read_only(),
        FieldDef::new("TotalOpportunityQuantity", "Quantity", T::Double),
        FieldDef::new("CloseDate", "Close Date", T::Date).required(),
        FieldDef::new("Type", "Opportunity Type", T::Picklist)
            .picklist(&[
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ])
            .length(40),
        FieldDef::new("NextStep", "Next Step", T::String),
        FieldDef::new("LeadSource", "Lead Source", T::Picklist)
            .picklist(LEAD_SOURCES)
            .length(40),
        FieldDef::new("IsClosed", "Closed", T::Boolean).system(),
        FieldDef::new("IsWon", "Won", T::Boolean).system(),
        FieldDef::new("ForecastCategory", "Forecast Category", T::Picklist)
            .picklist(&forecast_values)
            .restricted()
            .length(40)
            .system(),
        FieldDef::new("ForecastCategoryName", "Forecast Category", T::Picklist)
            .picklist(&forecast_names)
            .restricted()
            .length(40)
            .defaulted(),
        FieldDef::new("CampaignId", "Campaign ID", T::Reference).references("Campaign"),
        FieldDef::new("HasOpportunityLineItem", "Has Line Item", T::Boolean).system(),
        FieldDef::new("Pricebook2Id", "Price Book ID", T::Reference).references("Pricebook2"),
        owner(&["User"]),
    ];
    fields.extend(audit_fields());
    fields.extend(activity_fields());
    fields.extend([
        // From the primary contact role, which only an insert can name.
        FieldDef::new("ContactId", "Contact ID", T::Reference)
            .references("Contact")
            .create_only(),
        // Fiscal period of CloseDate under the default fiscal year (starting in January).
        FieldDef::new("FiscalQuarter", "Fiscal Quarter", T::Int)
            .digits(11)
            .read_only(),
        FieldDef::new("FiscalYear", "Fiscal Year", T::Int)
            .digits(4)
            .read_only(),
        FieldDef::new("Fiscal", "Fiscal Period", T::String)
            .length(6)
            .read_only(),
        FieldDef::new("LastStageChangeDate", "Last Stage Change Date", T::DateTime).read_only(),
        FieldDef::new("HasOpenActivity", "Has Open Activity", T::Boolean).system(),
        FieldDef::new("HasOverdueTask", "Has Overdue Task", T::Boolean).system(),
    ]);
    object("Opportunity", "Opportunities", "006", fields)
}

/// The standard objects, in the order `GET /sobjects` lists them.
pub fn standard_objects() -> Vec<ObjectDef> {
    vec![account(), contact(), lead(), opportunity()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_unique_and_components_name_their_compound() {
        for object in standard_objects() {
            let mut names: Vec<&str> = object.fields.iter().map(|f| f.name.as_str()).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "duplicate field on {}", object.name);
            for field in &object.fields {
                if let Some(compound) = field.compound_field_name {
                    assert!(
                        object.field(compound).is_some(),
                        "{}.{} names missing compound {compound}",
                        object.name,
                        field.name
                    );
                }
            }
        }
    }
}
