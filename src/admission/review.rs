//! One AdmissionReview: bytes in, the verdict's bytes out.
//!
//! The body is parsed twice with serde into typed structs, never into a
//! template, a file or a command: first a small view that says which kind
//! it carries (everything else skipped unread), then `admission.k8s.io/v1`
//! `AdmissionReview<Ingress>` (or `HTTPRoute`, `Gateway`) with the same
//! k8s-openapi types the watch reads. serde_json refuses nesting deeper
//! than 128 levels, so a hostile body costs at most its size. The object
//! is put into a copy of the served state and translate judges it.

use std::sync::{Arc, Mutex, PoisonError};

use foldhash::HashSet;
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::cluster::{ClusterState, Object, ObjectKey};
use crate::gateway::{Gateway, HTTPRoute};
use crate::metrics::{AdmissionLabels, Metrics};
use crate::source::StateReceiver;
use crate::translate::admission::judge;
use crate::translate::{AdmissionOptions, HostIndex, HostOwnership, TranslateOptions, Verdict};

/// Why a body is not a review; answered with 400, never with a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the AdmissionReview carries no request")]
    NoRequest,
}

/// The kind a review is about, read before the object itself.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion")]
    api_version: String,
    request: Option<Head>,
}

#[derive(serde::Deserialize)]
struct Head {
    kind: Kind,
}

#[derive(serde::Deserialize)]
struct Kind {
    #[serde(default)]
    group: String,
    kind: String,
}

/// The kinds translate judges, by group and kind.
enum Judged {
    Ingress,
    HttpRoute,
    Gateway,
}

impl Judged {
    fn of(kind: &Kind) -> Option<Self> {
        match (kind.group.as_str(), kind.kind.as_str()) {
            ("networking.k8s.io", "Ingress") => Some(Judged::Ingress),
            ("gateway.networking.k8s.io", "HTTPRoute") => Some(Judged::HttpRoute),
            ("gateway.networking.k8s.io", "Gateway") => Some(Judged::Gateway),
            _ => None,
        }
    }
}

/// Judges reviews against the newest served state.
pub struct Reviewer {
    states: StateReceiver,
    options: Arc<TranslateOptions>,
    admission: AdmissionOptions,
    /// The Ingresses of each host, brought up to the served state by each
    /// review (briefly locked: the journal holds the changes since).
    index: Mutex<HostIndex>,
    metrics: Arc<Metrics>,
    /// `--watch-namespace`: the namespaces served; empty, all of them.
    namespaces: Vec<String>,
}

impl Reviewer {
    pub fn new(
        states: StateReceiver,
        options: Arc<TranslateOptions>,
        admission: AdmissionOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reviewer {
            states,
            options,
            admission,
            index: Mutex::new(HostIndex::default()),
            metrics,
            namespaces: Vec::new(),
        }
    }

