//! The default (HubSpot-defined) properties of each standard object, as the properties API
//! lists them: name, label, type, field type, group, options, and whether the value is
//! read-only or calculated. A portal has many more; these are the ones each object's guide
//! documents and uses in its examples (HubSpot's CRM guides for contacts, companies, deals,
//! tickets, products, line items, quotes, calls, emails, meetings, notes and tasks).
//! Owner and pipeline options are kept by the portal ([`OptionsSource`]).

use super::objects::{ObjectMeta, ObjectType};
use super::properties::{OptionsSource, Property};

const LIFECYCLE_STAGES: &[(&str, &str)] = &[
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
];

const BILLING_FREQUENCIES: &[(&str, &str)] = &[
    ("weekly", "Weekly"),
    ("biweekly", "Biweekly"),
    ("monthly", "Monthly"),
    ("quarterly", "Quarterly"),
    ("per_six_months", "Every six months"),
    ("annually", "Annually"),
    ("per_two_years", "Every two years"),
    ("per_three_years", "Every three years"),
];

/// Shorthands for the common shapes.
fn text(name: &str, label: &str, group: &str) -> Property {
    Property::standard(name, label, "string", "text", group)
}

fn textarea(name: &str, label: &str, group: &str) -> Property {
    Property::standard(name, label, "string", "textarea", group)
}

fn number(name: &str, label: &str, group: &str) -> Property {
    Property::standard(name, label, "number", "number", group)
}

fn datetime(name: &str, label: &str, group: &str) -> Property {
    Property::standard(name, label, "datetime", "date", group)
}

fn select(name: &str, label: &str, group: &str, options: &[(&str, &str)]) -> Property {
    Property::standard(name, label, "enumeration", "select", group).options(options)
}

fn owner(group: &str) -> Property {
    Property::standard("hubspot_owner_id", "Owner", "enumeration", "select", group)
        .options_from(OptionsSource::Owners)
}

/// The created, last-modified and record-id properties HubSpot sets.
fn system(meta: &ObjectMeta, group: &str) -> Vec<Property> {
    vec![
        datetime(&meta.created_property, "Create Date", group).read_only(),
        datetime(&meta.modified_property, "Last Modified Date", group).read_only(),
        number("hs_object_id", "Record ID", group)
            .read_only()
            .unique(),
    ]
}

/// The default properties of a standard object type.
pub fn properties(object_type: ObjectType) -> Vec<Property> {
    let meta = ObjectMeta::standard(object_type);
    let (group, mut properties) = match object_type {
        ObjectType::Contacts => ("contactinformation", contacts()),
        ObjectType::Companies => ("companyinformation", companies()),
        ObjectType::Deals => ("dealinformation", deals()),
        ObjectType::Tickets => ("ticketinformation", tickets()),
        ObjectType::Products => ("productinformation", products()),
        ObjectType::LineItems => ("lineiteminformation", line_items()),
        ObjectType::Quotes => ("quoteinformation", quotes()),
        ObjectType::Calls => ("call", calls()),
        ObjectType::Emails => ("email", emails()),
        ObjectType::Meetings => ("meeting", meetings()),
        ObjectType::Notes => ("note", notes()),
        ObjectType::Tasks => ("task", tasks()),
        ObjectType::Custom(_) => unreachable!("custom objects define their own properties"),
    };
    properties.extend(system(&meta, group));
    properties
}

/// The HubSpot-defined properties every custom object has besides its own.
pub fn custom_object_properties(meta: &ObjectMeta) -> Vec<Property> {
    let mut properties = vec![owner("objectinformation")];
    properties.extend(system(meta, "objectinformation"));
    properties
}

