//! Seeding a portal: `n` records of every standard object and of the portal's custom object
//! (`pets`, defined here through the schemas API's own path), backdated three a second so
//! modified times have ties, every value valid for its property (owners, pipelines and stages
//! among the portal's), and the `i`-th records of related objects associated.

use std::collections::BTreeMap;

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::objects::ObjectType;
use super::pipelines::{DEAL_STAGES, TICKET_STAGES};
use super::store::{Portal, format_time};
use crate::common;

/// The custom object every seeded portal has.
pub const PETS: &str = "pets";

const DAY_MS: i64 = 86_400_000;
/// 2025-01-01T00:00:00Z, the base of seeded business dates.
const YEAR_START_MS: i64 = 1_735_689_600_000;

fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("seed properties are an object"),
    }
}

/// Seeds `n` records of every object type (`now` is the clock's). Object by object, contacts
/// first: the ids and values of contacts, companies and deals are what they were before the
/// other objects were seeded.
pub fn seed(portal: &mut Portal, rng: &mut StdRng, n: usize, now: i64) {
    let start = now - (n as i64 / 3 + 1) * 1000;
    let stamp = |i: usize| start + (i as i64 / 3) * 1000;
    let owners = portal.owners.active_ids();
    let owner = |i: usize| owners[i % owners.len()].to_string();
    let pets = define_pets(portal);
    let mut ids: BTreeMap<ObjectType, Vec<u64>> = BTreeMap::new();
    let mut add = |portal: &mut Portal, object_type, i: usize, properties: Value| {
        let id = portal
            .create_at(object_type, &map(properties), stamp(i))
            .unwrap_or_else(|e| panic!("seed {object_type:?} are valid: {e:?}"));
        ids.entry(object_type).or_default().push(id);
        id
    };
    for i in 0..n {
        add(portal, ObjectType::Contacts, i, contact(rng, i, owner(i)));
    }
    for i in 0..n {
        add(portal, ObjectType::Companies, i, company(rng, i, owner(i)));
    }
    for i in 0..n {
        add(portal, ObjectType::Deals, i, deal(rng, i, owner(i)));
    }
    for i in 0..n {
        add(portal, ObjectType::Tickets, i, ticket(rng, i, owner(i)));
    }
    let products: Vec<u64> = (0..n)
        .map(|i| add(portal, ObjectType::Products, i, product(rng, i)))
        .collect();
    for (i, product) in products.into_iter().enumerate() {
        add(portal, ObjectType::LineItems, i, line_item(rng, i, product));
    }
    for i in 0..n {
        add(portal, ObjectType::Quotes, i, quote(rng, i));
    }
    for i in 0..n {
        for (object_type, properties) in engagements(rng, i, owner(i), stamp(i)) {
            add(portal, object_type, i, properties);
        }
    }
    for i in 0..n {
        add(portal, pets, i, pet(rng, i));
    }
    associate(portal, &ids, pets);
}

/// Links the `i`-th records: a contact to its company (as primary too), a deal to both, a
/// ticket to all three, each engagement and pet to the contact, a line item and a quote to the
/// deal, and the quote to the line item.
fn associate(portal: &mut Portal, ids: &BTreeMap<ObjectType, Vec<u64>>, pets: ObjectType) {
    use super::associations::Category::HubspotDefined as Hs;
    use super::associations::TypeKey;
    let default_of = |portal: &Portal, from, to| {
        let t = portal.associations.types(from, to);
        let t = t
            .iter()
            .find(|t| t.label.is_none())
            .expect("an associable pair");
        (t.category, t.type_id)
    };
    let mut links: Vec<(ObjectType, ObjectType, Vec<TypeKey>)> = vec![
        (
            ObjectType::Contacts,
            ObjectType::Companies,
            vec![(Hs, 279), (Hs, 1)],
        ),
        (
            ObjectType::Deals,
            ObjectType::Companies,
            vec![(Hs, 341), (Hs, 5)],
        ),
    ];
    for (from, to) in [
        (ObjectType::Deals, ObjectType::Contacts),
        (ObjectType::Tickets, ObjectType::Contacts),
        (ObjectType::Tickets, ObjectType::Companies),
        (ObjectType::Tickets, ObjectType::Deals),
        (ObjectType::LineItems, ObjectType::Deals),
        (ObjectType::Quotes, ObjectType::Deals),
        (ObjectType::Quotes, ObjectType::LineItems),
        (ObjectType::Calls, ObjectType::Contacts),
        (ObjectType::Emails, ObjectType::Contacts),
        (ObjectType::Meetings, ObjectType::Contacts),
        (ObjectType::Notes, ObjectType::Contacts),
        (ObjectType::Tasks, ObjectType::Contacts),
        (pets, ObjectType::Contacts),
    ] {
        links.push((from, to, vec![default_of(portal, from, to)]));
    }
    let none = Vec::new();
    for (from, to, types) in links {
        let pairs = ids
            .get(&from)
            .unwrap_or(&none)
            .iter()
            .zip(ids.get(&to).unwrap_or(&none));
        for (a, b) in pairs {
            for (category, id) in &types {
                portal
                    .associations
                    .link((from, *a), (to, *b), *category, *id)
                    .expect("seed association types exist");
            }
        }
    }
}

