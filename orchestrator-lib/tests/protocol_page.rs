//! docs/PROTOCOL.md, read as data and checked against the code: its field
//! tables (which fields, of which type, which required), its example bodies,
//! its list of rejection reasons and its example rejections, its names and
//! limits. A service author builds from that page alone, so it must not
//! drift from `wire`, `topology` and `signing`.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator_lib::plumbing::{MAX_SCOPE_LEN, PING_EXCHANGE, is_valid_scope, ping_exchange};
use orchestrator_lib::signing::{MAC_HEADER, MIN_KEY_LEN, hmac_sha256_hex};
use orchestrator_lib::wire::{
    self, DEFAULT_MAX_BODY, Echo, Goodbye, MAX_NAME_LEN, Message, PROTOCOL_VERSION, Ping,
    RejectReason,
};
use orchestrator_lib::{Endpoint, Identity, Keys, LinkOptions, Scope};
use serde_json::{Value, json};

const PAGE: &str = include_str!("../../docs/PROTOCOL.md");

/// The text from the heading that starts with `heading` to the next heading
/// of the same or a higher level (outside code blocks).
fn section(heading: &str) -> &'static str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = PAGE
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("PROTOCOL.md has no heading {heading:?}"))
        + 1;
    let mut offset = start;
    let mut fenced = false;
    for (n, line) in PAGE[start..].split_inclusive('\n').enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if n > 0 && !fenced && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return &PAGE[start..offset];
        }
        offset += line.len();
    }
    &PAGE[start..]
}

/// One Markdown table: its header and rows, cells trimmed.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn column(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {:?}", self.header))
    }

    fn records(&self) -> Vec<BTreeMap<String, String>> {
        self.rows
            .iter()
            .map(|row| {
                self.header
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }
}

/// Every table in `text`, in order.
fn tables(text: &str) -> Vec<Table> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i + 1 < lines.len() {
        let is_rule = lines[i + 1].trim().starts_with("|---");
        if lines[i].trim().starts_with('|') && is_rule {
            let header = cells(lines[i]);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim().starts_with('|') {
                let row = cells(lines[i]);
                assert_eq!(row.len(), header.len(), "a ragged row: {:?}", lines[i]);
                rows.push(row);
                i += 1;
            }
            out.push(Table { header, rows });
        } else {
            i += 1;
        }
    }
    out
}

/// The table under `heading` whose header starts with `first_column`.
fn table(heading: &str, first_column: &str) -> Table {
    tables(section(heading))
        .into_iter()
        .find(|t| t.header.first().is_some_and(|h| h == first_column))
        .unwrap_or_else(|| panic!("no table starting with {first_column:?} under {heading:?}"))
}

/// The text of the first code span in `cell`.
fn code(cell: &str) -> &str {
    let start = cell
        .find('`')
        .unwrap_or_else(|| panic!("no code in {cell:?}"))
        + 1;
    let len = cell[start..].find('`').expect("a closed code span");
    &cell[start..start + len]
}

/// Every fenced block of `lang` in `text`.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.split(&fence)
        .skip(1)
        .map(|rest| rest.split("\n```").next().unwrap())
        .collect()
}

fn reason_of(body: &[u8]) -> Result<Message, &'static str> {
    wire::decode(body).map_err(|error| error.reason().code())
}

