//! Link tables (`links:` of a spec, HubSpot's associations): a pair's plan
//! and the batch read of the links of some records, which sync (backfill,
//! changed records, the periodic full read) and write-through (reading a
//! created link back) share.

use std::sync::Arc;

use sequin_spec::Connector;
use sequin_spec::links::{pair_endpoint, read_body, read_rows};
use sequin_spec::model::{LinkPair, Links};
use sequin_spec::record::Body;
use serde_json::Value;

use crate::api::{ApiError, Client, Priority, SendRequest, Vars};

/// One link table: the spec's `links` and the pair, with the objects'
/// API names.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkPlan {
    pub links: Arc<Links>,
    pub pair: LinkPair,
    /// `{from}` and `{to}` of the endpoints.
    pub from_api: String,
    pub to_api: String,
}

/// Which way a read goes: from the pair's sources (the table's rows), or
/// from its targets (to find the sources linked to them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

impl LinkPlan {
    /// The plan of the link table `table`, if it is one.
    pub fn of(spec: &Connector, table: &str) -> Option<LinkPlan> {
        let links = spec.links.as_ref()?;
        let pair = spec.link_pair(table)?;
        Some(LinkPlan {
            links: Arc::new(links.clone()),
            pair: pair.clone(),
            from_api: spec.object(&pair.from)?.api_name.clone(),
            to_api: spec.object(&pair.to)?.api_name.clone(),
        })
    }

    /// The links of the records `ids`, as flat link records (`{id, from_id,
    /// to_id, category, type_id, label}`), read `read.max_size` ids per
    /// request. Read in reverse, `from_id` is a target's id and `to_id` a
    /// source's (and the type is the inverse one).
    pub async fn read(
        &self,
        client: &Client,
        priority: Priority,
        ids: &[String],
        direction: Direction,
    ) -> Result<Vec<Value>, ApiError> {
        let (from, to) = match direction {
            Direction::Forward => (&self.from_api, &self.to_api),
            Direction::Reverse => (&self.to_api, &self.from_api),
        };
        let endpoint = pair_endpoint(&self.links.read.endpoint, from, to);
        let vars = Vars::new();
        let mut out = Vec::new();
        for chunk in ids.chunks(self.links.read.max_size.max(1) as usize) {
            let mut req = SendRequest::new(priority, &endpoint, &vars);
            req.body = Some(Body::Json(read_body(&self.links, chunk)));
            // A read: repeating it is harmless.
            req.retry_safe = true;
            let resp = client.send_request(req).await?;
            if let Some(answer) = resp.json {
                out.extend(read_rows(&self.links, &answer));
            }
        }
        Ok(out)
    }
}