    /// Judges only objects of these namespaces (`--watch-namespace`; empty:
    /// all): one elsewhere is never served, so it is not ours to refuse.
    pub fn serving_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.namespaces = namespaces;
        self
    }

    /// Whether objects of `namespace` are served: listed by
    /// `--watch-namespace` (when given), and selected by
    /// `--watch-namespace-selector` as the served state last saw the
    /// namespaces' labels (when given).
    fn serves(&self, namespace: Option<&str>) -> bool {
        let listed = self.namespaces.is_empty()
            || namespace.is_some_and(|ns| self.namespaces.iter().any(|served| served == ns));
        listed
            && match &self.states.borrow().selected_namespaces {
                None => true,
                Some(selected) => namespace.is_some_and(|ns| selected.contains(ns)),
            }
    }

    /// The AdmissionReview answering `body`, as JSON; counted and timed.
    pub fn answer(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = std::time::Instant::now();
        let answered = self.respond_to(body);
        let (kind, verdict) = match &answered {
            Ok((_, kind, verdict)) => (*kind, *verdict),
            Err(_) => ("", "invalid"),
        };
        let labels = AdmissionLabels { kind, verdict };
        self.metrics.admission_reviews.get_or_create(&labels).inc();
        let took = started.elapsed().as_secs_f64();
        self.metrics.admission_review_duration.observe(took);
        answered.map(|(json, _, _)| json)
    }

    /// The answer, the kind judged and the verdict's label.
    fn respond_to(
        &self,
        body: &[u8],
    ) -> Result<(Vec<u8>, &'static str, &'static str), ReviewError> {
        let envelope: Envelope = serde_json::from_slice(body)?;
        let head = envelope.request.ok_or(ReviewError::NoRequest)?;
        if envelope.api_version != "admission.k8s.io/v1" {
            let unknown = serde::de::Error::custom(format!("apiVersion {}", envelope.api_version));
            return Err(ReviewError::Malformed(unknown));
        }
        let (response, kind) = match Judged::of(&head.kind) {
            Some(Judged::Ingress) => (self.typed::<Ingress>(body, Object::Ingress)?, "Ingress"),
            Some(Judged::HttpRoute) => (
                self.typed::<HTTPRoute>(body, Object::HTTPRoute)?,
                "HTTPRoute",
            ),
            Some(Judged::Gateway) => (self.typed::<Gateway>(body, Object::Gateway)?, "Gateway"),
            // Not registered for: allowed, whatever it holds.
            None => (
                AdmissionResponse::from(&request::<DynamicObject>(body)?),
                "other",
            ),
        };
        let verdict = match (&response.allowed, &response.warnings) {
            (false, _) => "refused",
            (true, Some(_)) => "warned",
            (true, None) => "allowed",
        };
        Ok((serde_json::to_vec(&response.into_review())?, kind, verdict))
    }

    fn typed<T>(
        &self,
        body: &[u8],
        wrap: impl FnOnce(Arc<T>) -> Object,
    ) -> Result<AdmissionResponse, ReviewError>
    where
        T: Resource + DeserializeOwned,
    {
        let mut request = request::<T>(body)?;
        let response = AdmissionResponse::from(&request);
        let judged = matches!(request.operation, Operation::Create | Operation::Update);
        let Some(mut object) = request.object.take().filter(|_| judged) else {
            return Ok(response);
        };
        // The API server sets the namespace before admission; a hand-made
        // review may leave it to the request.
        let meta = object.meta_mut();
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = request.namespace.clone();
        }
        if !self.serves(meta.namespace.as_deref()) {
            return Ok(response);
        }
        let candidate = wrap(Arc::new(object));
        let verdict = self.judge(&candidate);
        Ok(respond(response, &verdict, &candidate))
    }

    /// Translate's verdict on `candidate` joining the served state.
    fn judge(&self, candidate: &Object) -> Verdict {
        let (state, scope) = self.place(candidate);
        judge(
            &state,
            &self.options,
            self.admission,
            candidate,
            scope.as_ref(),
        )
    }

    /// The newest served state with `candidate` in it, and the Ingresses
    /// to translate with it: those of its hosts for an Ingress; for a
    /// Gateway API object, none (they are translated whole anyway),
    /// unless host ownership needs every Ingress's hosts.
    fn place(&self, candidate: &Object) -> (ClusterState, Option<HashSet<ObjectKey>>) {
        let with_candidate = |served: &ClusterState| {
            let mut state = served.clone();
            state.insert(candidate.clone());
            state
        };
        let Object::Ingress(ingress) = candidate else {
            let state = with_candidate(&self.states.borrow());
            return match self.options.host_ownership {
                HostOwnership::Shared => (state, Some(HashSet::default())),
                HostOwnership::Namespace => (state, None),
            };
        };
        let prefix = &self.options.annotations_prefix;
        // The state is taken under the lock: the index only ever follows
        // newer states, by their journal, never back to an older one.
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let served = self.states.borrow().clone();
        index.follow(&served, prefix);
        let state = with_candidate(&served);
        let scope = index.scope(&state, &candidate.key(), ingress, prefix);
        (state, scope)
    }

    /// Brings the host index up to the served state ahead of the first
    /// review, which would otherwise build it whole.
    pub fn follow_served(&self) {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let served = self.states.borrow().clone();
        index.follow(&served, &self.options.annotations_prefix);
    }
}

