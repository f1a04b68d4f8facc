//! The header directives of a snippet, compiled, and the phase code that
//! runs them: `more_set_input_headers` / `more_clear_input_headers` on
//! the request as later phases see it, `proxy_set_header` on the request
//! the endpoint gets, `proxy_hide_header` on the endpoint's response,
//! `more_set_headers` / `more_clear_headers` then `add_header` on every
//! response of the route.
//!
//! The order is nginx's, as a real nginx with the headers-more module
//! shows it: the headers-more filter runs before `add_header`'s, so
//! `more_clear_headers` never removes what `add_header` adds; headers-more
//! commands of the server and of the location both run (server first);
//! `add_header` and `proxy_hide_header` of a location replace the
//! server's, nginx's inheritance.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::policy::template::{Facts, Template};

/// A header name, or every name with a prefix (`X-Hidden-*`, which
/// headers-more allows in clearing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    Exact(HeaderName),
    /// Lower case, without the `*`.
    Prefix(String),
}

impl NamePattern {
    fn remove_from(&self, headers: &mut HeaderMap) {
        match self {
            NamePattern::Exact(name) => {
                headers.remove(name);
            }
            NamePattern::Prefix(prefix) => {
                let names: Vec<HeaderName> = headers
                    .keys()
                    .filter(|name| name.as_str().starts_with(prefix.as_str()))
                    .cloned()
                    .collect();
                for name in names {
                    headers.remove(name);
                }
            }
        }
    }
}

/// One header a headers-more command sets (`Some`) or clears (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderChange {
    pub name: NamePattern,
    pub value: Option<Template>,
}

/// A `more_set_headers` or `more_clear_headers` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputEdit {
    /// `-s`: only responses with one of these statuses; empty is any.
    pub statuses: Vec<u16>,
    /// `-t`: only responses of one of these media types; empty is any.
    pub types: Vec<String>,
    pub changes: Vec<HeaderChange>,
}

/// A `more_set_input_headers` or `more_clear_input_headers` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputEdit {
    /// `-r`: set only headers the request already has.
    pub replace_only: bool,
    /// `-t`: only requests of one of these media types; empty is any.
    pub types: Vec<String>,
    pub changes: Vec<HeaderChange>,
}

/// An `add_header`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddHeader {
    pub name: HeaderName,
    pub value: Template,
    /// `always`: whatever the status, not only nginx's success and
    /// redirect statuses.
    pub always: bool,
}

/// A `proxy_set_header`; an empty value sends no such header, as nginx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamHeader {
    pub name: HeaderName,
    pub value: Template,
}