fn contacts() -> Vec<Property> {
    let g = "contactinformation";
    vec![
        text("email", "Email", g).unique(),
        text("firstname", "First Name", g),
        text("lastname", "Last Name", g),
        Property::standard("phone", "Phone Number", "string", "phonenumber", g),
        Property::standard(
            "mobilephone",
            "Mobile Phone Number",
            "string",
            "phonenumber",
            g,
        ),
        text("company", "Company Name", g),
        text("jobtitle", "Job Title", g),
        text("website", "Website URL", g),
        text("address", "Street Address", g),
        text("city", "City", g),
        text("state", "State/Region", g),
        text("zip", "Postal Code", g),
        text("country", "Country/Region", g),
        Property::standard(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            g,
        )
        .options(LIFECYCLE_STAGES),
        Property::standard(
            "hs_lead_status",
            "Lead Status",
            "enumeration",
            "radio",
            "sales_properties",
        )
        .options(&[
            ("NEW", "New"),
            ("OPEN", "Open"),
            ("IN_PROGRESS", "In Progress"),
            ("UNQUALIFIED", "Unqualified"),
        ]),
        owner(g),
        number("associatedcompanyid", "Primary Associated Company ID", g),
    ]
}

fn companies() -> Vec<Property> {
    let g = "companyinformation";
    vec![
        text("name", "Company name", g),
        text("domain", "Company Domain Name", g),
        text("industry", "Industry", g),
        Property::standard("phone", "Phone Number", "string", "phonenumber", g),
        text("address", "Street Address", g),
        text("city", "City", g),
        text("state", "State/Region", g),
        text("zip", "Postal Code", g),
        text("country", "Country/Region", g),
        text("website", "Website URL", g),
        number("numberofemployees", "Number of Employees", g),
        number("annualrevenue", "Annual Revenue", g),
        textarea("description", "Description", g),
        Property::standard(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            g,
        )
        .options(LIFECYCLE_STAGES),
        owner(g),
    ]
}

fn deals() -> Vec<Property> {
    let g = "dealinformation";
    vec![
        text("dealname", "Deal Name", g),
        number("amount", "Amount", g),
        Property::standard("dealstage", "Deal Stage", "enumeration", "radio", g)
            .options_from(OptionsSource::PipelineStages),
        Property::standard("pipeline", "Pipeline", "enumeration", "select", g)
            .options_from(OptionsSource::Pipelines),
        datetime("closedate", "Close Date", g),
        Property::standard("dealtype", "Deal Type", "enumeration", "radio", g).options(&[
            ("newbusiness", "New Business"),
            ("existingbusiness", "Existing Business"),
        ]),
        textarea("description", "Deal Description", g),
        owner(g),
    ]
}

fn tickets() -> Vec<Property> {
    let g = "ticketinformation";
    vec![
        text("subject", "Ticket name", g),
        textarea("content", "Ticket description", g),
        Property::standard("hs_pipeline", "Pipeline", "enumeration", "select", g)
            .options_from(OptionsSource::Pipelines),
        Property::standard(
            "hs_pipeline_stage",
            "Ticket status",
            "enumeration",
            "select",
            g,
        )
        .options_from(OptionsSource::PipelineStages),
        select(
            "hs_ticket_priority",
            "Priority",
            g,
            &[
                ("LOW", "Low"),
                ("MEDIUM", "Medium"),
                ("HIGH", "High"),
                ("URGENT", "Urgent"),
            ],
        ),
        // A multiple checkbox: its value joins the chosen options with `;`.
        Property::standard(
            "hs_ticket_category",
            "Category",
            "enumeration",
            "checkbox",
            g,
        )
        .options(&[
            ("PRODUCT_ISSUE", "Product issue"),
            ("BILLING_ISSUE", "Billing issue"),
            ("FEATURE_REQUEST", "Feature request"),
            ("GENERAL_INQUIRY", "General inquiry"),
        ]),
        select(
            "source_type",
            "Source",
            g,
            &[
                ("CHAT", "Chat"),
                ("EMAIL", "Email"),
                ("FORM", "Form"),
                ("PHONE", "Phone"),
            ],
        ),
        owner(g),
        // Set by HubSpot when the ticket moves to a stage whose ticketState is CLOSED.
        datetime("closed_date", "Close date", g).calculated(),
    ]
}

