//! The four subgraphs of the public gateway benchmark (graphql-hive/graphql-gateways-benchmark),
//! written here with async-graphql: accounts, products, inventory (`shippingEstimate`
//! `@requires` price and weight) and reviews (`author` `@provides` username), static data, one
//! axum server with a route per subgraph. The data and shapes are the benchmark's, so the
//! nested query answers the same 87,327 bytes every gateway in that benchmark answers.
//!
//! Written for Federation 2 (key fields are not `@external`, `User.username` is shareable);
//! the benchmark's own schemas are Federation 1, which composes to the same supergraph.
//!
//! Every answer carries `Cache-Control: public, max-age=60` (the data never changes), so the
//! response cache variant can store it; gateways without a response cache ignore the header.

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject,
};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::http::HeaderValue;
use axum::routing::post_service;

const LOREM_445: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.";
const LOREM_289: &str = "Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugi";
const LOREM_275: &str = "sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat voluptatem.";
const LOREM_143: &str = "Ut enim ad minima veniam, quis nostrum exercitationem ullam corporis suscipit laboriosam, nisi ut aliquid ex ea commodi consequatur? Quis autem";
const LOREM_844: &str = "At vero eos et accusamus et iusto odio dignissimos ducimus qui blanditiis praesentium voluptatum deleniti atque corrupti quos dolores et quas molestias excepturi sint occaecati cupiditate non provident, similique sunt in culpa qui officia deserunt mollitia animi, id est laborum et dolorum fuga. Et harum quidem rerum facilis est et expedita distinctio. Nam libero tempore, cum soluta nobis est eligendi optio cumque nihil impedit quo minus id quod maxime placeat facere possimus, omnis voluptas assumenda est, omnis dolor repellendus. Temporibus autem quibusdam et aut officiis debitis aut rerum necessitatibus saepe eveniet ut et voluptates repudiandae sint et molestiae non recusandae. Itaque earum rerum hic tenetur a sapiente delectus, ut aut reiciendis voluptatibus maiores alias consequatur aut perferendis doloribus asperiores repellat.";

/// (id, name, username)
const USERS: [(&str, &str, &str); 6] = [
    ("1", "Uri Goldshtein", "urigo"),
    ("2", "Dotan Simha", "dotansimha"),
    ("3", "Kamil Kisiela", "kamilkisiela"),
    ("4", "Arda Tanrikulu", "ardatan"),
    ("5", "Gil Gardosh", "gilgardosh"),
    ("6", "Laurin Quast", "laurin"),
];
const BIRTHDAY: i32 = 1_234_567_890;

/// (upc, name, price, weight, in stock)
const PRODUCTS: [(&str, &str, i32, i32, bool); 9] = [
    ("1", "Table", 899, 100, true),
    ("2", "Couch", 1299, 1000, false),
    ("3", "Glass", 15, 20, false),
    ("4", "Chair", 499, 100, false),
    ("5", "TV", 1299, 1000, true),
    ("6", "Lamp", 6999, 300, true),
    ("7", "Grill", 3999, 2000, true),
    ("8", "Fridge", 100_000, 6000, false),
    ("9", "Sofa", 9999, 800, true),
];

/// (id, body, product upc)
const REVIEWS: [(&str, &str, &str); 11] = [
    ("1", LOREM_445, "1"),
    ("2", LOREM_289, "1"),
    ("3", LOREM_275, "1"),
    ("4", LOREM_143, "1"),
    ("5", LOREM_445, "2"),
    ("6", LOREM_289, "2"),
    ("7", LOREM_275, "2"),
    ("8", LOREM_143, "2"),
    ("9", LOREM_143, "3"),
    ("10", LOREM_143, "4"),
    ("11", LOREM_844, "4"),
];

mod accounts {
    use super::*;

    #[derive(SimpleObject)]
    pub struct User {
        id: ID,
        name: Option<String>,
        /// Shareable: reviews provides it on `Review.author` (Federation 2 wants the owner
        /// to say so; the benchmark's Federation 1 schemas implied it).
        #[graphql(shareable)]
        username: Option<String>,
        birthday: Option<i32>,
    }

    fn user(index: usize) -> User {
        let (id, name, username) = USERS[index];
        User {
            id: ID(id.into()),
            name: Some(name.into()),
            username: Some(username.into()),
            birthday: Some(BIRTHDAY),
        }
    }

    fn find(id: &str) -> Option<User> {
        USERS.iter().position(|u| u.0 == id).map(user)
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn me(&self) -> Option<User> {
            Some(user(0))
        }
        async fn user(&self, id: ID) -> Option<User> {
            find(&id)
        }
        async fn users(&self) -> Option<Vec<Option<User>>> {
            Some((0..USERS.len()).map(|i| Some(user(i))).collect())
        }
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> Option<User> {
            find(&id)
        }
    }
}

mod products {
    use super::*;

    #[derive(SimpleObject)]
    pub struct Product {
        upc: String,
        name: Option<String>,
        price: Option<i32>,
        weight: Option<i32>,
    }

