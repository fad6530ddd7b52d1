//! What the router reads off a composed supergraph in more than one place.

use apollo_compiler::Schema;

/// One subgraph, as `join__Graph` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// The enum value the join directives use (`POSTS`).
    pub value: String,
    /// The subgraph's name (`posts`), as router YAML and metrics spell it; the enum value
    /// where `@join__graph` gives none.
    pub name: String,
    pub url: String,
}

/// The subgraphs of a supergraph, in their `join__Graph` order.
pub fn graphs(supergraph: &Schema) -> Vec<Graph> {
    let Some(graphs) = supergraph.get_enum("join__Graph") else {
        return Vec::new();
    };
    graphs
        .values
        .iter()
        .filter_map(|(value, def)| {
            let directive = def.directives.get("join__graph")?;
            let string = |name: &str| {
                directive
                    .specified_argument_by_name(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            Some(Graph {
                value: value.to_string(),
                name: string("name").unwrap_or_else(|| value.to_string()),
                url: string("url").unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shipped_supergraphs_subgraphs() {
        let sdl = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/supergraph.graphql"),
        )
        .unwrap();
        let schema = Schema::parse(sdl, "supergraph.graphql").unwrap();
        let names: Vec<String> = graphs(&schema).into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["accounts", "engagement", "notifications", "posts"]);
        assert!(graphs(&schema).iter().all(|g| !g.url.is_empty()));
    }
}
