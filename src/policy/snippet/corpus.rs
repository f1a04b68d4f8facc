//! Real snippets, as their authors published them
//! (`tests/fixtures/snippets/real.yaml`), read as Gatehouse reads them:
//! what each becomes is pinned in `real.expect.yaml` beside them, so that
//! a change in what the reader accepts or refuses shows up as a change of
//! that file. `GATEHOUSE_WRITE_EXPECT=1` writes it anew from the reader,
//! to be read over before it is committed.

use serde::{Deserialize, Serialize};

use super::{access_of, Snippet};
use crate::policy::AccessOptions;

const REAL: &str = include_str!("../../../tests/fixtures/snippets/real.yaml");
const EXPECT: &str = include_str!("../../../tests/fixtures/snippets/real.expect.yaml");

#[derive(Deserialize)]
struct Published {
    source: String,
    annotation: String,
    text: String,
}

/// What Gatehouse makes of one snippet with snippet annotations allowed.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Outcome {
    source: String,
    /// `applied`, `served without it` or `closed`.
    outcome: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    understood: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    refused: Vec<String>,
}

fn outcome(published: &Published) -> Outcome {
    let snippet = Snippet::read_as(&published.annotation, &published.text);
    let allowed = AccessOptions {
        allow_snippets: true,
        ..AccessOptions::default()
    };
    let access = access_of(&published.annotation, &published.text, &allowed);
    let outcome = match (&access, snippet.applies()) {
        (Err(_), _) => "closed",
        (Ok(_), true) => "applied",
        (Ok(_), false) => "served without it",
    };
    let mut refused = snippet.refused;
    if let Err(why) = access {
        refused.push(format!("closed: {why}"));
    }
    Outcome {
        source: published.source.clone(),
        outcome: outcome.into(),
        understood: snippet.understood,
        refused,
    }
}

#[test]
fn real_snippets_become_what_their_expectations_say() {
    let published: Vec<Published> = serde_yaml_ng::from_str(REAL).expect("real.yaml");
    let outcomes: Vec<Outcome> = published.iter().map(outcome).collect();
    if std::env::var_os("GATEHOUSE_WRITE_EXPECT").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/snippets/real.expect.yaml"
        );
        let head = "# What Gatehouse makes of each snippet of real.yaml (in its order) with\n\
                    # snippet annotations allowed; src/policy/snippet/corpus.rs checks it.\n";
        let yaml = serde_yaml_ng::to_string(&outcomes).expect("expectations");
        std::fs::write(path, format!("{head}{yaml}")).expect("write real.expect.yaml");
        return;
    }
    let expected: Vec<Outcome> = serde_yaml_ng::from_str(EXPECT).expect("real.expect.yaml");
    assert_eq!(
        outcomes.len(),
        expected.len(),
        "one expectation per snippet"
    );
    for (got, want) in outcomes.iter().zip(&expected) {
        assert_eq!(got, want, "{}", want.source);
    }
}

#[test]
fn every_real_snippet_is_applied_refused_with_a_reason_or_closed() {
    let published: Vec<Published> = serde_yaml_ng::from_str(REAL).expect("real.yaml");
    assert!(published.len() >= 40);
    for snippet in &published {
        let outcome = outcome(snippet);
        match outcome.outcome.as_str() {
            "applied" => assert!(outcome.refused.is_empty(), "{}", snippet.source),
            _ => assert!(!outcome.refused.is_empty(), "{}", snippet.source),
        }
    }
}