/// Each message kind with every optional field set: what `wire` can write.
fn full(kind: &str) -> Message {
    let at = Some("2026-11-23T10:00:00.250Z".parse().unwrap());
    match kind {
        "ping" => Message::Ping(Ping {
            monitor: "m".into(),
            seq: 1,
            boot: Some(1),
            sent_at: at,
        }),
        "echo" => Message::Echo(Echo {
            service: "s".into(),
            instance: "i".into(),
            monitor: Some("m".into()),
            seq: 1,
            at,
        }),
        _ => Message::Goodbye(Goodbye {
            service: "s".into(),
            instance: "i".into(),
            monitor: Some("m".into()),
            seq: Some(1),
            at,
            back_within: Some(std::time::Duration::from_secs(30)),
        }),
    }
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_envelope_table_is_what_every_body_carries() {
    let envelope = table("## Messages", "field");
    let records = envelope.records();
    let fields: Vec<&str> = records.iter().map(|r| code(&r["field"])).collect();
    assert_eq!(fields, ["v", "type"]);
    assert!(records.iter().all(|r| r["required"] == "yes"));
    assert!(records[0]["meaning"].contains(&format!("`{PROTOCOL_VERSION}`")));
    for kind in ["ping", "echo", "goodbye"] {
        let body: Value = serde_json::from_slice(&wire::encode(&full(kind))).unwrap();
        assert_eq!(body["v"], json!(PROTOCOL_VERSION));
        assert_eq!(body["type"], json!(kind));
        // Without either, no message.
        for field in ["v", "type"] {
            let mut without = body.clone();
            without.as_object_mut().unwrap().remove(field);
            let without = serde_json::to_vec(&without).unwrap();
            assert_eq!(
                reason_of(&without).unwrap_err(),
                "bad_shape",
                "{kind} without {field}"
            );
        }
    }
}

#[test]
fn each_message_table_names_every_field_its_type_and_whether_it_is_required() {
    for kind in ["ping", "echo", "goodbye"] {
        let heading = format!("### `{kind}`");
        let fields = table(&heading, "field");
        for column in ["type", "required", "meaning"] {
            fields.column(column);
        }
        let examples = blocks(section(&heading), "json");
        assert_eq!(examples.len(), 1, "one example body under {heading}");
        let example: Value = serde_json::from_str(examples[0]).unwrap();

        // The example is a valid message of its kind, and wire writes it
        // back field for field: it shows the fields as wire spells them.
        let decoded = reason_of(examples[0].as_bytes())
            .unwrap_or_else(|reason| panic!("{kind}'s example rejected: {reason}"));
        let written: Value = serde_json::from_slice(&wire::encode(&decoded)).unwrap();
        assert_eq!(written, example, "{kind}'s example does not round-trip");

        // The table lists exactly the fields wire knows for this kind.
        let listed: BTreeSet<String> = fields
            .records()
            .iter()
            .map(|r| code(&r["field"]).to_owned())
            .chain(["v".to_owned(), "type".to_owned()])
            .collect();
        let known = keys_of(&serde_json::from_slice(&wire::encode(&full(kind))).unwrap());
        assert_eq!(listed, known, "{kind}: the table's fields against wire's");
        assert_eq!(
            keys_of(&example),
            known,
            "{kind}'s example shows every field"
        );

        for record in fields.records() {
            let field = code(&record["field"]);
            let with = |value: Option<Value>| {
                let mut body = example.clone();
                match value {
                    Some(value) => body[field] = value,
                    None => {
                        body.as_object_mut().unwrap().remove(field);
                    }
                }
                reason_of(&serde_json::to_vec(&body).unwrap()).map(|_| ())
            };
            let what = format!("{kind}.{field}");
            match record["required"].as_str() {
                "yes" => {
                    assert_eq!(with(None), Err("bad_shape"), "{what} missing");
                    assert_eq!(with(Some(Value::Null)), Err("bad_shape"), "{what} null");
                }
                // Required by a monitor with a key (the engine's checks),
                // never by the codec.
                "no" | "with a key" => {
                    assert_eq!(with(None), Ok(()), "{what} missing");
                    assert_eq!(with(Some(Value::Null)), Ok(()), "{what} null");
                }
                other => panic!("{what}: required is {other:?}"),
            }
            match record["type"].as_str() {
                "name" => {
                    assert_eq!(with(Some(json!("a b"))), Err("bad_name"), "{what}");
                    assert_eq!(
                        with(Some(json!("x".repeat(MAX_NAME_LEN)))),
                        Ok(()),
                        "{what}"
                    );
                    let long = "x".repeat(MAX_NAME_LEN + 1);
                    assert_eq!(with(Some(json!(long))), Err("bad_name"), "{what}");
                    assert_eq!(with(Some(json!(7))), Err("bad_shape"), "{what}");
                }
                "integer" => {
                    assert_eq!(with(Some(json!(u64::MAX))), Ok(()), "{what}");
                    for bad in [json!("42"), json!(-1), json!(42.0), json!(true)] {
                        assert_eq!(with(Some(bad.clone())), Err("bad_shape"), "{what} {bad}");
                    }
                }
                "timestamp" => {
                    for ignored in [json!("yesterday"), json!(17), json!([1]), json!({})] {
                        assert_eq!(with(Some(ignored.clone())), Ok(()), "{what} {ignored}");
                    }
                    let naive = json!("2026-11-23T10:00:00.123456");
                    assert_eq!(with(Some(naive)), Ok(()), "{what}");
                }
                other => panic!("{what}: type {other:?} is not one the page defines"),
            }
        }
    }
}

#[test]
fn a_known_field_of_the_wrong_type_spoils_any_message() {
    // "Types are checked for every field this page names, in every message."
    let ping = br#"{"v":1,"type":"ping","monitor":"m","seq":1,"instance":7}"#;
    assert_eq!(reason_of(ping).unwrap_err(), "bad_shape");
    let goodbye = br#"{"v":1,"type":"goodbye","service":"s","instance":"i","seq":"x"}"#;
    assert_eq!(reason_of(goodbye).unwrap_err(), "bad_shape");
    // Unknown fields of any type are ignored.
    let padded = br#"{"v":1,"type":"ping","monitor":"m","seq":1,"load":[0.3,{"a":null}]}"#;
    assert!(reason_of(padded).is_ok());
}

#[test]
fn every_rejection_reason_is_listed_and_the_examples_are_rejected_for_theirs() {
    let reasons = table("## Bad and ignored messages", "reason");
    let listed: BTreeSet<&str> = reasons.rows.iter().map(|r| code(&r[0])).collect();
    let known: BTreeSet<&str> = RejectReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(
        listed, known,
        "the page's reasons against RejectReason::ALL"
    );

    // The examples, each rejected by the codec for the reason shown.
    let examples = table("## Bad and ignored messages", "body");
    let mut by_codec = BTreeSet::new();
    let example_records = examples.records();
    for record in &example_records {
        let mut body = code(&record["body"]).to_owned();
        if record["body"].contains("over 65,536 bytes") {
            body = body.replace('…', &"x".repeat(DEFAULT_MAX_BODY));
            assert!(body.len() > DEFAULT_MAX_BODY);
        }
        let expected = code(&record["reason"]);
        assert_eq!(
            reason_of(body.as_bytes()).err(),
            Some(expected),
            "{body:.80}"
        );
        by_codec.insert(expected);
    }
    // What a signature check says, for a key's holder.
    let keys = Keys::parse("0123456789abcdef0123").unwrap();
    let body = br#"{"v":1,"type":"ping","monitor":"m","seq":1}"#;
    let mut by_signature = BTreeSet::new();
    for header in [None, Some("00".repeat(32))] {
        let reason = keys.verify(body, header.as_deref().map(str::as_bytes));
        by_signature.insert(reason.unwrap_err().code());
    }
    assert!(
        keys.verify(body, Some(keys.sign(body).to_uppercase().as_bytes()))
            .is_ok()
    );

    // "both": every receiver checks it (the codec and the link's signature
    // check); "monitor": the monitor's engine alone.
    let records = reasons.records();
    let both: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["counted by"] == "both")
        .map(|r| code(&r["reason"]))
        .collect();
    let expected: BTreeSet<&str> = by_codec.union(&by_signature).copied().collect();
    assert_eq!(both, expected, "reasons every receiver counts");
    for record in &records {
        assert!(
            ["both", "monitor"].contains(&record["counted by"].as_str()),
            "{record:?}"
        );
    }
}

