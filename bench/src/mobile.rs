//! The mobile workload: the Android app's persisted operations in the mix a signed-in
//! population sends, through the whole platform as `switchyard dev` runs it (release build,
//! SQLite shards, the 10,000-user / 100,000-post demo data), with the response and entity
//! caches on (router/router.yaml as shipped, rate limits aside) and off, variants alternating.
//!
//! Per request, for simulated user `u` (1,000 users, a quarter of them signed out):
//! - 80% reads: the home feed (`PersonalFeed` signed in, with the viewer's likes and follows,
//!   so PRIVATE; `HomeFeed` signed out), a profile, a post's detail;
//! - 20% writes, signed in: likes, comments, posts, follows.
//!
//! Queries go as persisted GETs (`documentId`), mutations as persisted POSTs, each with the
//! user's own access token. Every answer must be a 200 without `errors`.

use crate::Settings;
use crate::load::Request;
use crate::report::Report;
use crate::signed_in::{self, USERS, Variant, World, android_ops, draw, persisted};

/// A request's kind and its share of the mix, in percent.
const MIX: [(&str, u64); 7] = [
    ("feed", 35),
    ("profile", 25),
    ("post", 20),
    ("like", 8),
    ("comment", 5),
    ("create", 4),
    ("follow", 3),
];

const VARIANTS: [Variant; 2] = [
    Variant {
        name: "response cache off",
        short: "cache off",
        remove: &["rate_limit", "response_cache"],
    },
    Variant {
        name: "response + entity cache (router.yaml)",
        short: "cache on",
        remove: &["rate_limit"],
    },
];

pub async fn mobile(settings: &Settings) -> anyhow::Result<()> {
    let ops = android_ops(
        &settings.repo,
        &[
            "PersonalFeed",
            "HomeFeed",
            "Profile",
            "PostDetail",
            "LikePost",
            "AddComment",
            "CreatePost",
            "FollowUser",
        ],
    )?;
    let (measured, mix_seen) = signed_in::measure(settings, &VARIANTS, ops, pick).await?;
    let mut report = Report::new(
        "mobile",
        "Mobile workload: the Android app's persisted mix, signed-in users, response cache off and on",
    );
    report.note(&format!(
        "`switchyard dev` (release) on the demo data, {} rounds of {} s per variant, alternating, {} closed-loop workers; {USERS} simulated users (a quarter signed out), each with their own token. Answers by kind: {}. CPU is the whole platform's (router and subgraphs) per 1,000 answers; RSS is the platform's at the end of each round (median). Ratio against the cache off.",
        settings.rounds,
        settings.duration.as_secs(),
        settings.workers,
        signed_in::mix_line(&mix_seen),
    ));
    report.table("closed loop, gzip", signed_in::rows(&VARIANTS, &measured));
    report.publish(&settings.repo)?;
    Ok(())
}

fn pick(w: &World, worker: usize, i: u64) -> (&'static str, Request) {
    let user = (draw(worker, i, 1) % USERS as u64) as usize;
    // A quarter of the users are signed out; they only read.
    let signed_in = !user.is_multiple_of(4);
    let token = signed_in.then(|| w.tokens[user].as_str());
    let post = &w.posts[(draw(worker, i, 2) % w.posts.len() as u64) as usize];
    let (other_id, other_handle) = &w.users[(draw(worker, i, 3) % w.users.len() as u64) as usize];
    let mut roll = draw(worker, i, 4) % 100;
    let mut kind = MIX[0].0;
    for (k, share) in MIX {
        if roll < share {
            kind = k;
            break;
        }
        roll -= share;
    }
    if !signed_in && !matches!(kind, "feed" | "profile" | "post") {
        kind = "feed";
    }
    if kind == "follow" && *other_id == w.ids[user] {
        kind = "like"; // nobody follows themselves
    }
    let (op, variables) = match kind {
        "feed" if signed_in => ("PersonalFeed", serde_json::json!({ "first": 20 })),
        "feed" => ("HomeFeed", serde_json::json!({ "first": 25 })),
        "profile" => ("Profile", serde_json::json!({ "handle": other_handle })),
        "post" => ("PostDetail", serde_json::json!({ "id": post })),
        "like" => ("LikePost", serde_json::json!({ "postId": post })),
        "comment" => (
            "AddComment",
            serde_json::json!({ "postId": post, "body": format!("bench comment {worker}-{i}") }),
        ),
        "create" => (
            "CreatePost",
            serde_json::json!({ "input": { "body": format!("bench post {worker}-{i}") } }),
        ),
        _ => (
            "FollowUser",
            serde_json::json!({ "userId": other_id.to_string() }),
        ),
    };
    (kind, persisted(&w.ops, op, &variables, token))
}
