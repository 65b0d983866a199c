//! The rest of the simulated org's catalogue, beside Account, Contact, Lead and Opportunity
//! (`schema.rs`): further standard objects as Salesforce's Object Reference describes them
//! (Case, Task, Event, Campaign, CampaignMember, Product2, Pricebook2, PricebookEntry,
//! Contract, Order, OrderItem, Asset, Solution, User, Note, Attachment), objects an
//! integration has to leave alone or treat specially (AccountHistory without SystemModstamp or
//! LastModifiedDate, AccountShare with LastModifiedDate only, ContentDocumentLink that refuses a
//! query without a filter, AccountChangeEvent that is not queryable), five custom objects with
//! custom fields of several types (a lookup, a formula, a geolocation), their seed records, and
//! custom objects created at run time.
//!
//! Fields follow the Object Reference (names, types, which are createable/updateable), reduced
//! to those every org has.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::schema::{
    FieldDef, FieldType as T, ObjectDef, activity_fields, address_fields, audit_fields, owner,
};
use super::store::{Org, SfError};

/// `Id` and `IsDeleted`, which nearly every object has.
fn id_fields(object: &str) -> Vec<FieldDef> {
    vec![
        FieldDef::new("Id", &format!("{object} ID"), T::Id).system(),
        FieldDef::new("IsDeleted", "Deleted", T::Boolean).system(),
    ]
}

/// A standard object with `Id`, `IsDeleted`, `fields` and the audit fields.
fn standard(
    name: &'static str,
    label_plural: &'static str,
    key_prefix: &'static str,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    let mut all = id_fields(name);
    all.extend(fields);
    all.extend(audit_fields());
    def(name, label_plural, key_prefix, all)
}

fn def(
    name: &'static str,
    label_plural: &'static str,
    key_prefix: &'static str,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    ObjectDef {
        name,
        label: name,
        label_plural,
        key_prefix,
        fields,
        custom: false,
        queryable: true,
        writable: true,
        requires_filter: None,
    }
}

fn text(name: &str, length: u32) -> FieldDef {
    FieldDef::new(name, name, T::String).length(length)
}

fn pick(name: &str, values: &[&str]) -> FieldDef {
    FieldDef::new(name, name, T::Picklist)
        .picklist(values)
        .length(255)
}

fn refs(name: &str, target: &'static str) -> FieldDef {
    FieldDef::new(name, name, T::Reference).references(target)
}

fn money(name: &str) -> FieldDef {
    FieldDef::new(name, name, T::Currency).numeric(18, 2)
}

fn case() -> ObjectDef {
    standard(
        "Case",
        "Cases",
        "500",
        vec![
            refs("AccountId", "Account"),
            refs("ContactId", "Contact"),
            text("Subject", 255),
            FieldDef::new("Description", "Description", T::Textarea),
            pick("Status", &["New", "Working", "Escalated", "Closed"])
                .required()
                .default_to(json!("New")),
            pick("Priority", &["High", "Medium", "Low"]),
            pick("Origin", &["Phone", "Email", "Web"]),
            FieldDef::new("ClosedDate", "Closed Date", T::DateTime).read_only(),
            owner(&["User"]),
        ],
    )
}

fn activity_targets(fields: &mut Vec<FieldDef>) {
    fields
        .push(FieldDef::new("WhoId", "Name ID", T::Reference).references_any(&["Contact", "Lead"]));
    fields.push(
        FieldDef::new("WhatId", "Related To ID", T::Reference).references_any(&[
            "Account",
            "Opportunity",
            "Case",
        ]),
    );
}

fn task() -> ObjectDef {
    let mut fields = Vec::new();
    activity_targets(&mut fields);
    fields.extend([
        text("Subject", 255),
        FieldDef::new("ActivityDate", "Due Date Only", T::Date),
        pick("Status", &["Not Started", "In Progress", "Completed"])
            .required()
            .default_to(json!("Not Started")),
        pick("Priority", &["High", "Normal", "Low"])
            .required()
            .default_to(json!("Normal")),
        FieldDef::new("Description", "Description", T::Textarea),
        owner(&["User"]),
    ]);
    standard("Task", "Tasks", "00T", fields)
}