/// Every header directive of a route's snippets, server's and location's
/// merged as nginx merges them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub input: Vec<InputEdit>,
    pub upstream: Vec<UpstreamHeader>,
    pub hide: Vec<HeaderName>,
    pub output: Vec<OutputEdit>,
    pub add: Vec<AddHeader>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self == &HeaderEdits::default()
    }

    /// The server's edits under a location's: headers-more commands of
    /// both, the location's `add_header` and `proxy_hide_header` if it has
    /// any, else the server's. A server's `proxy_set_header` never
    /// reaches an ingress-nginx location, which always sets its own (and
    /// nginx inherits none then): only the location's count.
    pub fn under(server: &HeaderEdits, location: &HeaderEdits) -> HeaderEdits {
        HeaderEdits {
            input: [server.input.as_slice(), &location.input].concat(),
            upstream: location.upstream.clone(),
            hide: either(&location.hide, &server.hide),
            output: [server.output.as_slice(), &location.output].concat(),
            add: either(&location.add, &server.add),
        }
    }

    /// Every value, to fill in the location variables (`$namespace`, …).
    pub fn templates_mut(&mut self) -> impl Iterator<Item = &mut Template> {
        let input = self.input.iter_mut().flat_map(|e| &mut e.changes);
        let output = self.output.iter_mut().flat_map(|e| &mut e.changes);
        let changes = input.chain(output).filter_map(|c| c.value.as_mut());
        let upstream = self.upstream.iter_mut().map(|u| &mut u.value);
        let add = self.add.iter_mut().map(|a| &mut a.value);
        changes.chain(upstream).chain(add)
    }

    /// The request as the later phases and the endpoint see it
    /// (`more_set_input_headers`, `more_clear_input_headers`), values
    /// expanded from the request as it was before.
    pub fn edit_request(&self, facts: &Facts<'_>) -> Option<HeaderMap> {
        if self.input.is_empty() {
            return None;
        }
        let mut headers = facts.headers.clone();
        let media_type = media_type(facts.headers);
        for edit in &self.input {
            if !type_matches(&edit.types, media_type) {
                continue;
            }
            for change in &edit.changes {
                let present = match &change.name {
                    NamePattern::Exact(name) => headers.contains_key(name),
                    NamePattern::Prefix(_) => true,
                };
                if edit.replace_only && !present {
                    continue;
                }
                apply(change, facts, &mut headers);
            }
        }
        Some(headers)
    }

    /// `proxy_set_header`, on the request the endpoint gets, once its own
    /// headers are prepared.
    pub fn upstream_values(&self, facts: &Facts<'_>) -> Vec<(HeaderName, Option<HeaderValue>)> {
        let expand = |set: &UpstreamHeader| {
            let text = set.value.expand(facts);
            let value = (!text.is_empty())
                .then(|| HeaderValue::from_str(&text).ok())
                .flatten();
            (set.name.clone(), value)
        };
        self.upstream.iter().map(expand).collect()
    }

    /// `proxy_hide_header`, on an endpoint's response.
    pub fn hide_from(&self, headers: &mut HeaderMap) {
        for name in &self.hide {
            headers.remove(name);
        }
    }

    /// `more_set_headers`, `more_clear_headers`, then `add_header`, on
    /// any response of the route.
    pub fn edit_response(&self, status: StatusCode, facts: &Facts<'_>, headers: &mut HeaderMap) {
        for edit in &self.output {
            let status_matches =
                edit.statuses.is_empty() || edit.statuses.contains(&status.as_u16());
            if status_matches && type_matches(&edit.types, media_type(headers)) {
                for change in &edit.changes {
                    apply(change, facts, headers);
                }
            }
        }
        for add in self.add.iter().filter(|a| a.always || adds_on(status)) {
            // nginx leaves out a header whose value comes out empty.
            let text = add.value.expand(facts);
            if let Some(value) = (!text.is_empty())
                .then(|| HeaderValue::from_str(&text).ok())
                .flatten()
            {
                headers.append(add.name.clone(), value);
            }
        }
    }
}

/// The location's list when it has one, else the server's.
fn either<T: Clone>(location: &[T], server: &[T]) -> Vec<T> {
    match location.is_empty() {
        true => server.to_vec(),
        false => location.to_vec(),
    }
}

/// Sets (replacing every copy) or clears one header.
fn apply(change: &HeaderChange, facts: &Facts<'_>, headers: &mut HeaderMap) {
    match (&change.name, &change.value) {
        (NamePattern::Exact(name), Some(template)) => {
            match HeaderValue::from_str(&template.expand(facts)) {
                Ok(value) => {
                    headers.insert(name.clone(), value);
                }
                Err(_) => {
                    headers.remove(name);
                }
            }
        }
        (pattern, _) => pattern.remove_from(headers),
    }
}