    fn product(index: usize) -> Product {
        let (upc, name, price, weight, _) = PRODUCTS[index];
        Product {
            upc: upc.into(),
            name: Some(name.into()),
            price: Some(price),
            weight: Some(weight),
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn top_products(
            &self,
            #[graphql(default = 5)] first: i32,
        ) -> Option<Vec<Option<Product>>> {
            let n = usize::try_from(first).unwrap_or(0).min(PRODUCTS.len());
            Some((0..n).map(|i| Some(product(i))).collect())
        }
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
            PRODUCTS.iter().position(|p| p.0 == upc).map(product)
        }
    }
}

mod inventory {
    use super::*;

    #[derive(SimpleObject)]
    #[graphql(complex)]
    pub struct Product {
        upc: String,
        #[graphql(external)]
        weight: Option<i32>,
        #[graphql(external)]
        price: Option<i32>,
        in_stock: Option<bool>,
    }

    #[ComplexObject]
    impl Product {
        #[graphql(requires = "price weight")]
        async fn shipping_estimate(&self) -> Option<i32> {
            let (price, weight) = (self.price?, self.weight?);
            Some(if price > 1000 { 0 } else { weight / 2 })
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_upc(
            &self,
            #[graphql(key)] upc: String,
            price: Option<i32>,
            weight: Option<i32>,
        ) -> Product {
            let in_stock = PRODUCTS.iter().find(|p| p.0 == upc).map(|p| p.4);
            Product {
                upc,
                weight,
                price,
                in_stock,
            }
        }
    }
}

mod reviews {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    pub struct Review {
        id: ID,
        body: Option<String>,
        product: Option<Product>,
    }

    #[ComplexObject]
    impl Review {
        #[graphql(provides = "username")]
        async fn author(&self) -> Option<User> {
            Some(User::new("1", "urigo"))
        }
    }

    #[derive(SimpleObject)]
    pub struct User {
        id: ID,
        #[graphql(external)]
        username: Option<String>,
        reviews: Option<Vec<Option<Review>>>,
    }

    impl User {
        fn new(id: &str, username: &str) -> Self {
            Self {
                id: ID(id.into()),
                username: Some(username.into()),
                // As in the benchmark: every user's reviews are the first two.
                reviews: Some((0..2).map(|i| Some(review(i))).collect()),
            }
        }
    }

    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    pub struct Product {
        upc: String,
    }

    #[ComplexObject]
    impl Product {
        async fn reviews(&self) -> Option<Vec<Option<Review>>> {
            Some(
                (0..REVIEWS.len())
                    .filter(|i| REVIEWS[*i].2 == self.upc)
                    .map(|i| Some(review(i)))
                    .collect(),
            )
        }
    }

    fn review(index: usize) -> Review {
        let (id, body, upc) = REVIEWS[index];
        Review {
            id: ID(id.into()),
            body: Some(body.into()),
            product: Some(Product { upc: upc.into() }),
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_review_by_id(&self, id: ID) -> Option<Review> {
            REVIEWS.iter().position(|r| r.0 == id.as_str()).map(review)
        }
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> User {
            User::new(&id, "user")
        }
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Product {
            Product { upc }
        }
    }
}

/// The four subgraphs as composition takes them, routed to `base` (`http://host:port`).
pub fn sources(base: &str) -> Vec<switchyard_router::composition::SubgraphSource> {
    [
        ("accounts", sdl(&schema(accounts::Query))),
        ("inventory", sdl(&schema(inventory::Query))),
        ("products", sdl(&schema(products::Query))),
        ("reviews", sdl(&schema(reviews::Query))),
    ]
    .into_iter()
    .map(
        |(name, sdl)| switchyard_router::composition::SubgraphSource {
            name: name.to_owned(),
            routing_url: format!("{base}/{name}"),
            sdl,
        },
    )
    .collect()
}

fn schema<Q: async_graphql::ObjectType + 'static>(
    query: Q,
) -> Schema<Q, EmptyMutation, EmptySubscription> {
    Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

fn sdl<Q: async_graphql::ObjectType + 'static>(
    schema: &Schema<Q, EmptyMutation, EmptySubscription>,
) -> String {
    schema.sdl_with_options(
        async_graphql::SDLExportOptions::new()
            .federation()
            .compose_directive(),
    )
}

/// One server, a route per subgraph (`/accounts`, ...).
pub fn router() -> Router {
    Router::new()
        .route(
            "/accounts",
            post_service(GraphQL::new(schema(accounts::Query))),
        )
        .route(
            "/inventory",
            post_service(GraphQL::new(schema(inventory::Query))),
        )
        .route(
            "/products",
            post_service(GraphQL::new(schema(products::Query))),
        )
        .route(
            "/reviews",
            post_service(GraphQL::new(schema(reviews::Query))),
        )
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                response.headers_mut().insert(
                    axum::http::header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=60"),
                );
                response
            },
        ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_four_subgraphs_compose() {
        let sources = super::sources("http://127.0.0.1:1");
        if let Err(issues) = switchyard_router::composition::compose(&sources) {
            for source in &sources {
                eprintln!("# {}\n{}", source.name, source.sdl);
            }
            panic!("{issues:?}");
        }
    }
}