fn event() -> ObjectDef {
    let mut fields = Vec::new();
    activity_targets(&mut fields);
    fields.extend([
        text("Subject", 255),
        text("Location", 255),
        FieldDef::new("StartDateTime", "Start", T::DateTime),
        FieldDef::new("EndDateTime", "End", T::DateTime),
        FieldDef::new("IsAllDayEvent", "All-Day Event", T::Boolean).flag(),
        FieldDef::new("DurationInMinutes", "Duration", T::Int).digits(8),
        FieldDef::new("Description", "Description", T::Textarea),
        owner(&["User"]),
    ]);
    standard("Event", "Events", "00U", fields)
}

fn campaign() -> ObjectDef {
    let mut fields = vec![
        text("Name", 80).required(),
        pick("Type", &["Conference", "Webinar", "Email", "Advertisement"]),
        pick(
            "Status",
            &["Planned", "In Progress", "Completed", "Aborted"],
        ),
        FieldDef::new("StartDate", "Start Date", T::Date),
        FieldDef::new("EndDate", "End Date", T::Date),
        money("BudgetedCost"),
        money("ActualCost"),
        FieldDef::new("IsActive", "Active", T::Boolean).flag(),
        FieldDef::new("NumberOfLeads", "Leads in Campaign", T::Int)
            .digits(9)
            .read_only(),
        owner(&["User"]),
    ];
    fields.extend(activity_fields());
    standard("Campaign", "Campaigns", "701", fields)
}

fn campaign_member() -> ObjectDef {
    standard(
        "CampaignMember",
        "Campaign Members",
        "00v",
        vec![
            refs("CampaignId", "Campaign").required().create_only(),
            refs("LeadId", "Lead").create_only(),
            refs("ContactId", "Contact").create_only(),
            pick("Status", &["Sent", "Responded"]),
        ],
    )
}

fn product() -> ObjectDef {
    standard(
        "Product2",
        "Products",
        "01t",
        vec![
            text("Name", 255).required(),
            text("ProductCode", 255),
            FieldDef::new("Description", "Product Description", T::Textarea).length(4000),
            FieldDef::new("IsActive", "Active", T::Boolean).flag(),
            pick("Family", &["Hardware", "Software", "Services"]),
        ],
    )
}

fn pricebook() -> ObjectDef {
    standard(
        "Pricebook2",
        "Price Books",
        "01s",
        vec![
            text("Name", 255).required(),
            FieldDef::new("IsActive", "Active", T::Boolean).flag(),
            FieldDef::new("IsStandard", "Is Standard Price Book", T::Boolean).system(),
            text("Description", 255),
        ],
    )
}

fn pricebook_entry() -> ObjectDef {
    standard(
        "PricebookEntry",
        "Price Book Entries",
        "01u",
        vec![
            text("Name", 255).read_only(),
            refs("Pricebook2Id", "Pricebook2").required().create_only(),
            refs("Product2Id", "Product2").required().create_only(),
            money("UnitPrice").required(),
            FieldDef::new("IsActive", "Active", T::Boolean).flag(),
            FieldDef::new("UseStandardPrice", "Use Standard Price", T::Boolean).flag(),
        ],
    )
}

fn contract() -> ObjectDef {
    let mut fields = vec![
        refs("AccountId", "Account").required(),
        pick("Status", &["Draft", "In Approval Process", "Activated"])
            .required()
            .default_to(json!("Draft")),
        FieldDef::new("StartDate", "Contract Start Date", T::Date),
        FieldDef::new("ContractTerm", "Contract Term", T::Int).digits(4),
        FieldDef::new("Description", "Description", T::Textarea),
    ];
    fields.extend(address_fields("Billing", "Billing", "BillingAddress"));
    fields.push(owner(&["User"]));
    fields.extend(activity_fields());
    standard("Contract", "Contracts", "800", fields)
}

