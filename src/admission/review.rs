//! The review as it comes in: parsed with kube's types, checked, and reduced to its head
//! (who, what, which operation) and the whole object.

use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::{DynamicObject, ObjectMeta, TypeMeta};
use serde_json::{Map, Value};

use super::response::Reply;
use crate::object::Kind;

/// The only AdmissionReview version promfed speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// Largest request body accepted; larger ones are answered with HTTP 413.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Each chunk (HTTP/1) or DATA frame (HTTP/2) of a body counts this many bytes against the
/// body limit besides its data, and a body may spend [`FRAMING_ALLOWANCE_BYTES`] on them: a
/// 3 MiB body arrives in up to 768 pieces, a body sent a byte per chunk is refused early.
/// (Every piece costs a wake-up and a copy: a body of one-byte chunks cost 3 million.)
pub const FRAME_COST_BYTES: usize = 64;
pub const FRAMING_ALLOWANCE_BYTES: usize = MAX_BODY_BYTES / FRAME_COST_BYTES;

/// What a log line may say about a review: identity, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewInfo {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
}

impl ReviewInfo {
    /// `namespace/name` (or `name` for an empty namespace).
    pub fn target(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// A parsed review's request, as much as promfed reads of it.
pub(super) struct Request {
    pub info: ReviewInfo,
    /// The kind of object promfed rewrites that this request writes (CREATE or UPDATE of the
    /// object itself, not a subresource); None for every other request.
    pub rewritable: Option<Kind>,
    /// The object, when there is one.
    pub object: Option<Object>,
}

/// A review's object: metadata still typed, the other fields as JSON. The whole object is put
/// together as JSON only for the engine (a cached answer does not need it).
pub(super) struct Object {
    types: Option<TypeMeta>,
    pub metadata: ObjectMeta,
    /// Everything but `apiVersion`, `kind` and `metadata`, moved out of the review, not
    /// copied: a review may carry megabytes of data.
    pub fields: Map<String, Value>,
}

impl Object {
    /// The whole object as the API server sent it (less what was taken from `fields`).
    pub fn into_whole(self) -> Map<String, Value> {
        let mut whole = Map::new();
        if let Some(types) = self.types {
            whole.insert("apiVersion".into(), types.api_version.into());
            whole.insert("kind".into(), types.kind.into());
        }
        let metadata = serde_json::to_value(&self.metadata).unwrap_or(Value::Null);
        whole.insert("metadata".into(), metadata);
        whole.extend(self.fields);
        whole
    }
}

/// Parse a request body; a body that is no usable AdmissionReview gets its 400 reply (boxed:
/// the reply is large, a parsed request the common case).
pub(super) fn parse(body: &[u8]) -> Result<Request, Box<Reply>> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| Reply::invalid_quoting(format!("malformed AdmissionReview: {e}")))
        .map_err(Box::new)?;
    if review.types.api_version != API_VERSION || review.types.kind != "AdmissionReview" {
        return Err(Box::new(Reply::invalid_quoting(format!(
            "unsupported review {:?}/{:?}: promfed answers kind AdmissionReview, apiVersion {API_VERSION} \
             (set admissionReviewVersions: [v1] in the webhook configuration)",
            review.types.api_version, review.types.kind
        ))));
    }
    let Some(request) = review.request else {
        return Err(Box::new(Reply::invalid("AdmissionReview has no request")));
    };
    if request.uid.is_empty() {
        return Err(Box::new(Reply::invalid(
            "AdmissionReview request has no uid",
        )));
    }
    Ok(Request::new(request))
}

impl Request {
    fn new(request: AdmissionRequest<DynamicObject>) -> Request {
        let meta = request.object.as_ref().map(|o| &o.metadata);
        let name = meta
            .and_then(|m| m.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| request.name.clone());
        let namespace = meta
            .and_then(|m| m.namespace.clone())
            .or_else(|| request.namespace.clone())
            .unwrap_or_default();
        let info = ReviewInfo {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace,
            name,
            operation: operation_name(&request.operation),
            dry_run: request.dry_run,
        };
        let writes = matches!(request.operation, Operation::Create | Operation::Update);
        let itself = request.sub_resource.as_deref().unwrap_or("").is_empty();
        let rewritable =
            Kind::of_review(&request.kind.group, &request.kind.kind).filter(|_| writes && itself);
        Request {
            info,
            rewritable,
            object: request.object.map(object),
        }
    }
}

fn object(object: DynamicObject) -> Object {
    Object {
        types: object.types,
        metadata: object.metadata,
        fields: match object.data {
            Value::Object(fields) => fields,
            _ => Map::new(),
        },
    }
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}