#[test]
fn names_limits_and_broker_objects_are_the_codes() {
    // The name rule.
    let rule = format!("^[A-Za-z0-9._-]{{1,{MAX_NAME_LEN}}}$");
    assert!(
        PAGE.contains(&format!("`{rule}`")),
        "the page states {rule}"
    );
    assert!(PAGE.contains(&format!("1 to {MAX_NAME_LEN} ASCII")));
    for name in ["orders", "a.b-c_D9"] {
        assert!(wire::is_valid_name(name));
    }
    for name in ["a b", "a/b", "é", ""] {
        assert!(!wire::is_valid_name(name));
    }
    // The size limit.
    assert_eq!(DEFAULT_MAX_BODY, 64 * 1024);
    assert!(PAGE.contains("**64 KiB** (65,536 bytes"));

    // The broker objects.
    let objects = table("## Broker objects", "object");
    let name_of = |object: &str| {
        let row = objects
            .records()
            .into_iter()
            .find(|r| r["object"] == object)
            .unwrap_or_else(|| panic!("no {object} row"));
        code(&row["name"]).to_owned()
    };
    assert_eq!(name_of("exchange"), PING_EXCHANGE);
    let me = Identity::new("orders", "orders-1").unwrap();
    assert_eq!(
        name_of("service queue")
            .replace("<service>", "orders")
            .replace("<instance>", "orders-1"),
        Endpoint::service(&me).queue
    );
    assert_eq!(
        name_of("monitor queue").replace("<monitor-id>", "ops-1"),
        Endpoint::monitor("ops-1").queue
    );
    let prefetch = LinkOptions::service().prefetch;
    assert!(PAGE.contains(&format!("the Rust services use {prefetch})")));
}