fn order() -> ObjectDef {
    standard(
        "Order",
        "Orders",
        "801",
        vec![
            refs("AccountId", "Account").required(),
            refs("ContractId", "Contract"),
            refs("Pricebook2Id", "Pricebook2"),
            FieldDef::new("EffectiveDate", "Order Start Date", T::Date).required(),
            pick("Status", &["Draft", "Activated"])
                .required()
                .default_to(json!("Draft")),
            FieldDef::new("Description", "Description", T::Textarea),
            owner(&["User"]),
        ],
    )
}

fn order_item() -> ObjectDef {
    let mut total = money("TotalPrice").read_only();
    total.formula = Some(|v| product_of(v, "Quantity", "UnitPrice"));
    standard(
        "OrderItem",
        "Order Products",
        "802",
        vec![
            refs("OrderId", "Order").required().create_only(),
            refs("PricebookEntryId", "PricebookEntry")
                .required()
                .create_only(),
            FieldDef::new("Quantity", "Quantity", T::Double)
                .numeric(18, 2)
                .required(),
            money("UnitPrice").required(),
            total,
            text("Description", 255),
        ],
    )
}

fn asset() -> ObjectDef {
    standard(
        "Asset",
        "Assets",
        "02i",
        vec![
            text("Name", 255).required(),
            refs("AccountId", "Account"),
            refs("ContactId", "Contact"),
            refs("Product2Id", "Product2"),
            text("SerialNumber", 80),
            FieldDef::new("PurchaseDate", "Purchase Date", T::Date),
            FieldDef::new("InstallDate", "Install Date", T::Date),
            pick("Status", &["Purchased", "Shipped", "Installed", "Obsolete"]),
            money("Price"),
            FieldDef::new("Quantity", "Quantity", T::Double).numeric(18, 2),
            owner(&["User"]),
        ],
    )
}

fn solution() -> ObjectDef {
    standard(
        "Solution",
        "Solutions",
        "501",
        vec![
            text("SolutionName", 255).required(),
            pick("Status", &["Draft", "Reviewed", "Duplicate"])
                .required()
                .default_to(json!("Draft")),
            FieldDef::new("IsPublished", "Public", T::Boolean).flag(),
            FieldDef::new("SolutionNote", "Solution Details", T::Textarea),
            owner(&["User"]),
        ],
    )
}

/// User has no `IsDeleted`: users are deactivated, never deleted.
fn user() -> ObjectDef {
    let mut fields = vec![FieldDef::new("Id", "User ID", T::Id).system()];
    fields.extend([
        text("Username", 80).required(),
        text("LastName", 80).required(),
        text("FirstName", 40),
        text("Alias", 8).required(),
        FieldDef::new("Email", "Email", T::Email)
            .length(128)
            .required(),
        FieldDef::new("IsActive", "Active", T::Boolean).flag(),
        pick(
            "TimeZoneSidKey",
            &["America/Los_Angeles", "Europe/Paris", "Asia/Tokyo"],
        )
        .required(),
        text("Title", 80),
        text("Department", 80),
        FieldDef::new("Phone", "Phone", T::Phone),
    ]);
    fields.extend(audit_fields());
    def("User", "Users", "005", fields)
}

fn parents() -> [&'static str; 4] {
    ["Account", "Contact", "Opportunity", "Case"]
}

fn note() -> ObjectDef {
    standard(
        "Note",
        "Notes",
        "002",
        vec![
            FieldDef::new("ParentId", "Parent ID", T::Reference)
                .references_any(&parents())
                .required()
                .create_only(),
            text("Title", 255).required(),
            FieldDef::new("Body", "Body", T::Textarea),
            FieldDef::new("IsPrivate", "Private", T::Boolean).flag(),
            owner(&["User"]),
        ],
    )
}

/// Attachment's `Body` is base64: a query returns it one record at a time.
fn attachment() -> ObjectDef {
    standard(
        "Attachment",
        "Attachments",
        "00P",
        vec![
            FieldDef::new("ParentId", "Parent ID", T::Reference)
                .references_any(&parents())
                .required()
                .create_only(),
            text("Name", 255).required(),
            text("ContentType", 120),
            FieldDef::new("Body", "Body", T::Base64).required(),
            FieldDef::new("IsPrivate", "Private", T::Boolean).flag(),
            FieldDef::new("Description", "Description", T::Textarea).length(500),
            owner(&["User"]),
        ],
    )
}