fn request<T: Resource + DeserializeOwned>(
    body: &[u8],
) -> Result<AdmissionRequest<T>, ReviewError> {
    let review: AdmissionReview<T> = serde_json::from_slice(body)?;
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

/// The longest warning sent: the API server truncates longer ones.
const WARNING_BYTES: usize = 256;

/// The verdict in the response: a refusal (403, its reasons in the
/// message kubectl prints), or an allowance with translate's warnings.
fn respond(
    response: AdmissionResponse,
    verdict: &Verdict,
    candidate: &Object,
) -> AdmissionResponse {
    let (kind, key) = (candidate.kind(), candidate.key());
    if !verdict.allowed() {
        let message = verdict.message(kind, &key);
        tracing::info!(target: "gatehouse::admission", object = %key, kind, "refused: {message}");
        let mut refused = response.deny(message);
        refused.result.code = 403;
        refused.result.reason = "Forbidden".into();
        return refused;
    }
    let mut allowed = response;
    if !verdict.warnings.is_empty() {
        let warnings = verdict.warnings.iter().map(|w| shorten(w, WARNING_BYTES));
        allowed.warnings = Some(warnings.collect());
    }
    allowed
}

/// `text` cut to at most `bytes` bytes, on a character boundary, with an
/// ellipsis when cut.
fn shorten(text: &str, bytes: usize) -> String {
    if text.len() <= bytes {
        return text.to_owned();
    }
    let mut end = bytes - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewer() -> Reviewer {
        let (_, states) = tokio::sync::watch::channel(Arc::new(ClusterState::default()));
        Reviewer::new(
            states,
            Arc::new(TranslateOptions::default()),
            AdmissionOptions::default(),
            Arc::new(Metrics::new()),
        )
    }

    fn answer(reviewer: &Reviewer, request: serde_json::Value) -> serde_json::Value {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request
        });
        let body = reviewer
            .answer(&serde_json::to_vec(&review).unwrap())
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn request(
        kind: serde_json::Value,
        operation: &str,
        object: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "uid": "u-1", "kind": kind,
            "resource": {"group": "", "version": "v1", "resource": "things"},
            "operation": operation, "userInfo": {}, "object": object
        })
    }

    #[test]
    fn a_kind_not_registered_for_is_allowed_whatever_it_holds() {
        let kind = serde_json::json!({"group": "", "version": "v1", "kind": "Pod"});
        let object =
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"anything": [1, {"x": null}]}});
        let answer = answer(&reviewer(), request(kind, "CREATE", object));
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["uid"], "u-1");
    }

    #[test]
    fn a_delete_is_allowed_unjudged() {
        let kind =
            serde_json::json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"});
        let snippet = serde_json::json!({"nginx.ingress.kubernetes.io/configuration-snippet": "load_module x;"});
        let object = serde_json::json!({
            "metadata": {"name": "i", "namespace": "n", "annotations": snippet},
            "spec": {"ingressClassName": "gatehouse"}
        });
        let reviewer = reviewer();
        let deleted = answer(&reviewer, request(kind.clone(), "DELETE", object.clone()));
        assert_eq!(deleted["response"]["allowed"], true);
        let created = answer(&reviewer, request(kind, "CREATE", object));
        assert_eq!(created["response"]["allowed"], false);
        assert_eq!(created["response"]["status"]["code"], 403);
    }

    #[test]
    fn an_object_of_a_namespace_not_served_is_allowed_unjudged() {
        let kind =
            serde_json::json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"});
        let snippet = serde_json::json!({"nginx.ingress.kubernetes.io/configuration-snippet": "load_module x;"});
        let object = |namespace: Option<&str>| {
            serde_json::json!({
                "metadata": {"name": "i", "namespace": namespace, "annotations": snippet},
                "spec": {"ingressClassName": "gatehouse"}
            })
        };
        let reviewer = reviewer().serving_namespaces(vec!["shop".into()]);
        let other = answer(
            &reviewer,
            request(kind.clone(), "CREATE", object(Some("blog"))),
        );
        assert_eq!(other["response"]["allowed"], true);
        assert_eq!(other["response"].get("warnings"), None);
        let ours = answer(
            &reviewer,
            request(kind.clone(), "CREATE", object(Some("shop"))),
        );
        assert_eq!(ours["response"]["allowed"], false);
        // The namespace from the request when the object leaves it out.
        let mut from_request = request(kind, "CREATE", object(None));
        from_request["namespace"] = "shop".into();
        assert_eq!(
            answer(&reviewer, from_request)["response"]["allowed"],
            false
        );
    }

    #[test]
    fn an_object_of_a_namespace_the_selector_does_not_pick_is_allowed_unjudged() {
        let kind =
            serde_json::json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"});
        let snippet = serde_json::json!({"nginx.ingress.kubernetes.io/configuration-snippet": "load_module x;"});
        let object = |namespace: &str| {
            serde_json::json!({
                "metadata": {"name": "i", "namespace": namespace, "annotations": snippet},
                "spec": {"ingressClassName": "gatehouse"}
            })
        };
        let selecting = |names: &[&str]| {
            let mut state = ClusterState::default();
            let names = names.iter().map(|n| n.to_string()).collect();
            state.selected_namespaces = Some(Arc::new(names));
            Arc::new(state)
        };
        let (publish, states) = tokio::sync::watch::channel(selecting(&["shop"]));
        let reviewer = Reviewer::new(
            states,
            Arc::new(TranslateOptions::default()),
            AdmissionOptions::default(),
            Arc::new(Metrics::new()),
        );
        let other = answer(&reviewer, request(kind.clone(), "CREATE", object("blog")));
        assert_eq!(other["response"]["allowed"], true);
        let ours = answer(&reviewer, request(kind.clone(), "CREATE", object("shop")));
        assert_eq!(ours["response"]["allowed"], false);
        // Labelled into the selection later: judged from then on.
        publish.send(selecting(&["shop", "blog"])).unwrap();
        let now = answer(&reviewer, request(kind, "CREATE", object("blog")));
        assert_eq!(now["response"]["allowed"], false);
    }

    #[test]
    fn a_long_warning_is_cut_on_a_character_boundary() {
        let text = "é".repeat(200);
        let cut = shorten(&text, WARNING_BYTES);
        assert!(
            cut.len() <= WARNING_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert_eq!(shorten("short", WARNING_BYTES), "short");
    }
}
