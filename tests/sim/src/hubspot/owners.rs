//! The portal's owners (`GET /crm/v3/owners`, `GET /crm/v3/owners/{ownerId}`): the users and
//! queues records are assigned to through `hubspot_owner_id`, with their teams. Listing pages by
//! `after` (ascending owner ids, up to 500 a page), filters by `email`, and shows archived
//! (deactivated) owners only with `archived=true`. Shapes as `PublicOwner` in
//! `shared/reference/hubspot/v3-owners.json`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::properties::PropertyOption;
use super::store::{HsError, format_time};

pub const OWNER_LIMIT_MAX: usize = 500;

#[derive(Debug, Clone)]
pub struct Owner {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The HubSpot user behind the owner.
    pub user_id: u64,
    /// `(id, name, primary)` of the owner's teams.
    pub teams: Vec<(String, String, bool)>,
    pub created: i64,
    pub updated: i64,
    pub archived: bool,
}

impl Owner {
    /// As the owners API renders it (`PublicOwner`): a deactivated owner keeps only
    /// `userIdIncludingInactive`.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "id": self.id.to_string(),
            "email": self.email,
            "type": "PERSON",
            "firstName": self.first_name,
            "lastName": self.last_name,
            "userIdIncludingInactive": self.user_id,
            "createdAt": format_time(self.created),
            "updatedAt": format_time(self.updated),
            "archived": self.archived,
            "teams": self.teams.iter().map(|(id, name, primary)| {
                json!({"id": id, "name": name, "primary": primary})
            }).collect::<Vec<_>>(),
        });
        if !self.archived {
            value["userId"] = json!(self.user_id);
        }
        value
    }
}

/// The owners of a portal.
pub struct Owners {
    by_id: BTreeMap<u64, Owner>,
    next_id: u64,
}

/// The owners every simulated portal starts with (its users).
const STARTING: &[(&str, &str, &str, &str)] = &[
    ("Ada", "Lovelace", "ada@sequin-sim.example", "Sales"),
    ("Grace", "Hopper", "grace@sequin-sim.example", "Sales"),
    ("Alan", "Turing", "alan@sequin-sim.example", "Support"),
];

impl Owners {
    pub fn seeded(now: i64) -> Owners {
        let mut owners = Owners {
            by_id: BTreeMap::new(),
            next_id: 70_000_001,
        };
        for (first, last, email, team) in STARTING {
            owners.create(email, first, last, Some(team), now);
        }
        owners
    }

    /// Adds an owner (a user invited to the portal); returns its id.
    pub fn create(
        &mut self,
        email: &str,
        first_name: &str,
        last_name: &str,
        team: Option<&str>,
        now: i64,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let teams = team
            .map(|name| {
                let team_id = if name == "Sales" { "4501" } else { "4502" };
                vec![(team_id.to_owned(), name.to_owned(), true)]
            })
            .unwrap_or_default();
        self.by_id.insert(
            id,
            Owner {
                id,
                email: email.to_owned(),
                first_name: first_name.to_owned(),
                last_name: last_name.to_owned(),
                user_id: id - 70_000_000 + 9_100_000,
                teams,
                created: now,
                updated: now,
                archived: false,
            },
        );
        id
    }

    /// Renames an active owner; `false` if there is none with that id.
    pub fn rename(&mut self, id: u64, first_name: &str, last_name: &str, now: i64) -> bool {
        match self.by_id.get_mut(&id).filter(|o| !o.archived) {
            Some(owner) => {
                owner.first_name = first_name.to_owned();
                owner.last_name = last_name.to_owned();
                owner.updated = now.max(owner.updated + 1);
                true
            }
            None => false,
        }
    }

    /// Deactivates an owner (its user removed from the portal).
    pub fn archive(&mut self, id: u64, now: i64) -> bool {
        match self.by_id.get_mut(&id).filter(|o| !o.archived) {
            Some(owner) => {
                owner.archived = true;
                owner.updated = now.max(owner.updated + 1);
                true
            }
            None => false,
        }
    }

    /// Ids of the active owners, in order.
    pub fn active_ids(&self) -> Vec<u64> {
        self.by_id
            .values()
            .filter(|o| !o.archived)
            .map(|o| o.id)
            .collect()
    }

    /// The options of `hubspot_owner_id`: the active owners.
    pub fn options(&self) -> Vec<PropertyOption> {
        self.by_id
            .values()
            .filter(|o| !o.archived)
            .map(|o| PropertyOption {
                label: format!("{} {}", o.first_name, o.last_name),
                value: o.id.to_string(),
            })
            .collect()
    }

    /// `GET /crm/v3/owners`: a page of owners after `after`, and the next cursor.
    pub fn list(
        &self,
        limit: usize,
        after: Option<&str>,
        archived: bool,
        email: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), HsError> {
        let start = match after {
            None | Some("") => 0,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| HsError::validation(format!("Invalid after value: {text}")))?,
        };
        let limit = limit.clamp(1, OWNER_LIMIT_MAX);
        let mut matching = self.by_id.range(start..).map(|(_, o)| o).filter(|o| {
            o.archived == archived && email.is_none_or(|e| o.email.eq_ignore_ascii_case(e))
        });
        let results: Vec<Value> = matching.by_ref().take(limit).map(Owner::to_json).collect();
        let next = matching.next().map(|o| o.id.to_string());
        Ok((results, next))
    }

    /// `GET /crm/v3/owners/{ownerId}`, by owner id or (`idProperty=userId`) by user id.
    pub fn get(
        &self,
        id: &str,
        id_property: Option<&str>,
        archived: bool,
    ) -> Result<Value, HsError> {
        let number = id.parse::<u64>().map_err(|_| HsError::not_found())?;
        let found = match id_property {
            None | Some("id") => self.by_id.get(&number),
            Some("userId") => self.by_id.values().find(|o| o.user_id == number),
            Some(other) => {
                return Err(HsError::validation(format!(
                    "idProperty must be id or userId, not {other}"
                )));
            }
        };
        found
            .filter(|o| o.archived == archived)
            .map(Owner::to_json)
            .ok_or_else(HsError::not_found)
    }
}