fn products() -> Vec<Property> {
    let g = "productinformation";
    vec![
        text("name", "Name", g),
        textarea("description", "Description", g),
        number("price", "Unit price", g),
        text("hs_sku", "SKU", g),
        number("hs_cost_of_goods_sold", "Unit cost", g),
        // An ISO 8601 period (`P12M`).
        text("hs_recurring_billing_period", "Term", g),
        select(
            "recurringbillingfrequency",
            "Billing frequency",
            g,
            BILLING_FREQUENCIES,
        ),
        select(
            "hs_product_type",
            "Product type",
            g,
            &[
                ("inventory", "Inventory"),
                ("non_inventory", "Non-inventory"),
                ("service", "Service"),
            ],
        ),
        text("hs_url", "URL", g),
    ]
}

fn line_items() -> Vec<Property> {
    let g = "lineiteminformation";
    vec![
        text("name", "Name", g),
        textarea("description", "Description", g),
        number("quantity", "Quantity", g),
        number("price", "Unit price", g),
        number("discount", "Unit discount", g),
        number("hs_discount_percentage", "Discount Percentage", g),
        // The product the line item was made from.
        number("hs_product_id", "Product ID", g),
        text("hs_sku", "SKU", g),
        select(
            "recurringbillingfrequency",
            "Billing frequency",
            g,
            BILLING_FREQUENCIES,
        ),
        text("hs_recurring_billing_period", "Term", g),
        Property::standard(
            "hs_recurring_billing_start_date",
            "Billing start date",
            "date",
            "date",
            g,
        ),
        // quantity × (price − discount), less the discount percentage.
        number("amount", "Net price", g).calculated(),
    ]
}

fn quotes() -> Vec<Property> {
    let g = "quoteinformation";
    vec![
        text("hs_title", "Quote name", g),
        Property::standard("hs_expiration_date", "Expiration date", "date", "date", g),
        select(
            "hs_status",
            "Quote approval status",
            g,
            &[
                ("DRAFT", "Draft"),
                ("APPROVAL_NOT_NEEDED", "Approval not needed"),
                ("PENDING_APPROVAL", "Pending approval"),
                ("APPROVED", "Approved"),
                ("REJECTED", "Rejected"),
            ],
        ),
        select(
            "hs_language",
            "Language",
            g,
            &[
                ("en", "English"),
                ("de", "German"),
                ("es", "Spanish"),
                ("fr", "French"),
                ("it", "Italian"),
            ],
        ),
        text("hs_currency", "Currency", g),
        text("hs_sender_firstname", "Sender first name", g),
        text("hs_sender_lastname", "Sender last name", g),
        text("hs_sender_email", "Sender email", g),
        text("hs_sender_company_name", "Sender company name", g),
        textarea("hs_comments", "Comments", g),
        textarea("hs_terms", "Terms", g),
        Property::standard(
            "hs_esign_enabled",
            "E-signature enabled",
            "bool",
            "booleancheckbox",
            g,
        )
        .options(&[("true", "Yes"), ("false", "No")]),
        // The sum of the quote's line items, kept by HubSpot.
        number("hs_quote_amount", "Quote amount", g).calculated(),
        text("hs_quote_number", "Quote number", g).read_only(),
        // The key of the quote's public page, set by HubSpot on create.
        text("hs_public_url_key", "Public URL key", g).read_only(),
    ]
}

fn timestamp(group: &str) -> Property {
    datetime("hs_timestamp", "Activity date", group)
}

fn calls() -> Vec<Property> {
    let g = "call";
    vec![
        timestamp(g),
        text("hs_call_title", "Call title", g),
        textarea("hs_call_body", "Call notes", g),
        select(
            "hs_call_direction",
            "Call direction",
            g,
            &[("INBOUND", "Inbound"), ("OUTBOUND", "Outbound")],
        ),
        // The id of a call outcome (portals edit their outcomes).
        text("hs_call_disposition", "Call outcome", g),
        // Milliseconds.
        number("hs_call_duration", "Call duration", g),
        text("hs_call_from_number", "From number", g),
        text("hs_call_to_number", "To number", g),
        text("hs_call_recording_url", "Recording URL", g),
        select(
            "hs_call_status",
            "Call status",
            g,
            &[
                ("BUSY", "Busy"),
                ("CALLING_CRM_USER", "Calling CRM user"),
                ("CANCELED", "Canceled"),
                ("COMPLETED", "Completed"),
                ("CONNECTING", "Connecting"),
                ("FAILED", "Failed"),
                ("IN_PROGRESS", "In progress"),
                ("NO_ANSWER", "No answer"),
                ("QUEUED", "Queued"),
                ("RINGING", "Ringing"),
            ],
        ),
        owner(g),
    ]
}

