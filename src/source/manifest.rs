//! Parsing YAML manifest text into typed objects.
//!
//! Documents are split on `---` separator lines, as kubectl's YAML reader
//! does, so that every error can name the line it comes from. Kinds that
//! Gatehouse does not read (Deployments, Pods, ...) are skipped
//! silently; a kind it reads under an API version it does not know is an
//! error, as `kubectl apply` would refuse it.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::cluster::Object;

/// Why a manifest text could not be used, with the 1-based line it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ManifestError {
    pub line: usize,
    pub reason: String,
}

/// Parses every document of `text`. Any error makes the whole text unusable
/// (the caller keeps what it had), so a half-saved file never half-applies.
pub fn parse(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (start_line, doc) in documents(text) {
        let value: Value = serde_yaml_ng::from_str(doc).map_err(|e| at(start_line, &e))?;
        if value.is_null() {
            continue; // empty document, or only comments
        }
        if kind_of(&value) == Some("List") {
            parse_list(start_line, &value, &mut objects)?;
        } else if let Some(object) =
            parse_object(&value).map_err(|reason| located(start_line, doc, reason))?
        {
            objects.push(object);
        }
    }
    Ok(objects)
}

/// Splits `text` into documents with the 1-based line each starts on.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_separator = trimmed == "---"
            || trimmed.starts_with("--- ")
            || trimmed.starts_with("---\t")
            || trimmed == "...";
        if is_separator {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

fn kind_of(value: &Value) -> Option<&str> {
    value.get("kind").and_then(Value::as_str)
}

fn parse_list(start_line: usize, list: &Value, out: &mut Vec<Object>) -> Result<(), ManifestError> {
    let items = match list.get("items") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            return Err(ManifestError {
                line: start_line,
                reason: "List: items is not a sequence".into(),
            })
        }
    };
    for (index, item) in items.iter().enumerate() {
        let parsed = parse_object(item).map_err(|reason| ManifestError {
            line: start_line,
            reason: format!("List items[{index}]: {reason}"),
        })?;
        out.extend(parsed);
    }
    Ok(())
}

/// Converts one document to a typed object, or `None` for kinds we skip.
/// The error is a message without a line; `located` adds it.
fn parse_object(value: &Value) -> Result<Option<Object>, TypedError> {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let Some(kind) = kind_of(value) else {
        return Err(TypedError::Message("document has no `kind`".into()));
    };
    let expected = match kind {
        "Ingress" | "IngressClass" => "networking.k8s.io/v1",
        "Service" | "Secret" | "ConfigMap" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "Namespace" => "v1",
        "GatewayClass" | "Gateway" | "HTTPRoute" | "GRPCRoute" => "gateway.networking.k8s.io/v1",
        // Served as both; the fields are the same.
        "ReferenceGrant" if api_version == Some("gateway.networking.k8s.io/v1") => {
            "gateway.networking.k8s.io/v1"
        }
        "ReferenceGrant" => "gateway.networking.k8s.io/v1beta1",
        "AcmeIssuer" => "gatehouse.dev/v1alpha1",
        _ => return Ok(None),
    };
    if api_version != Some(expected) {
        return Err(TypedError::Message(format!(
            "{kind} with apiVersion {} is not supported (expected {expected})",
            api_version.unwrap_or("<none>")
        )));
    }
    let object = match kind {
        "Ingress" => Object::Ingress(Arc::new(typed(value)?)),
        "IngressClass" => Object::IngressClass(Arc::new(typed(value)?)),
        "Service" => Object::Service(Arc::new(typed(value)?)),
        "EndpointSlice" => Object::EndpointSlice(Arc::new(typed(value)?)),
        "ConfigMap" => Object::ConfigMap(Arc::new(typed(value)?)),
        "Namespace" => Object::Namespace(Arc::new(typed(value)?)),
        "GatewayClass" => Object::GatewayClass(Arc::new(typed(value)?)),
        "Gateway" => Object::Gateway(Arc::new(typed(value)?)),
        "HTTPRoute" => Object::HTTPRoute(Arc::new(typed(value)?)),
        "GRPCRoute" => Object::GRPCRoute(Arc::new(typed(value)?)),
        "ReferenceGrant" => Object::ReferenceGrant(Arc::new(typed(value)?)),
        "AcmeIssuer" => Object::AcmeIssuer(Arc::new(typed(value)?)),
        _ => Object::Secret(Arc::new(with_string_data_merged(typed(value)?))),
    };
    if object.key().name.is_empty() {
        return Err(TypedError::Message(format!("{kind} has no metadata.name")));
    }
    Ok(Some(object))
}

enum TypedError {
    Message(String),
    Serde(serde_yaml_ng::Error),
}

impl std::fmt::Display for TypedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypedError::Message(m) => f.write_str(m),
            TypedError::Serde(e) => e.fmt(f),
        }
    }
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, TypedError> {
    serde_yaml_ng::from_value(value.clone()).map_err(TypedError::Serde)
}