#[test]
fn every_scope_is_named_as_the_page_says() {
    let rule = format!("^[A-Za-z0-9._-]{{1,{MAX_SCOPE_LEN}}}$");
    let text = section("### Scopes");
    assert!(
        text.contains(&format!("`{rule}`")),
        "the page states {rule}"
    );
    assert!(text.contains(&format!("1 to {MAX_SCOPE_LEN} ASCII")));
    for name in ["staging", "a.b-c_D9", &"x".repeat(MAX_SCOPE_LEN)] {
        assert!(is_valid_scope(name), "{name}");
    }
    for name in ["a:b", "a b", "", &"x".repeat(MAX_SCOPE_LEN + 1)] {
        assert!(!is_valid_scope(name), "{name}");
    }
    assert!(Scope::new("default").unwrap().is_default());

    let objects = table("### Scopes", "object");
    let names = |column: &str, scope: &Scope| -> BTreeMap<String, String> {
        let at = objects.column(column);
        objects
            .rows
            .iter()
            .map(|row| {
                let name = code(&row[at])
                    .replace("<scope>", "staging")
                    .replace("<service>", "orders")
                    .replace("<instance>", "orders-1")
                    .replace("<monitor-id>", "ops-1");
                (row[0].clone(), name)
            })
            .chain([("scope".to_owned(), scope.name().to_owned())])
            .collect()
    };
    for (column, scope) in [
        ("default scope", Scope::default()),
        ("scope `<scope>`", Scope::new("staging").unwrap()),
    ] {
        let page = names(column, &scope);
        let me = Identity::new("orders", "orders-1")
            .unwrap()
            .in_scope(scope.clone());
        let code: BTreeMap<String, String> = [
            ("exchange", ping_exchange(&scope)),
            ("service queue", Endpoint::service(&me).queue),
            ("monitor queue", Endpoint::monitor_in(&scope, "ops-1").queue),
            ("scope", scope.name().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(page, code, "{column}");
    }
    // The default scope's column is the broker objects' table.
    let objects_default = table("## Broker objects", "object");
    for row in &objects_default.rows {
        let scoped = objects
            .rows
            .iter()
            .find(|r| r[0] == row[0])
            .unwrap_or_else(|| panic!("{} has no row under Scopes", row[0]));
        assert_eq!(code(&scoped[1]), code(&row[1]));
    }
    // The longest scoped service queue fits AMQP's 255 bytes, as the page says.
    let longest = Identity::new("s".repeat(MAX_NAME_LEN), "i".repeat(MAX_NAME_LEN))
        .unwrap()
        .in_scope(Scope::new(&"x".repeat(MAX_SCOPE_LEN)).unwrap());
    let len = Endpoint::service(&longest).queue.len();
    assert!(len <= 255);
    let flowing = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flowing.contains(&format!("a service queue's name is {len} bytes")));
}

#[test]
fn signing_is_as_the_page_says() {
    let property = table("## Signing", "property");
    assert_eq!(
        code(&property.rows[0][0]),
        format!(r#"headers["{MAC_HEADER}"]"#)
    );
    assert!(section("## Signing").contains(&format!("at least {MIN_KEY_LEN} bytes")));
    // One comma separates two keys; nothing is trimmed around it.
    let (first, second) = ("0123456789abcdef", "fedcba9876543210");
    let keys = Keys::parse(&format!("{first}, {second}")).unwrap();
    let body = b"{}";
    let spaced = hmac_sha256_hex(format!(" {second}").as_bytes(), body);
    let trimmed = hmac_sha256_hex(second.as_bytes(), body);
    assert!(keys.verify(body, Some(spaced.as_bytes())).is_ok());
    assert!(keys.verify(body, Some(trimmed.as_bytes())).is_err());
    // The first signs.
    assert_eq!(keys.sign(body), hmac_sha256_hex(first.as_bytes(), body));
    // Errors, not downgrades.
    for bad in [
        format!("{first},"),
        format!("{first},{second},{first}"),
        "short".to_owned(),
    ] {
        assert!(Keys::parse(&bad).is_err(), "{bad:?}");
    }
    // The body of the page's openssl line is a valid ping.
    let by_hand = section("## Signing")
        .split("printf %s '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the openssl example");
    assert!(matches!(
        reason_of(by_hand.as_bytes()),
        Ok(Message::Ping(_))
    ));
}