/// Field history: rows written by Salesforce, without SystemModstamp or LastModifiedDate.
fn account_history() -> ObjectDef {
    let mut d = def(
        "AccountHistory",
        "Account History",
        "017",
        vec![
            FieldDef::new("Id", "Account History ID", T::Id).system(),
            FieldDef::new("IsDeleted", "Deleted", T::Boolean).system(),
            refs("AccountId", "Account").read_only(),
            FieldDef::new("CreatedById", "Created By ID", T::Reference)
                .references("User")
                .system(),
            FieldDef::new("CreatedDate", "Created Date", T::DateTime).system(),
            pick("Field", &["Name", "Phone", "Industry", "created"]).read_only(),
            FieldDef::new("OldValue", "Old Value", T::AnyType).read_only(),
            FieldDef::new("NewValue", "New Value", T::AnyType).read_only(),
        ],
    );
    d.writable = false;
    d
}

/// Sharing rows: LastModifiedDate, no SystemModstamp.
fn account_share() -> ObjectDef {
    def(
        "AccountShare",
        "Account Share",
        "00r",
        vec![
            FieldDef::new("Id", "Account Share ID", T::Id).system(),
            refs("AccountId", "Account").required().create_only(),
            FieldDef::new("UserOrGroupId", "User/Group ID", T::Reference)
                .references_any(&["User", "Group"])
                .required()
                .create_only(),
            pick("AccountAccessLevel", &["Read", "Edit", "All"]).required(),
            pick("OpportunityAccessLevel", &["None", "Read", "Edit"]).required(),
            pick("RowCause", &["Manual", "Owner", "Rule"]).read_only(),
            FieldDef::new("LastModifiedDate", "Last Modified Date", T::DateTime).system(),
            FieldDef::new("LastModifiedById", "Last Modified By ID", T::Reference)
                .references("User")
                .system(),
            FieldDef::new("IsDeleted", "Deleted", T::Boolean).system(),
        ],
    )
}

/// Refuses a query without a filter on ContentDocumentId or LinkedEntityId.
fn content_document_link() -> ObjectDef {
    let mut d = def(
        "ContentDocumentLink",
        "Content Document Link",
        "06A",
        vec![
            FieldDef::new("Id", "ContentDocumentLink ID", T::Id).system(),
            FieldDef::new("LinkedEntityId", "Linked Entity ID", T::Reference)
                .references_any(&parents())
                .required()
                .create_only(),
            text("ContentDocumentId", 18).required().create_only(),
            pick("ShareType", &["V", "C", "I"]),
            pick("Visibility", &["AllUsers", "InternalUsers"]),
            FieldDef::new("IsDeleted", "Deleted", T::Boolean).system(),
            FieldDef::new("SystemModstamp", "System Modstamp", T::DateTime).system(),
        ],
    );
    d.requires_filter = Some(
        "ContentDocumentLink requires a filter by a single Id on ContentDocumentId or LinkedEntityId using the \
         equals operator or multiple Id's using the IN operator.",
    );
    d
}

/// A Change Data Capture event type: listed by describeGlobal, not queryable.
fn account_change_event() -> ObjectDef {
    let mut d = def(
        "AccountChangeEvent",
        "Change Events: Account",
        "1CE",
        vec![FieldDef::new("Id", "Change Event ID", T::Id).system()],
    );
    d.queryable = false;
    d.writable = false;
    d
}

/// The fields of every custom object (`Name` is the record name, text).
fn custom_object_fields(object: &str) -> Vec<FieldDef> {
    let mut fields = vec![
        FieldDef::new("Id", "Record ID", T::Id).system(),
        owner(&["User", "Group"]),
        FieldDef::new("IsDeleted", "Deleted", T::Boolean).system(),
        FieldDef::new("Name", &format!("{object} Name"), T::String)
            .length(80)
            .required(),
    ];
    fields.extend(audit_fields());
    fields.extend(activity_fields());
    fields
}