/// The API server folds `stringData` into `data` on write; a manifest read
/// from disk gets the same treatment so both spellings work.
fn with_string_data_merged(
    mut secret: k8s_openapi::api::core::v1::Secret,
) -> k8s_openapi::api::core::v1::Secret {
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (key, value) in string_data {
            data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
        }
    }
    secret
}

/// Turns a typed-conversion error into a located one. A conversion from an
/// already-parsed value has lost its position, so the document text is
/// deserialised once more on this (rare) error path to recover the line.
fn located(start_line: usize, doc: &str, error: TypedError) -> ManifestError {
    match error {
        TypedError::Message(reason) => ManifestError {
            line: start_line,
            reason,
        },
        TypedError::Serde(value_error) => {
            let kind = serde_yaml_ng::from_str::<Value>(doc)
                .ok()
                .and_then(|v| kind_of(&v).map(str::to_owned))
                .unwrap_or_default();
            let reparsed = match kind.as_str() {
                "Ingress" => reparse::<k8s_openapi::api::networking::v1::Ingress>(doc),
                "IngressClass" => reparse::<k8s_openapi::api::networking::v1::IngressClass>(doc),
                "Service" => reparse::<k8s_openapi::api::core::v1::Service>(doc),
                "EndpointSlice" => reparse::<k8s_openapi::api::discovery::v1::EndpointSlice>(doc),
                "Namespace" => reparse::<k8s_openapi::api::core::v1::Namespace>(doc),
                "GatewayClass" => reparse::<crate::gateway::GatewayClass>(doc),
                "Gateway" => reparse::<crate::gateway::Gateway>(doc),
                "HTTPRoute" => reparse::<crate::gateway::HTTPRoute>(doc),
                "GRPCRoute" => reparse::<crate::gateway::GRPCRoute>(doc),
                "ReferenceGrant" => reparse::<crate::gateway::ReferenceGrant>(doc),
                "AcmeIssuer" => reparse::<crate::acme::AcmeIssuer>(doc),
                "ConfigMap" => reparse::<k8s_openapi::api::core::v1::ConfigMap>(doc),
                _ => reparse::<k8s_openapi::api::core::v1::Secret>(doc),
            };
            match reparsed {
                Some(e) => at(start_line, &e),
                None => ManifestError {
                    line: start_line,
                    reason: format!("{kind}: {value_error}"),
                },
            }
        }
    }
}

fn reparse<T: DeserializeOwned>(doc: &str) -> Option<serde_yaml_ng::Error> {
    serde_yaml_ng::from_str::<T>(doc).err()
}

fn at(start_line: usize, error: &serde_yaml_ng::Error) -> ManifestError {
    let line = error
        .location()
        .map(|l| start_line + l.line() - 1)
        .unwrap_or(start_line);
    ManifestError {
        line,
        reason: absolute_lines(&error.to_string(), start_line - 1),
    }
}

/// The YAML parser counts lines from the start of the document; the file's
/// reader wants them counted from the start of the file.
fn absolute_lines(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (before, after) = rest.split_at(at + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_text_yields_each_known_object_and_skips_other_kinds() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
# only a comment
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
";
        let objects = parse(text).expect("parses");
        let names: Vec<String> = objects
            .iter()
            .map(|o| format!("{} {}", o.kind(), o.key()))
            .collect();
        assert_eq!(names, ["Service default/web", "Ingress shop/web"]);
    }

    #[test]
    fn list_items_are_unpacked() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
- apiVersion: v1
  kind: Service
  metadata: {name: b}
";
        assert_eq!(parse(text).expect("parses").len(), 2);
    }

    #[test]
    fn syntax_error_names_the_absolute_line() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: a}
---
apiVersion: v1
kind: Service
metadata:
  name: [unclosed
";
        let err = parse(text).expect_err("fails");
        // The parser notices the unclosed sequence at the end of the text
        // and names where it began.
        assert_eq!(err.line, 9, "{err}");
        assert!(err.reason.contains("line 8 column"), "{err}");
    }

    #[test]
    fn type_error_names_the_line_of_the_bad_field() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: a}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  ports:
  - port: eighty
";
        let err = parse(text).expect_err("fails");
        assert_eq!(err.line, 10, "{err}");
        assert!(err.reason.contains("invalid"), "{err}");
    }

    #[test]
    fn known_kind_with_unknown_api_version_is_an_error() {
        let text = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: old}\n";
        let err = parse(text).expect_err("fails");
        assert!(err.reason.contains("extensions/v1beta1"), "{err}");
    }

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let text = "\
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {a: aGVsbG8=}
stringData: {b: world}
";
        let objects = parse(text).expect("parses");
        let Object::Secret(secret) = &objects[0] else {
            panic!("not a secret")
        };
        let data = secret.data.as_ref().expect("data");
        assert_eq!(data["a"].0, b"hello");
        assert_eq!(data["b"].0, b"world");
        assert!(secret.string_data.is_none());
    }
}
