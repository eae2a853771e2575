//! The per-resource hooks of the generic store. Strategies are pure and synchronous: they
//! default, prepare and validate JSON objects; they never touch storage, authz or admission.

use serde_json::Value;

use crate::endpoints::status_error::FieldError;
use crate::registry::validation::NameRule;

/// A graceful deletion: its grace period, and the node that must finish it (a pod bound to
/// a node that does not exist is deleted at once, as the pod garbage collector would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulDelete {
    pub seconds: i64,
    pub node: String,
}

/// Hooks one resource supplies to the generic store.
pub trait Strategy: Send + Sync {
    /// Fills in the real API server's defaults (`SetDefaults_*`).
    fn defaults(&self, _obj: &mut Value) {}

    /// The rule `metadata.name` must follow.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether the object has a status the main endpoint keeps and `/status` writes.
    fn has_status(&self) -> bool {
        false
    }

    /// Whether `metadata.generation` starts at 1 and is bumped on spec changes.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Create-time preparation beyond the generic store's (e.g. initial status).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Kind-specific validation of a whole object.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Kind-specific validation of an update (immutable fields), in addition to `validate`.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// The value of a type-specific field selector field, such as `spec.nodeName`.
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }

    /// Update-time preparation of a main-endpoint write: fields only a subresource may change
    /// are taken from the old object.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Whether finalizers kept outside `metadata.finalizers` (a namespace's
    /// `spec.finalizers`) still hold a deleted object.
    fn pending_finalizers(&self, _obj: &Value) -> bool {
        false
    }

    /// Marks an object whose deletion waits for finalizers (a namespace turns Terminating).
    fn prepare_for_delete(&self, _obj: &mut Value) {}

    /// Whether a delete of `obj` with `options` is graceful (`CheckGracefulDelete`): the
    /// object is only marked, with `deletionTimestamp` the grace period ahead, and whoever
    /// runs it deletes it for good once it has stopped. `None` deletes at once.
    fn graceful_delete(&self, _obj: &Value, _options: &Value) -> Option<GracefulDelete> {
        None
    }

    /// Whether a delete that names no propagation policy orphans the dependents (batch/v1
    /// Jobs keep this older default); otherwise they are collected in the background.
    fn orphans_by_default(&self) -> bool {
        false
    }
}

/// The strategy of resources with no special rules.
pub struct PlainStrategy;

impl Strategy for PlainStrategy {}

/// The strategy of resources with no special rules but a status the main endpoint keeps.
pub struct StatusStrategy;

impl Strategy for StatusStrategy {
    fn has_status(&self) -> bool {
        true
    }
}