/// A custom object (`name` ends in `__c`) with `fields` after the standard ones.
pub fn custom_object(
    name: &'static str,
    label: &'static str,
    key_prefix: &'static str,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    let mut all = custom_object_fields(label);
    all.extend(fields.into_iter().map(|mut f| {
        f.custom = true;
        f
    }));
    ObjectDef {
        name,
        label,
        label_plural: label,
        key_prefix,
        fields: all,
        custom: true,
        queryable: true,
        writable: true,
        requires_filter: None,
    }
}

/// `a * b` of two numeric values, or null when either is.
fn product_of(values: &HashMap<String, Value>, a: &str, b: &str) -> Value {
    match (
        values.get(a).and_then(Value::as_f64),
        values.get(b).and_then(Value::as_f64),
    ) {
        (Some(a), Some(b)) => json!(((a * b) * 100.0).round() / 100.0),
        _ => Value::Null,
    }
}

fn formula(name: &str, ty: T, f: super::schema::Formula) -> FieldDef {
    let mut field = FieldDef::new(name, name, ty).numeric(18, 2).read_only();
    field.formula = Some(f);
    field
}

fn invoice() -> ObjectDef {
    custom_object(
        "Invoice__c",
        "Invoice",
        "a0A",
        vec![
            refs("Account__c", "Account"),
            money("Amount__c"),
            FieldDef::new("TaxRate__c", "Tax Rate", T::Percent).numeric(5, 2),
            formula("Total__c", T::Currency, |v| {
                match (
                    v.get("Amount__c").and_then(Value::as_f64),
                    v.get("TaxRate__c").and_then(Value::as_f64),
                ) {
                    (Some(a), t) => {
                        json!((a * (1.0 + t.unwrap_or(0.0) / 100.0) * 100.0).round() / 100.0)
                    }
                    _ => Value::Null,
                }
            }),
            pick("Status__c", &["Draft", "Sent", "Paid"])
                .restricted()
                .default_to(json!("Draft")),
            FieldDef::new("Paid__c", "Paid", T::Boolean).flag(),
            FieldDef::new("DueDate__c", "Due Date", T::Date),
            FieldDef::new("Notes__c", "Notes", T::Textarea).length(32768),
            FieldDef::new("ContactEmail__c", "Contact Email", T::Email).length(80),
        ],
    )
}

fn project() -> ObjectDef {
    custom_object(
        "Project__c",
        "Project",
        "a0B",
        vec![
            money("Budget__c"),
            FieldDef::new("Start__c", "Start", T::Date),
            FieldDef::new("Kickoff__c", "Kickoff", T::DateTime),
            FieldDef::new("Site__Latitude__s", "Site (Latitude)", T::Double)
                .numeric(18, 15)
                .part_of("Site__c"),
            FieldDef::new("Site__Longitude__s", "Site (Longitude)", T::Double)
                .numeric(18, 15)
                .part_of("Site__c"),
            FieldDef::new("Site__c", "Site", T::Location).read_only(),
            FieldDef::new("Website__c", "Website", T::Url),
            pick("Phase__c", &["Plan", "Build", "Run"]),
            FieldDef::new("Headcount__c", "Headcount", T::Double).numeric(3, 0),
        ],
    )
}

fn shipment() -> ObjectDef {
    custom_object(
        "Shipment__c",
        "Shipment",
        "a0C",
        vec![
            refs("Invoice__c", "Invoice__c"),
            text("Tracking__c", 40),
            FieldDef::new("Weight__c", "Weight", T::Double).numeric(10, 3),
            FieldDef::new("Shipped__c", "Shipped", T::DateTime),
            FieldDef::new("Delivered__c", "Delivered", T::Boolean).flag(),
        ],
    )
}

fn timesheet() -> ObjectDef {
    custom_object(
        "Timesheet__c",
        "Timesheet",
        "a0D",
        vec![
            refs("Project__c", "Project__c"),
            FieldDef::new("Hours__c", "Hours", T::Double).numeric(4, 2),
            FieldDef::new("Week__c", "Week", T::Date),
            FieldDef::new("Billable__c", "Billable", T::Boolean).flag(),
            money("Rate__c"),
            formula("Cost__c", T::Currency, |v| {
                product_of(v, "Hours__c", "Rate__c")
            }),
        ],
    )
}

