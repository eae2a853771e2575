//! The registry: the resource table, the generic store every resource goes through, and the
//! per-resource strategies, printers, selectors and validation it consults, and the watch cache
//! that serves its lists and watches.

pub mod conversion;
pub mod generic_store;
pub mod managed_fields;
pub mod printers;
pub mod resource_table;
pub mod resources;
pub mod reviews;
pub mod selectors;
pub mod service_ips;
pub mod strategy;
pub mod validation;
pub mod watch_cache;
