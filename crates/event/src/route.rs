//! Route templating: `/api/users/42` -> `/api/users/{id}`. STUB.

/// Turns concrete paths into route templates: configured templates first, then heuristics.
#[derive(Debug, Clone, Default)]
pub struct RouteTemplater {}

impl RouteTemplater {
    /// Builds a templater from configured templates such as `/api/users/{id}/orders/{order_id}`.
    pub fn new(templates: &[String]) -> Self {
        let _ = templates;
        RouteTemplater {}
    }
    /// The route template of `path` (path only, no query).
    pub fn template(&self, path: &str) -> String {
        path.to_owned()
    }
}