fn vendor() -> ObjectDef {
    custom_object(
        "Vendor__c",
        "Vendor",
        "a0E",
        vec![
            FieldDef::new("Phone__c", "Phone", T::Phone),
            FieldDef::new("Website__c", "Website", T::Url),
            pick("Rating__c", &["A", "B", "C"]),
            FieldDef::new("Active__c", "Active", T::Boolean).flag(),
            refs("Account__c", "Account"),
        ],
    )
}

/// The catalogue's objects, in the order describeGlobal lists them after the first four.
pub fn objects() -> Vec<ObjectDef> {
    vec![
        case(),
        task(),
        event(),
        campaign(),
        campaign_member(),
        product(),
        pricebook(),
        pricebook_entry(),
        contract(),
        order(),
        order_item(),
        asset(),
        solution(),
        user(),
        note(),
        attachment(),
        account_history(),
        account_share(),
        content_document_link(),
        account_change_event(),
        invoice(),
        project(),
        shipment(),
        timesheet(),
        vendor(),
    ]
}

/// Recomputes the values Salesforce derives for the catalogue's objects: formula fields and
/// geolocation compounds.
pub fn derive_catalog(def: &ObjectDef, values: &mut HashMap<String, Value>) {
    for f in &def.fields {
        if let Some(formula) = f.formula {
            let value = formula(values);
            values.insert(f.name.clone(), value);
        }
        if f.field_type == T::Location {
            let stem = f.name.trim_end_matches("__c");
            let part = |p: &str| {
                values
                    .get(&format!("{stem}__{p}__s"))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let (lat, lon) = (part("Latitude"), part("Longitude"));
            let value = if lat.is_null() && lon.is_null() {
                Value::Null
            } else {
                json!({"latitude": lat, "longitude": lon})
            };
            values.insert(f.name.clone(), value);
        }
    }
}

/// A custom object created at run time (the control route): `name` must end in `__c`;
/// `fields` are `(API name, type, length)`.
pub fn runtime_object(
    org: &Org,
    name: &str,
    label: &str,
    fields: &[(String, T, Option<u32>)],
) -> Result<ObjectDef, SfError> {
    if !name.ends_with("__c") || name.len() < 4 {
        return Err(SfError::new(
            400,
            "INVALID_TYPE",
            format!("Custom object names must end in __c: {name}"),
        ));
    }
    let taken = org.key_prefixes();
    let prefix = (0..36u32 * 36)
        .map(|n| {
            let digit = |d: u32| char::from_digit(d, 36).unwrap_or('0').to_ascii_uppercase();
            format!("a{}{}", digit(n / 36 + 1), digit(n % 36))
        })
        .find(|p| !taken.contains(&p.as_str()))
        .ok_or_else(|| SfError::new(400, "LIMIT_EXCEEDED", "too many custom objects"))?;
    // The org lives as long as the process: names of run-time objects are leaked once each.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let defs = fields
        .iter()
        .map(|(n, t, len)| FieldDef::custom(n, n.trim_end_matches("__c"), *t, *len))
        .collect();
    Ok(custom_object(
        leak(name.to_owned()),
        leak(label.to_owned()),
        leak(prefix),
        defs,
    ))
}

fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Seeds `k` records of each catalogue object from their index alone (no random numbers, so
/// the first four objects' seeded values stay as they were); `stamp(i)` is the i-th record's
/// creation time.
pub fn seed(org: &mut Org, k: usize, stamp: impl Fn(usize) -> i64) {
    let accounts = org.live_ids("Account", k);
    let contacts = org.live_ids("Contact", k);
    if accounts.is_empty() || contacts.is_empty() {
        return;
    }
    let at = |v: &[String], i: usize| v[i % v.len()].clone();
    let create = |org: &mut Org, object: &str, i: usize, fields: Value| -> String {
        org.create_at(object, &map(fields), stamp(i))
            .unwrap_or_else(|e| panic!("seed {object} #{i}: {}", e.message))
    };
    let mut ids: HashMap<&str, Vec<String>> = HashMap::new();
    let day = |i: usize| format!("2025-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
    let time = |i: usize| {
        format!(
            "2025-{:02}-{:02}T{:02}:30:00.000Z",
            1 + i % 12,
            1 + i % 28,
            i % 24
        )
    };
    for i in 0..k {
        let user = create(
            org,
            "User",
            i,
            json!({"Username": format!("user{i}@sim.example.com"), "LastName": format!("User{i}"), "FirstName": "Sim", "Alias": format!("u{i}"), "Email": format!("user{i}@sim.example.com"), "TimeZoneSidKey": "Europe/Paris", "Title": "Rep", "IsActive": i % 4 != 0}),
        );
        ids.entry("User").or_default().push(user);
        let campaign = create(
            org,
            "Campaign",
            i,
            json!({"Name": format!("Campaign {i}"), "Type": "Webinar", "Status": "Planned", "StartDate": day(i), "BudgetedCost": 1000.0 + i as f64, "IsActive": i % 2 == 0}),
        );
        create(
            org,
            "CampaignMember",
            i,
            json!({"CampaignId": campaign, "ContactId": at(&contacts, i), "Status": "Sent"}),
        );
        let product = create(
            org,
            "Product2",
            i,
            json!({"Name": format!("Widget {i}"), "ProductCode": format!("W-{i:04}"), "Family": "Hardware", "IsActive": true}),
        );
        let book = create(
            org,
            "Pricebook2",
            i,
            json!({"Name": format!("Book {i}"), "IsActive": true}),
        );
        let entry = create(
            org,
            "PricebookEntry",
            i,
            json!({"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 10.5 + i as f64, "IsActive": true}),
        );
        let case = create(
            org,
            "Case",
            i,
            json!({"AccountId": at(&accounts, i), "ContactId": at(&contacts, i), "Subject": format!("Case {i}"), "Priority": "Medium", "Origin": "Web", "Description": "Seeded."}),
        );
        create(
            org,
            "Task",
            i,
            json!({"WhoId": at(&contacts, i), "WhatId": case, "Subject": "Call back", "ActivityDate": day(i)}),
        );
        create(
            org,
            "Event",
            i,
            json!({"WhoId": at(&contacts, i), "WhatId": at(&accounts, i), "Subject": "Meeting", "StartDateTime": time(i), "EndDateTime": time(i + 1), "DurationInMinutes": 60}),
        );
        let contract = create(
            org,
            "Contract",
            i,
            json!({"AccountId": at(&accounts, i), "StartDate": day(i), "ContractTerm": 12, "BillingCity": "Lyon", "BillingStreet": format!("{i} Rue de la Paix"), "BillingLatitude": 45.75, "BillingLongitude": 4.85}),
        );
        let order = create(
            org,
            "Order",
            i,
            json!({"AccountId": at(&accounts, i), "ContractId": contract, "Pricebook2Id": book, "EffectiveDate": day(i)}),
        );
        create(
            org,
            "OrderItem",
            i,
            json!({"OrderId": order, "PricebookEntryId": entry, "Quantity": 1 + i % 5, "UnitPrice": 10.5 + i as f64}),
        );
        create(
            org,
            "Asset",
            i,
            json!({"Name": format!("Asset {i}"), "AccountId": at(&accounts, i), "Product2Id": product, "SerialNumber": format!("SN{i:06}"), "Status": "Installed", "Price": 99.99, "Quantity": 2}),
        );
        create(
            org,
            "Solution",
            i,
            json!({"SolutionName": format!("Fix {i}"), "SolutionNote": "Restart it."}),
        );
        create(
            org,
            "Note",
            i,
            json!({"ParentId": at(&accounts, i), "Title": format!("Note {i}"), "Body": "Seeded note."}),
        );
        create(
            org,
            "Attachment",
            i,
            json!({"ParentId": at(&accounts, i), "Name": format!("file{i}.txt"), "ContentType": "text/plain", "Body": "aGVsbG8gd29ybGQ="}),
        );
        let invoice = create(
            org,
            "Invoice__c",
            i,
            json!({"Name": format!("INV-{i:05}"), "Account__c": at(&accounts, i), "Amount__c": 100.0 + i as f64, "TaxRate__c": 20.0, "Status__c": "Sent", "DueDate__c": day(i), "Notes__c": "Net 30", "ContactEmail__c": format!("billing{i}@example.com")}),
        );
        let project = create(
            org,
            "Project__c",
            i,
            json!({"Name": format!("Project {i}"), "Budget__c": 5000.0, "Start__c": day(i), "Kickoff__c": time(i), "Site__Latitude__s": 48.85, "Site__Longitude__s": 2.35, "Website__c": "https://example.com", "Phase__c": "Build", "Headcount__c": 3}),
        );
        create(
            org,
            "Shipment__c",
            i,
            json!({"Name": format!("SHP-{i}"), "Invoice__c": invoice, "Tracking__c": format!("TRK{i:08}"), "Weight__c": 1.25, "Shipped__c": time(i)}),
        );
        create(
            org,
            "Timesheet__c",
            i,
            json!({"Name": format!("TS-{i}"), "Project__c": project, "Hours__c": 7.5, "Week__c": day(i), "Billable__c": true, "Rate__c": 80.0}),
        );
        create(
            org,
            "Vendor__c",
            i,
            json!({"Name": format!("Vendor {i}"), "Phone__c": "+33 1 23 45 67 89", "Rating__c": "A", "Active__c": true, "Account__c": at(&accounts, i)}),
        );
        let history = HashMap::from([
            ("AccountId".to_owned(), json!(at(&accounts, i))),
            ("Field".to_owned(), json!("Phone")),
            ("OldValue".to_owned(), json!(format!("+1 555 {i:04}"))),
            ("NewValue".to_owned(), json!(format!("+1 555 {:04}", i + 1))),
        ]);
        org.seed_raw("AccountHistory", history, stamp(i))
            .expect("AccountHistory is served");
        let share = HashMap::from([
            ("AccountId".to_owned(), json!(at(&accounts, i))),
            ("UserOrGroupId".to_owned(), json!(at(&ids["User"], i))),
            ("AccountAccessLevel".to_owned(), json!("Read")),
            ("OpportunityAccessLevel".to_owned(), json!("None")),
            ("RowCause".to_owned(), json!("Manual")),
        ]);
        org.seed_raw("AccountShare", share, stamp(i))
            .expect("AccountShare is served");
        let link = HashMap::from([
            ("LinkedEntityId".to_owned(), json!(at(&accounts, i))),
            (
                "ContentDocumentId".to_owned(),
                json!(format!("069Dn{:010}AAA", i)),
            ),
            ("ShareType".to_owned(), json!("V")),
            ("Visibility".to_owned(), json!("AllUsers")),
        ]);
        org.seed_raw("ContentDocumentLink", link, stamp(i))
            .expect("ContentDocumentLink is served");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_twenty_standard_and_five_custom_objects() {
        let all: Vec<ObjectDef> = super::super::schema::standard_objects()
            .into_iter()
            .chain(objects())
            .collect();
        let custom = all.iter().filter(|o| o.custom).count();
        assert!(all.len() - custom >= 20, "{} standard", all.len() - custom);
        assert!(custom >= 5, "{custom} custom");
        let mut prefixes: Vec<&str> = all.iter().map(|o| o.key_prefix).collect();
        prefixes.sort_unstable();
        let n = prefixes.len();
        prefixes.dedup();
        assert_eq!(n, prefixes.len(), "key prefixes are unique");
    }

    #[test]
    fn formulas_and_locations_follow_their_inputs() {
        let def = invoice();
        let mut values = HashMap::from([
            ("Amount__c".to_owned(), json!(100.0)),
            ("TaxRate__c".to_owned(), json!(20.0)),
        ]);
        derive_catalog(&def, &mut values);
        assert_eq!(values["Total__c"], json!(120.0));
        let def = project();
        let mut values = HashMap::from([("Site__Latitude__s".to_owned(), json!(1.5))]);
        derive_catalog(&def, &mut values);
        assert_eq!(
            values["Site__c"],
            json!({"latitude": 1.5, "longitude": null})
        );
    }
}
