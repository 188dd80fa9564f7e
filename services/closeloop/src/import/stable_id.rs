//! The stable event id of an imported row: a UUIDv5 (RFC 9562) in closeloop's import
//! namespace, named by the source and
//!
//! - the row's source reference (ticket number, review id) when `reference` is mapped
//!   and the row has one: the same ticket is the same event, however its other
//!   columns were exported;
//! - else the row's mapped fields as posted (channel, touchpoint, customer, text,
//!   rating, NPS, date, metadata), in one fixed JSON form.
//!
//! So an import run again — after an interruption, or over an export that grew — posts
//! the same ids, and ingest, which remembers every id it accepted with a digest of its
//! content, takes them as the retries they are: nothing is doubled downstream. A row
//! whose reference comes back with other content is refused by ingest as an
//! `event-id-conflict` and lands in the rejects file.

use chrono::{DateTime, Utc};
use closeloop_events::{Channel, CustomerRef, Touchpoint};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::mapping::Item;

/// closeloop's import namespace (a fixed random UUID; changing it changes every id).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x5d0c_9a3e_61f4_4b8e_9c1d_7a2f_3e86_b410);

/// The version of the naming rule, part of every name.
const RULE: &str = "closeloop-import/v1";

/// What a content-named id covers: the item without its id.
#[derive(Serialize)]
struct Content<'a> {
    occurred_at: &'a Option<DateTime<Utc>>,
    channel: Channel,
    touchpoint: Option<Touchpoint>,
    customer: &'a CustomerRef,
    text: &'a str,
    rating: Option<u8>,
    nps: Option<u8>,
    metadata: &'a Map<String, Value>,
}

/// The event id of `item` from `source` (its own `event_id` is not read).
pub fn event_id(source: &str, item: &Item) -> Uuid {
    // Sources are [a-z0-9_-], so the line breaks cannot be forged by a source name.
    let name = match &item.customer.reference {
        Some(reference) => format!("{RULE}\n{source}\nreference\n{reference}"),
        None => {
            let content = Content {
                occurred_at: &item.occurred_at,
                channel: item.channel,
                touchpoint: item.touchpoint,
                customer: &item.customer,
                text: &item.text,
                rating: item.rating,
                nps: item.nps,
                metadata: &item.metadata,
            };
            // Serialising these types cannot fail (string keys only); were it to, the
            // Debug form is as stable a name.
            let json = serde_json::to_string(&content).unwrap_or_else(|_| format!("{item:?}"));
            format!("{RULE}\n{source}\ncontent\n{json}")
        }
    };
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str, reference: Option<&str>) -> Item {
        Item {
            event_id: Uuid::nil(),
            occurred_at: DateTime::parse_from_rfc3339("2026-03-04T10:00:00Z")
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            channel: Channel::Ticket,
            touchpoint: Some(Touchpoint::Delivery),
            customer: CustomerRef {
                id: "c-1".into(),
                locale: Some("de-DE".into()),
                consent: true,
                email: None,
                reference: reference.map(str::to_owned),
            },
            text: text.into(),
            rating: Some(2),
            nps: None,
            metadata: Map::new(),
        }
    }

    #[test]
    fn the_same_row_gets_the_same_id_and_another_row_another() {
        let id = event_id("shopdesk", &item("Die Lieferung kam zu spät", None));
        assert_eq!(
            id,
            event_id("shopdesk", &item("Die Lieferung kam zu spät", None)),
            "same row, same id"
        );
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(
            id,
            event_id("shopdesk", &item("Die Lieferung kam pünktlich", None)),
            "other text"
        );
        let mut other = item("Die Lieferung kam zu spät", None);
        other.rating = Some(3);
        assert_ne!(id, event_id("shopdesk", &other), "other rating");
        let mut other = item("Die Lieferung kam zu spät", None);
        other.occurred_at = None;
        assert_ne!(id, event_id("shopdesk", &other), "no date");
        assert_ne!(
            id,
            event_id("surveyhub", &item("Die Lieferung kam zu spät", None)),
            "other source"
        );
    }

    #[test]
    fn a_reference_names_the_row_whatever_else_it_says() {
        let first = event_id("shopdesk", &item("late", Some("T-4711")));
        assert_eq!(first, event_id("shopdesk", &item("edited", Some("T-4711"))));
        assert_ne!(first, event_id("shopdesk", &item("late", Some("T-4712"))));
        assert_ne!(first, event_id("surveyhub", &item("late", Some("T-4711"))));
        assert_ne!(first, event_id("shopdesk", &item("late", None)));
    }

    #[test]
    fn the_rule_is_pinned() {
        // Changing the namespace or the naming rule changes every id of every earlier
        // import, so a re-import would double everything: these values must not move.
        assert_eq!(
            NAMESPACE.to_string(),
            "5d0c9a3e-61f4-4b8e-9c1d-7a2f3e86b410"
        );
        assert_eq!(
            event_id("shopdesk", &item("late", Some("T-4711"))).to_string(),
            "3c6b1662-bf43-534c-b943-9c9d7e5b9b5f",
            "UUIDv5(namespace, \"closeloop-import/v1\\nshopdesk\\nreference\\nT-4711\")"
        );
        // The content form is the fields' JSON as serde writes it:
        // {"occurred_at":"2026-03-04T10:00:00Z","channel":"ticket","touchpoint":"delivery",
        //  "customer":{"id":"c-1","locale":"de-DE","consent":true},"text":"late",
        //  "rating":2,"nps":null,"metadata":{}}
        // A dependency that wrote dates or absent values differently would move every
        // content-named id.
        assert_eq!(
            event_id("shopdesk", &item("late", None)).to_string(),
            "631f611f-33f2-5356-829c-d8d69ee12fbf",
            "UUIDv5 of the rule, the source and the fields' JSON",
        );
    }
}
