//! Pagination: the checkpointable [`PageCursor`], how each `Pagination`
//! kind puts a cursor on a request and finds the next one in a response, the
//! stop conditions, and RFC 8288 `Link` header parsing.
//!
//! A page that cannot say where the next one is, while the API says there is
//! more, is an error: guessing would skip or repeat records.

use reqwest::Url;
use sequin_spec::model::{PageCommon, Pagination, StopCondition};
use sequin_spec::record::get_path;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the next page starts. Serializable, so the sync engine can
/// checkpoint it with the rows of the page and resume after a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PageCursor {
    /// A cursor value sent as the pagination's `param` (record and response
    /// cursors).
    After {
        /// The cursor value.
        value: String,
    },
    /// The next page's URL or path, as the API gave it (next URLs, `Link`).
    Url {
        /// Absolute URL or path, resolved against the base URL.
        url: String,
    },
    /// Offset of the next page's first record.
    Offset {
        /// Records already read.
        offset: u64,
    },
    /// Number of the next page.
    Page {
        /// The page number to ask for.
        page: u64,
    },
}

/// One page of records.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The page's records, in the API's order.
    pub records: Vec<Value>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<PageCursor>,
    /// How many records the whole listing has, when the response says so
    /// (the pagination's `total` path).
    pub total: Option<u64>,
    /// HTTP status of the response.
    pub raw_status: u16,
}

/// Moves the value at a dot path (as `get_path` reads it) out of `v`,
/// leaving null in its place; null when nothing is there.
pub fn take_path(v: &mut Value, path: &str) -> Value {
    if path.is_empty() {
        return v.take();
    }
    let mut cur = v;
    for seg in path.split('.') {
        let next = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return Value::Null,
        }
    }
    cur.take()
}

/// The common settings of a pagination.
pub fn common(p: &Pagination) -> &PageCommon {
    p.common()
}

/// The page size to ask for: `page_size`, capped by `max_page_size`.
pub fn page_size(c: &PageCommon) -> Option<u32> {
    match (c.page_size, c.max_page_size) {
        (Some(s), Some(m)) => Some(s.min(m)),
        (s, m) => s.or(m),
    }
}

/// One link of a `Link` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The link's URL (as written, possibly relative).
    pub target: String,
    /// Relation types, lowercased (`rel="next last"` gives two).
    pub rels: Vec<String>,
}

/// Parses an RFC 8288 `Link` header value:
/// `<url>; rel="next", <url>; rel=last; title="x, y"`. Commas inside `<...>`
/// and quoted strings do not split links.
pub fn parse_link_header(value: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some(stripped) = rest.strip_prefix('<') else {
            break;
        };
        let Some(end) = stripped.find('>') else {
            break;
        };
        let target = stripped[..end].trim().to_string();
        rest = &stripped[end + 1..];
        let mut rels = Vec::new();
        // Parameters until the next top-level comma.
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            let Some(p) = rest.strip_prefix(';') else {
                break;
            };
            rest = p.trim_start_matches([' ', '\t']);
            let name_end = rest.find(['=', ';', ',']).unwrap_or(rest.len());
            let name = rest[..name_end].trim().to_ascii_lowercase();
            rest = &rest[name_end..];
            let mut val = String::new();
            if let Some(r) = rest.strip_prefix('=') {
                let r = r.trim_start_matches([' ', '\t']);
                if let Some(q) = r.strip_prefix('"') {
                    // Quoted string with backslash escapes.
                    let mut chars = q.char_indices();
                    let mut consumed = q.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, n)) = chars.next() {
                                    val.push(n);
                                }
                            }
                            '"' => {
                                consumed = i + 1;
                                break;
                            }
                            c => val.push(c),
                        }
                    }
                    rest = &q[consumed..];
                } else {
                    let end = r.find([';', ',']).unwrap_or(r.len());
                    val = r[..end].trim().to_string();
                    rest = &r[end..];
                }
            }
            if name == "rel" {
                rels.extend(val.split_whitespace().map(str::to_ascii_lowercase));
            }
        }
        links.push(Link { target, rels });
    }
    links
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(value: &str) -> Option<String> {
    parse_link_header(value)
        .into_iter()
        .find(|l| l.rels.iter().any(|r| r == "next"))
        .map(|l| l.target)
}