fn emails() -> Vec<Property> {
    let g = "email";
    vec![
        timestamp(g),
        select(
            "hs_email_direction",
            "Email direction",
            g,
            &[
                ("EMAIL", "Sent by the owner"),
                ("INCOMING_EMAIL", "Reply from the contact"),
                ("FORWARDED_EMAIL", "Forwarded"),
            ],
        ),
        text("hs_email_subject", "Email subject", g),
        textarea("hs_email_text", "Email body", g),
        Property::standard("hs_email_html", "Email HTML body", "string", "html", g),
        select(
            "hs_email_status",
            "Email send status",
            g,
            &[
                ("BOUNCED", "Bounced"),
                ("FAILED", "Failed"),
                ("SCHEDULED", "Scheduled"),
                ("SENDING", "Sending"),
                ("SENT", "Sent"),
            ],
        ),
        // A JSON document of from/to/cc/bcc, as text.
        textarea("hs_email_headers", "Email headers", g),
        owner(g),
    ]
}

fn meetings() -> Vec<Property> {
    let g = "meeting";
    vec![
        timestamp(g),
        text("hs_meeting_title", "Meeting name", g),
        textarea("hs_meeting_body", "Meeting description", g),
        textarea("hs_internal_meeting_notes", "Internal notes", g),
        text("hs_meeting_external_url", "External URL", g),
        text("hs_meeting_location", "Location", g),
        datetime("hs_meeting_start_time", "Start time", g),
        datetime("hs_meeting_end_time", "End time", g),
        select(
            "hs_meeting_outcome",
            "Meeting outcome",
            g,
            &[
                ("SCHEDULED", "Scheduled"),
                ("COMPLETED", "Completed"),
                ("RESCHEDULED", "Rescheduled"),
                ("NO_SHOW", "No show"),
                ("CANCELED", "Canceled"),
            ],
        ),
        owner(g),
    ]
}

fn notes() -> Vec<Property> {
    let g = "note";
    vec![
        timestamp(g),
        Property::standard("hs_note_body", "Note body", "string", "html", g),
        // File ids joined by `;`.
        text("hs_attachment_ids", "Attached file IDs", g),
        owner(g),
    ]
}

fn tasks() -> Vec<Property> {
    let g = "task";
    vec![
        // A task's due date.
        timestamp(g),
        text("hs_task_subject", "Task title", g),
        Property::standard("hs_task_body", "Notes", "string", "html", g),
        select(
            "hs_task_status",
            "Task status",
            g,
            &[
                ("NOT_STARTED", "Not started"),
                ("IN_PROGRESS", "In progress"),
                ("WAITING", "Waiting"),
                ("COMPLETED", "Completed"),
                ("DEFERRED", "Deferred"),
            ],
        ),
        select(
            "hs_task_priority",
            "Priority",
            g,
            &[
                ("NONE", "None"),
                ("LOW", "Low"),
                ("MEDIUM", "Medium"),
                ("HIGH", "High"),
            ],
        ),
        select(
            "hs_task_type",
            "Task type",
            g,
            &[
                ("TODO", "To-do"),
                ("CALL", "Call"),
                ("EMAIL", "Email"),
                ("LINKED_IN", "LinkedIn"),
            ],
        ),
        owner(g),
        // Set by HubSpot when the status becomes COMPLETED.
        datetime("hs_task_completion_date", "Completed at", g).calculated(),
    ]
}
