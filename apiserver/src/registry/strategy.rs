//! The per-resource hooks of the generic store. Strategies are pure and synchronous: they
//! default, prepare and validate JSON objects; they never touch storage, authz or admission.

use serde_json::Value;

use crate::endpoints::status_error::FieldError;
use crate::registry::validation::NameRule;

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