/// Puts a cursor (or, with none, the first page's settings) on a request:
/// the page size and the cursor parameter, in the query or the JSON body.
/// URL cursors are not handled here (the caller requests the URL itself).
pub(crate) fn apply_cursor(
    pagination: Option<&Pagination>,
    cursor: Option<&PageCursor>,
    url: &mut Url,
    body: Option<&mut Value>,
) -> Result<(), String> {
    let Some(p) = pagination else {
        return match cursor {
            None => Ok(()),
            Some(_) => Err("a cursor was given for an endpoint without pagination".into()),
        };
    };
    let c = common(p);
    if let (Some(param), Some(size)) = (&c.size_param, page_size(c)) {
        super::template::set_query_param(url, param, &size.to_string());
    }
    let Some(cursor) = cursor else {
        return Ok(());
    };
    let (param, value) = match (p, cursor) {
        (Pagination::RecordCursor { param, .. }, PageCursor::After { value }) => {
            (param, value.clone())
        }
        (
            Pagination::ResponseCursor {
                param,
                in_body: true,
                ..
            },
            PageCursor::After { value },
        ) => {
            let Some(Value::Object(b)) = body else {
                return Err(format!(
                    "the cursor goes in the request body as `{param}`, but the request has no JSON object body"
                ));
            };
            b.insert(param.clone(), Value::String(value.clone()));
            return Ok(());
        }
        (Pagination::ResponseCursor { param, .. }, PageCursor::After { value }) => {
            (param, value.clone())
        }
        (Pagination::Offset { param, .. }, PageCursor::Offset { offset }) => {
            (param, offset.to_string())
        }
        (Pagination::PageNumber { param, .. }, PageCursor::Page { page }) => {
            (param, page.to_string())
        }
        (_, other) => {
            return Err(format!(
                "cursor {other:?} does not fit this endpoint's pagination"
            ));
        }
    };
    super::template::set_query_param(url, param, &value);
    Ok(())
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a response says about the next page.
pub(crate) struct PageResponse<'a> {
    pub body: &'a Value,
    pub records: &'a [Value],
    pub link: Option<&'a str>,
}