/// The statuses `add_header` adds on without `always` (nginx's
/// `ngx_http_headers_filter`).
fn adds_on(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// The media type of a message, without its parameters.
fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

fn type_matches(types: &[String], media_type: Option<&str>) -> bool {
    types.is_empty()
        || media_type.is_some_and(|t| types.iter().any(|want| want.eq_ignore_ascii_case(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::template::Vars;

    fn set(name: &str, value: &str) -> HeaderChange {
        HeaderChange {
            name: NamePattern::Exact(HeaderName::from_bytes(name.as_bytes()).unwrap()),
            value: Some(Template::parse(value, Vars::Request).unwrap()),
        }
    }

    #[test]
    fn add_header_adds_on_success_and_redirects_only_unless_always() {
        let template = |v: &str| Template::parse(v, Vars::Request).unwrap();
        let edits = HeaderEdits {
            add: vec![
                AddHeader {
                    name: HeaderName::from_static("x-a"),
                    value: template("a"),
                    always: false,
                },
                AddHeader {
                    name: HeaderName::from_static("x-b"),
                    value: template("b"),
                    always: true,
                },
            ],
            ..HeaderEdits::default()
        };
        let uri = http::Uri::from_static("/");
        let sent = HeaderMap::new();
        for (status, with_a) in [(200, true), (302, true), (404, false), (500, false)] {
            let mut headers = HeaderMap::new();
            let status = StatusCode::from_u16(status).unwrap();
            edits.edit_response(status, &Facts::sample(&uri, &sent), &mut headers);
            assert_eq!(headers.contains_key("x-a"), with_a, "{status}");
            assert_eq!(headers["x-b"], "b");
        }
    }

    #[test]
    fn more_set_headers_replaces_on_the_statuses_and_types_it_names() {
        let edits = HeaderEdits {
            output: vec![OutputEdit {
                statuses: vec![404],
                types: vec!["text/html".into()],
                changes: vec![set("x-page", "missing $host")],
            }],
            ..HeaderEdits::default()
        };
        let uri = http::Uri::from_static("/");
        let sent = HeaderMap::new();
        let mut html = HeaderMap::new();
        html.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        html.append("x-page", HeaderValue::from_static("one"));
        html.append("x-page", HeaderValue::from_static("two"));
        edits.edit_response(
            StatusCode::NOT_FOUND,
            &Facts::sample(&uri, &sent),
            &mut html,
        );
        let values: Vec<_> = html.get_all("x-page").iter().collect();
        assert_eq!(values, ["missing shop.test"]);
        let mut ok = HeaderMap::new();
        edits.edit_response(StatusCode::OK, &Facts::sample(&uri, &sent), &mut ok);
        assert!(ok.is_empty());
    }

    #[test]
    fn input_headers_are_set_cleared_and_replaced_only_when_present() {
        let edits = HeaderEdits {
            input: vec![
                InputEdit {
                    replace_only: true,
                    types: vec![],
                    changes: vec![set("x-only-if-sent", "r"), set("x-sent", "replaced")],
                },
                InputEdit {
                    replace_only: false,
                    types: vec![],
                    changes: vec![
                        set("x-new", "$http_x_sent"),
                        HeaderChange {
                            name: NamePattern::Prefix("x-drop-".into()),
                            value: None,
                        },
                    ],
                },
            ],
            ..HeaderEdits::default()
        };
        let uri = http::Uri::from_static("/");
        let mut sent = HeaderMap::new();
        sent.insert("x-sent", HeaderValue::from_static("original"));
        sent.insert("x-drop-me", HeaderValue::from_static("1"));
        let edited = edits.edit_request(&Facts::sample(&uri, &sent)).unwrap();
        assert_eq!(edited["x-sent"], "replaced");
        assert!(!edited.contains_key("x-only-if-sent"));
        assert_eq!(
            edited["x-new"], "original",
            "expanded from the request as sent"
        );
        assert!(!edited.contains_key("x-drop-me"));
    }

    #[test]
    fn a_location_s_add_header_replaces_the_server_s_and_more_headers_run_both() {
        let template = |v: &str| Template::parse(v, Vars::Request).unwrap();
        let add = |name: &'static str| AddHeader {
            name: HeaderName::from_static(name),
            value: template("1"),
            always: false,
        };
        let output = |name: &str| OutputEdit {
            statuses: vec![],
            types: vec![],
            changes: vec![set(name, "1")],
        };
        let server = HeaderEdits {
            add: vec![add("x-server")],
            output: vec![output("x-server-more")],
            ..HeaderEdits::default()
        };
        let location = HeaderEdits {
            add: vec![add("x-location")],
            output: vec![output("x-location-more")],
            ..HeaderEdits::default()
        };
        let merged = HeaderEdits::under(&server, &location);
        assert_eq!(merged.add, location.add);
        assert_eq!(
            merged.output,
            [server.output[0].clone(), location.output[0].clone()]
        );
        let alone = HeaderEdits::under(&server, &HeaderEdits::default());
        assert_eq!(alone.add, server.add);
    }
}
