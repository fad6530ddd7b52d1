//! The personalised-feed workload: signed-in users reading their home feed
//! (`PersonalFeed`: posts, counts, authors, and the viewer's likes and follows, so every
//! whole response is PRIVATE) while some of them like and unlike posts of the first page,
//! through `switchyard dev` (release, demo data) with the whole-response cache on in both
//! variants and the entity cache off, then on (router/router.yaml as shipped, rate limits
//! aside), alternating.
//!
//! Per request, for a simulated user drawn from 1,000 (each with their own token): 95% the
//! first page of their feed, 5% a like or an unlike of one of its 20 posts. A like drops
//! every cached whole feed that shows the post (each user's), and, with the entity cache,
//! only that post's counts and the liker's own `viewerHasLiked`.

use serde_json::json;

use crate::Settings;
use crate::load::Request;
use crate::report::Report;
use crate::signed_in::{self, USERS, Variant, World, android_ops, draw, persisted};

/// Likes and unlikes, in percent of the requests.
const WRITES: u64 = 5;

const VARIANTS: [Variant; 2] = [
    Variant {
        name: "entity cache off (response cache on)",
        short: "entities off",
        remove: &["rate_limit", "response_cache.entities"],
    },
    Variant {
        name: "entity cache on (router.yaml)",
        short: "entities on",
        remove: &["rate_limit"],
    },
];

pub async fn personalised(settings: &Settings) -> anyhow::Result<()> {
    let ops = android_ops(
        &settings.repo,
        &["PersonalFeed", "HomeFeed", "LikePost", "UnlikePost"],
    )?;
    let (measured, mix_seen) = signed_in::measure(settings, &VARIANTS, ops, pick).await?;
    let rows = signed_in::rows(&VARIANTS, &measured);
    let calls = signed_in::subgraph_calls(&measured);
    let (throughput, p99) = (rows[1].ratio, rows[1].p99_ms / rows[0].p99_ms);
    let mut report = Report::new(
        "personalised",
        "Personalised feed: signed-in home feeds and likes, entity cache off and on",
    );
    report.note(&format!(
        "`switchyard dev` (release) on the demo data, {} rounds of {} s per variant, alternating, {} closed-loop workers; {USERS} signed-in users, each with their own token; the whole-response cache is on in both. Answers by kind: {}. Subgraph requests per answer: {:.2} with the entity cache off, {:.2} on ({:.2} saved per answer). Entity cache on against off: throughput {throughput:.2}x, p99 {p99:.2}x (target: at least 5x and at most 0.33x). CPU is the whole platform's per 1,000 answers; RSS at the end of each round (median).",
        settings.rounds,
        settings.duration.as_secs(),
        settings.workers,
        signed_in::mix_line(&mix_seen),
        calls[0],
        calls[1],
        calls[0] - calls[1],
    ));
    report.table("closed loop, gzip", rows);
    report.publish(&settings.repo)?;
    Ok(())
}

fn pick(w: &World, worker: usize, i: u64) -> (&'static str, Request) {
    let user = (draw(worker, i, 1) % USERS as u64) as usize;
    let token = Some(w.tokens[user].as_str());
    if draw(worker, i, 4) % 100 < WRITES {
        let post = &w.posts[(draw(worker, i, 2) % 20) as usize];
        let op = match draw(worker, i, 5) % 2 {
            0 => "LikePost",
            _ => "UnlikePost",
        };
        return (
            "like",
            persisted(&w.ops, op, &json!({ "postId": post }), token),
        );
    }
    (
        "feed",
        persisted(&w.ops, "PersonalFeed", &json!({ "first": 20 }), token),
    )
}