fn contact(rng: &mut StdRng, i: usize, owner: String) -> Value {
    let person = common::fake_person(rng, i);
    json!({
        "email": person.email,
        "firstname": person.first_name,
        "lastname": person.last_name,
        "phone": person.phone,
        "company": person.company,
        "city": person.city,
        "country": person.country,
        "lifecyclestage": (["lead", "customer", "opportunity"][i % 3]),
        "hubspot_owner_id": owner,
    })
}

fn company(rng: &mut StdRng, i: usize, owner: String) -> Value {
    let company = common::fake_company(rng);
    let domain = format!(
        "{}{i}.example.com",
        company.split(' ').next().unwrap_or("acme").to_lowercase()
    );
    json!({
        "name": company,
        "domain": domain,
        "industry": "COMPUTER_SOFTWARE",
        "numberofemployees": (10 + i % 500).to_string(),
        "hubspot_owner_id": owner,
    })
}

fn deal(rng: &mut StdRng, i: usize, owner: String) -> Value {
    json!({
        "dealname": format!("{} deal", common::fake_sentence(rng, 2)),
        "amount": (1000 + (i % 50) * 250).to_string(),
        "dealstage": DEAL_STAGES[i % DEAL_STAGES.len()].0,
        "pipeline": "default",
        "closedate": (YEAR_START_MS + (i as i64 % 365) * DAY_MS).to_string(),
        "hubspot_owner_id": owner,
    })
}

fn ticket(rng: &mut StdRng, i: usize, owner: String) -> Value {
    json!({
        "subject": format!("{} problem", common::fake_sentence(rng, 3)),
        "content": common::fake_sentence(rng, 8),
        "hs_pipeline": "0",
        "hs_pipeline_stage": TICKET_STAGES[i % TICKET_STAGES.len()].0,
        "hs_ticket_priority": (["LOW", "MEDIUM", "HIGH", "URGENT"][i % 4]),
        "hs_ticket_category": (["PRODUCT_ISSUE", "BILLING_ISSUE;GENERAL_INQUIRY", "FEATURE_REQUEST"][i % 3]),
        "source_type": (["EMAIL", "CHAT", "PHONE", "FORM"][i % 4]),
        "hubspot_owner_id": owner,
    })
}

fn product(rng: &mut StdRng, i: usize) -> Value {
    let mut properties = json!({
        "name": format!("{} {}", common::fake_company(rng), ["Basic", "Pro", "Enterprise"][i % 3]),
        "description": common::fake_sentence(rng, 6),
        "price": format!("{}.{:02}", 10 + i % 490, i % 100),
        "hs_sku": format!("SKU-{i:06}"),
        "hs_cost_of_goods_sold": (5 + i % 200).to_string(),
        "hs_product_type": (["service", "inventory", "non_inventory"][i % 3]),
    });
    if i.is_multiple_of(2) {
        properties["recurringbillingfrequency"] = json!("monthly");
        properties["hs_recurring_billing_period"] = json!("P12M");
    }
    properties
}

fn line_item(rng: &mut StdRng, i: usize, product: u64) -> Value {
    json!({
        "name": format!("{} seats", common::fake_sentence(rng, 1)),
        "hs_product_id": product.to_string(),
        "quantity": (1 + i % 20).to_string(),
        "price": format!("{}.50", 20 + i % 80),
        "discount": (i % 5).to_string(),
        "hs_sku": format!("SKU-{i:06}"),
    })
}

fn quote(rng: &mut StdRng, i: usize) -> Value {
    let person = common::fake_person(rng, i);
    json!({
        "hs_title": format!("{} quote", common::fake_company(rng)),
        "hs_expiration_date": &format_time(YEAR_START_MS + (30 + i as i64 % 300) * DAY_MS)[..10],
        "hs_status": (["DRAFT", "APPROVAL_NOT_NEEDED", "PENDING_APPROVAL", "APPROVED"][i % 4]),
        "hs_language": "en",
        "hs_currency": "USD",
        "hs_sender_firstname": person.first_name,
        "hs_sender_lastname": person.last_name,
        "hs_sender_email": person.email,
        "hs_esign_enabled": if i.is_multiple_of(2) { "true" } else { "false" },
    })
}

