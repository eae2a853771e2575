//! Admission: the in-tree admission plugins this server runs on creates and main-endpoint
//! updates (never on subresources). Unlike strategies, plugins may read other objects through
//! the store. The generic store calls [`mutate`] after it has prepared an object (defaults,
//! strategy preparation, managedFields) and [`validate`] after the strategy's validation, so
//! what mutating plugins set is validated and is owned by no field manager, as in
//! kube-apiserver.
//!
//! Plugins, in kube-apiserver's order: [`priority`] (pods and PriorityClasses) and
//! [`default_toleration_seconds`] (pods). NamespaceLifecycle's refusal of creates in a
//! terminating namespace stays with the endpoints.

pub mod default_toleration_seconds;
pub mod priority;

use serde_json::Value;

use crate::endpoints::status_error::ApiError;
use crate::registry::generic_store::GenericStore;
use crate::registry::resource_table::ResourceDef;

/// The write being admitted.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    Create,
    /// An update through the main endpoint, with the object as stored before it.
    Update {
        old: &'a Value,
    },
}

/// What plugins know of a write besides the object.
#[derive(Clone, Copy)]
pub struct Attributes<'a> {
    /// The stored resource.
    pub resource: &'static ResourceDef,
    /// The name refusals report: on create the object's name or, as names are generated
    /// after admission, its `generateName`, else `Unknown`.
    pub name: &'a str,
    pub operation: Operation<'a>,
}

impl Attributes<'_> {
    /// The 403 a plugin refuses the write with (`admission.NewForbidden`).
    pub fn forbidden(&self, why: &str) -> ApiError {
        ApiError::forbidden(self.resource.plural, self.resource.group, self.name, why)
    }

    fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group && self.resource.plural == plural
    }
}

/// Runs the mutating plugins, which may change `obj` or refuse the write.
pub async fn mutate(
    store: &GenericStore,
    attrs: &Attributes<'_>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if attrs.is("", "pods") {
        priority::admit_pod(store, attrs, obj).await?;
        default_toleration_seconds::admit_pod(obj);
    }
    Ok(())
}

/// Runs the validating plugins, which may only refuse the write.
pub async fn validate(
    store: &GenericStore,
    attrs: &Attributes<'_>,
    obj: &Value,
) -> Result<(), ApiError> {
    if attrs.is("scheduling.k8s.io", "priorityclasses") {
        priority::validate_priority_class(store, attrs, obj).await?;
    }
    Ok(())
}