/// Finds the next cursor of a page, applying the stop condition.
pub(crate) fn next_cursor(
    pagination: Option<&Pagination>,
    current: Option<&PageCursor>,
    resp: &PageResponse<'_>,
) -> Result<Option<PageCursor>, String> {
    let Some(p) = pagination else {
        return Ok(None);
    };
    let c = common(p);
    // What the stop condition says: Some(true) stop, Some(false) go on,
    // None undecided (fall back to "no cursor or empty page").
    let stop = match &c.stop {
        Some(StopCondition::FlagFalse { path }) => get_path(resp.body, path)
            .and_then(Value::as_bool)
            .map(|b| !b),
        Some(StopCondition::FlagTrue { path }) => {
            get_path(resp.body, path).and_then(Value::as_bool)
        }
        Some(StopCondition::ShortPage) => {
            let size = page_size(c).ok_or("stop condition short_page needs a page_size")?;
            Some(resp.records.len() < size as usize)
        }
        Some(StopCondition::EmptyPage) => Some(resp.records.is_empty()),
        None => None,
    };
    if stop == Some(true) {
        return Ok(None);
    }
    let empty = resp.records.is_empty();
    let next = match p {
        Pagination::RecordCursor { field, .. } => match resp.records.last() {
            None => None,
            Some(last) => Some(PageCursor::After {
                value: get_path(last, field)
                    .and_then(scalar_text)
                    .ok_or_else(|| format!("the last record has no cursor field `{field}`"))?,
            }),
        },
        Pagination::ResponseCursor { path, .. } => get_path(resp.body, path)
            .and_then(scalar_text)
            .map(|value| PageCursor::After { value }),
        Pagination::NextUrl { path, .. } => get_path(resp.body, path)
            .and_then(scalar_text)
            .map(|url| PageCursor::Url { url }),
        Pagination::LinkHeader { .. } => resp
            .link
            .and_then(next_link)
            .map(|url| PageCursor::Url { url }),
        Pagination::Offset { .. } => {
            let at = match current {
                Some(PageCursor::Offset { offset }) => *offset,
                _ => 0,
            };
            (!empty).then(|| PageCursor::Offset {
                offset: at + resp.records.len() as u64,
            })
        }
        Pagination::PageNumber { first_page, .. } => {
            let at = match current {
                Some(PageCursor::Page { page }) => *page,
                _ => *first_page,
            };
            (!empty).then(|| PageCursor::Page { page: at + 1 })
        }
    };
    match (stop, next) {
        // The API says there is more but gives no way to get it.
        (Some(false), None) => {
            Err("the API says more records follow, but the response has no next-page cursor".into())
        }
        (_, Some(n)) if current == Some(&n) => Err(format!(
            "the API returned the same cursor twice ({n:?}); paging would loop"
        )),
        // Without a stop condition an empty page ends the list.
        (None, _) if empty => Ok(None),
        (_, n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn take_path_moves_the_value_out() {
        let mut v = json!({"data": {"items": [1, 2]}, "has_more": true});
        assert_eq!(take_path(&mut v, "data.items"), json!([1, 2]));
        assert_eq!(v, json!({"data": {"items": null}, "has_more": true}));
        assert_eq!(take_path(&mut v, "data.nothing.here"), Value::Null);
        let mut list = json!([{"id": 1}]);
        assert_eq!(take_path(&mut list, "0.id"), json!(1));
        assert_eq!(take_path(&mut list, ""), json!([{"id": null}]));
        assert_eq!(list, Value::Null);
    }

    #[test]
    fn link_headers() {
        let v = r#"<https://api.github.com/repositories/1/issues?page=2&per_page=100>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        let links = parse_link_header(v);
        assert_eq!(links.len(), 2);
        assert_eq!(links[1].rels, vec!["last"]);
        assert_eq!(
            next_link(v).unwrap(),
            "https://api.github.com/repositories/1/issues?page=2&per_page=100"
        );
        // Unquoted rel, several rels, commas inside quotes and URLs, odd spacing.
        let tricky = r#"<http://x/a?q=1,2>;title="a, b; c";rel=prev ,	<http://x/b> ; rel="Next last" ; type="text/html""#;
        let links = parse_link_header(tricky);
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].target, "http://x/a?q=1,2");
        assert_eq!(links[0].rels, vec!["prev"]);
        assert_eq!(links[1].rels, vec!["next", "last"]);
        assert_eq!(next_link(tricky).unwrap(), "http://x/b");
        assert_eq!(next_link(r#"<http://x/p1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(
            next_link(r#"<http://x/e>; title="say \"hi\""; rel="next""#).unwrap(),
            "http://x/e"
        );
    }

    fn pag(yaml: serde_json::Value) -> Pagination {
        serde_json::from_value(yaml).unwrap()
    }

    fn next(
        p: &Pagination,
        cur: Option<&PageCursor>,
        body: Value,
        path: &str,
        link: Option<&str>,
    ) -> Result<Option<PageCursor>, String> {
        let records = get_path(&body, path)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        next_cursor(
            Some(p),
            cur,
            &PageResponse {
                body: &body,
                records: &records,
                link,
            },
        )
    }

    #[test]
    fn stripe_record_cursor_with_has_more() {
        let p = pag(
            json!({"kind": "record_cursor", "param": "starting_after", "field": "id",
            "size_param": "limit", "page_size": 100, "stop": {"when": "flag_false", "path": "has_more"}}),
        );
        let more = json!({"data": [{"id": "cus_1"}, {"id": "cus_2"}], "has_more": true});
        assert_eq!(
            next(&p, None, more, "data", None).unwrap(),
            Some(PageCursor::After {
                value: "cus_2".into()
            })
        );
        let last = json!({"data": [{"id": "cus_3"}], "has_more": false});
        assert_eq!(next(&p, None, last, "data", None).unwrap(), None);
        let broken = json!({"data": [], "has_more": true});
        assert!(next(&p, None, broken, "data", None).is_err());
        let no_id = json!({"data": [{"name": "x"}], "has_more": true});
        assert!(
            next(&p, None, no_id, "data", None)
                .unwrap_err()
                .contains("`id`")
        );
    }

    #[test]
    fn response_cursor_and_next_url() {
        let hs =
            pag(json!({"kind": "response_cursor", "param": "after", "path": "paging.next.after"}));
        let page =
            json!({"results": [{"id": "1"}], "paging": {"next": {"after": "2", "link": "x"}}});
        assert_eq!(
            next(&hs, None, page, "results", None).unwrap(),
            Some(PageCursor::After { value: "2".into() })
        );
        let end = json!({"results": [{"id": "9"}]});
        assert_eq!(next(&hs, None, end, "results", None).unwrap(), None);
        let same = json!({"results": [{"id": "1"}], "paging": {"next": {"after": "2"}}});
        let cur = PageCursor::After { value: "2".into() };
        assert!(
            next(&hs, Some(&cur), same, "results", None)
                .unwrap_err()
                .contains("loop")
        );

        let sf = pag(
            json!({"kind": "next_url", "path": "nextRecordsUrl", "stop": {"when": "flag_true", "path": "done"}}),
        );
        let more = json!({"done": false, "records": [{"Id": "a"}], "nextRecordsUrl": "/services/data/v59.0/query/01g-2000"});
        assert_eq!(
            next(&sf, None, more, "records", None).unwrap(),
            Some(PageCursor::Url {
                url: "/services/data/v59.0/query/01g-2000".into()
            })
        );
        let done = json!({"done": true, "records": [{"Id": "b"}], "nextRecordsUrl": "/stale"});
        assert_eq!(next(&sf, None, done, "records", None).unwrap(), None);
        let lying = json!({"done": false, "records": [{"Id": "b"}]});
        assert!(next(&sf, None, lying, "records", None).is_err());
    }

    #[test]
    fn offset_page_number_and_link() {
        let off = pag(
            json!({"kind": "offset", "param": "offset", "size_param": "limit", "page_size": 2,
            "stop": {"when": "short_page"}}),
        );
        let full = json!([{"id": 1}, {"id": 2}]);
        let cur = PageCursor::Offset { offset: 4 };
        assert_eq!(
            next(&off, Some(&cur), full, "", None).unwrap(),
            Some(PageCursor::Offset { offset: 6 })
        );
        assert_eq!(
            next(&off, None, json!([{"id": 1}]), "", None).unwrap(),
            None
        );

        let pn = pag(json!({"kind": "page_number", "param": "page", "first_page": 0}));
        assert_eq!(
            next(&pn, None, json!([{"id": 1}]), "", None).unwrap(),
            Some(PageCursor::Page { page: 1 })
        );
        assert_eq!(
            next(
                &pn,
                Some(&PageCursor::Page { page: 3 }),
                json!([]),
                "",
                None
            )
            .unwrap(),
            None
        );

        let gh = pag(json!({"kind": "link_header", "size_param": "per_page", "page_size": 100}));
        let link = r#"<http://h/repos/o/r/issues?page=2>; rel="next", <http://h/repos/o/r/issues?page=3>; rel="last""#;
        assert_eq!(
            next(&gh, None, json!([{"id": 1}]), "", Some(link)).unwrap(),
            Some(PageCursor::Url {
                url: "http://h/repos/o/r/issues?page=2".into()
            })
        );
        assert_eq!(next(&gh, None, json!([{"id": 1}]), "", None).unwrap(), None);
    }

    #[test]
    fn cursors_go_in_query_or_body() {
        let p = pag(
            json!({"kind": "record_cursor", "param": "starting_after", "field": "id",
            "size_param": "limit", "page_size": 500, "max_page_size": 100}),
        );
        let mut url = Url::parse("http://h/v1/customers?limit=10").unwrap();
        apply_cursor(
            Some(&p),
            Some(&PageCursor::After {
                value: "cus_9".into(),
            }),
            &mut url,
            None,
        )
        .unwrap();
        assert_eq!(url.query(), Some("limit=100&starting_after=cus_9"));
        let wrong = apply_cursor(
            Some(&p),
            Some(&PageCursor::Page { page: 2 }),
            &mut url,
            None,
        );
        assert!(wrong.is_err());

        let search = pag(
            json!({"kind": "response_cursor", "param": "after", "path": "paging.next.after", "in_body": true}),
        );
        let mut url = Url::parse("http://h/search").unwrap();
        let mut body = json!({"limit": 200});
        apply_cursor(
            Some(&search),
            Some(&PageCursor::After {
                value: "200".into(),
            }),
            &mut url,
            Some(&mut body),
        )
        .unwrap();
        assert_eq!(body, json!({"limit": 200, "after": "200"}));
        assert_eq!(url.query(), None);
        assert!(
            apply_cursor(
                Some(&search),
                Some(&PageCursor::After { value: "1".into() }),
                &mut url,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn cursors_serialize_for_checkpoints() {
        let c = PageCursor::Url {
            url: "/q/01g-2000".into(),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"kind":"url","url":"/q/01g-2000"}"#);
        assert_eq!(serde_json::from_str::<PageCursor>(&text).unwrap(), c);
        let o: PageCursor =
            serde_json::from_value(json!({"kind": "offset", "offset": 300})).unwrap();
        assert_eq!(o, PageCursor::Offset { offset: 300 });
    }
}