/// One call, email, meeting, note and task on the timeline at `at`.
fn engagements(rng: &mut StdRng, i: usize, owner: String, at: i64) -> Vec<(ObjectType, Value)> {
    let when = format_time(at - (i as i64 % 30) * DAY_MS);
    let minutes = 15 + (i as i64 % 4) * 15;
    vec![
        (
            ObjectType::Calls,
            json!({
                "hs_timestamp": when,
                "hs_call_title": format!("Call about {}", common::fake_sentence(rng, 2)),
                "hs_call_body": common::fake_sentence(rng, 10),
                "hs_call_direction": if i.is_multiple_of(2) { "OUTBOUND" } else { "INBOUND" },
                "hs_call_duration": (minutes * 60_000).to_string(),
                "hs_call_status": "COMPLETED",
                "hs_call_to_number": format!("+1555{:07}", rng.random_range(0..10_000_000u32)),
                "hubspot_owner_id": owner,
            }),
        ),
        (
            ObjectType::Emails,
            json!({
                "hs_timestamp": when,
                "hs_email_direction": (["EMAIL", "INCOMING_EMAIL"][i % 2]),
                "hs_email_subject": format!("Re: {}", common::fake_sentence(rng, 3)),
                "hs_email_text": common::fake_sentence(rng, 12),
                "hs_email_status": "SENT",
                "hubspot_owner_id": owner,
            }),
        ),
        (
            ObjectType::Meetings,
            json!({
                "hs_timestamp": when,
                "hs_meeting_title": format!("{} review", common::fake_sentence(rng, 2)),
                "hs_meeting_body": common::fake_sentence(rng, 8),
                "hs_meeting_location": (["Remote", "Vicenza office", "Customer site"][i % 3]),
                "hs_meeting_start_time": when,
                "hs_meeting_end_time": format_time(at - (i as i64 % 30) * DAY_MS + minutes * 60_000),
                "hs_meeting_outcome": (["SCHEDULED", "COMPLETED", "RESCHEDULED"][i % 3]),
                "hubspot_owner_id": owner,
            }),
        ),
        (
            ObjectType::Notes,
            json!({
                "hs_timestamp": when,
                "hs_note_body": common::fake_sentence(rng, 15),
                "hubspot_owner_id": owner,
            }),
        ),
        (
            ObjectType::Tasks,
            json!({
                "hs_timestamp": format_time(at + (1 + i as i64 % 14) * DAY_MS),
                "hs_task_subject": format!("Follow up: {}", common::fake_sentence(rng, 2)),
                "hs_task_body": common::fake_sentence(rng, 6),
                "hs_task_status": (["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED"][i % 4]),
                "hs_task_priority": (["NONE", "LOW", "MEDIUM", "HIGH"][i % 4]),
                "hs_task_type": (["TODO", "CALL", "EMAIL"][i % 3]),
                "hubspot_owner_id": owner,
            }),
        ),
    ]
}

/// Defines the `pets` custom object (an `ObjectSchemaEgg`, as a portal admin would).
fn define_pets(portal: &mut Portal) -> ObjectType {
    if let Ok(defined) = portal.resolve(PETS) {
        return defined;
    }
    let egg = json!({
        "name": PETS,
        "labels": {"singular": "Pet", "plural": "Pets"},
        "description": "Pets of the portal's contacts.",
        "primaryDisplayProperty": "pet_name",
        "secondaryDisplayProperties": ["species"],
        "requiredProperties": ["pet_name"],
        "searchableProperties": ["pet_name"],
        "associatedObjects": ["CONTACT"],
        "properties": [
            {"name": "pet_name", "label": "Pet name", "type": "string", "fieldType": "text"},
            {"name": "species", "label": "Species", "type": "enumeration", "fieldType": "select",
             "options": [
                {"label": "Dog", "value": "dog"},
                {"label": "Cat", "value": "cat"},
                {"label": "Bird", "value": "bird"},
                {"label": "Fish", "value": "fish"}
             ]},
            {"name": "age", "label": "Age", "type": "number", "fieldType": "number"},
            {"name": "adopted", "label": "Adopted", "type": "bool", "fieldType": "booleancheckbox",
             "options": [{"label": "Yes", "value": "true"}, {"label": "No", "value": "false"}]},
            {"name": "adopted_on", "label": "Adoption date", "type": "date", "fieldType": "date"}
        ],
    });
    portal
        .create_schema(&egg)
        .expect("the pets schema is valid")
        .0
}

fn pet(rng: &mut StdRng, i: usize) -> Value {
    const NAMES: &[&str] = &[
        "Rex", "Luna", "Milo", "Nala", "Otto", "Pepe", "Kiwi", "Bubbles",
    ];
    let mut properties = json!({
        "pet_name": format!("{} {}", NAMES[rng.random_range(0..NAMES.len())], i),
        "species": (["dog", "cat", "bird", "fish"][i % 4]),
        "age": (1 + i % 15).to_string(),
        "adopted": if i.is_multiple_of(3) { "true" } else { "false" },
    });
    if i.is_multiple_of(3) {
        properties["adopted_on"] =
            json!(&format_time(YEAR_START_MS - (i as i64 % 900) * DAY_MS)[..10]);
    }
    properties
}
