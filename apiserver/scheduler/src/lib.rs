//! The scheduler: queue, filters, scores and binder as an API client. Filled in by the scheduler issue.
