//! The Gateway API objects as Gatehouse reads them, checked against the
//! CRD schemas.

use super::*;

/// The types Gatehouse reads the Gateway API with are written by hand:
/// every field they read (here, every field of every object of the
/// conformance manifests, read and written back) must be a field of the
/// CRD schema in `deploy/gateway-api/`.
#[test]
fn every_field_read_is_a_field_of_the_crd_schemas() {
    use gatehouse::cluster::Object;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = BASE.to_owned();
    for entry in std::fs::read_dir(dir.join("tests/fixtures/gateway-api")).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        text.push_str("\n---\n");
        text.push_str(&std::fs::read_to_string(path).expect("fixture"));
    }
    let text = text.replace("{GATEWAY_CLASS_NAME}", "gatehouse");
    let schema = |file: &str, version: &str| -> serde_json::Value {
        let crd = std::fs::read_to_string(dir.join("deploy/gateway-api").join(file)).expect("CRD");
        let crd: serde_json::Value = serde_yaml_ng::from_str(&crd).expect("CRD yaml");
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        let found = versions.iter().find(|v| v["name"] == version);
        found.expect("version")["schema"]["openAPIV3Schema"].clone()
    };
    let mut checked = std::collections::BTreeMap::<&str, usize>::new();
    for object in gatehouse::source::manifest::parse(&text).expect("parse") {
        let (kind, value, schema) = match &object {
            Object::GatewayClass(o) => (
                "GatewayClass",
                serde_json::to_value(&**o),
                schema("gatewayclasses.yaml", "v1"),
            ),
            Object::Gateway(o) => (
                "Gateway",
                serde_json::to_value(&**o),
                schema("gateways.yaml", "v1"),
            ),
            Object::HTTPRoute(o) => (
                "HTTPRoute",
                serde_json::to_value(&**o),
                schema("httproutes.yaml", "v1"),
            ),
            Object::ReferenceGrant(o) => (
                "ReferenceGrant",
                serde_json::to_value(&**o),
                schema("referencegrants.yaml", "v1beta1"),
            ),
            _ => continue,
        };
        let value = value.expect("json");
        walk(
            &value["spec"],
            &schema["properties"]["spec"],
            &format!("{kind}.spec"),
        );
        *checked.entry(kind).or_default() += 1;
    }
    assert_eq!(checked.len(), 4, "{checked:?}");
}

fn walk(value: &serde_json::Value, schema: &serde_json::Value, path: &str) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                // A map's keys are free; its values have a schema.
                let sub = match &schema["additionalProperties"] {
                    serde_json::Value::Object(_) => &schema["additionalProperties"],
                    _ => &schema["properties"][name],
                };
                assert!(!sub.is_null(), "{path}.{name} is not in the CRD schema");
                walk(field, sub, &format!("{path}.{name}"));
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                walk(item, &schema["items"], &format!("{path}[]"));
            }
        }
        _ => {}
    }
}
