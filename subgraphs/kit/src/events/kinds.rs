//! The event catalogue: every kind an emitter writes and a worker reads, in one place so the
//! two sides cannot drift apart (docs/events.md describes each one's fields).

/// posts: `{post_id, author_id}`.
pub const POST_CREATED: &str = "PostCreated";
/// posts: `{post_id, author_id}`.
pub const POST_DELETED: &str = "PostDeleted";
/// engagement: `{post_id, user_id}`.
pub const POST_LIKED: &str = "PostLiked";
/// engagement: `{post_id, user_id}`.
pub const POST_UNLIKED: &str = "PostUnliked";
/// engagement: `{comment_id, post_id, author_id}`.
pub const COMMENT_ADDED: &str = "CommentAdded";
/// engagement: `{comment_id, post_id, author_id}`.
pub const COMMENT_DELETED: &str = "CommentDeleted";
/// engagement: `{follow_id, follower_id, followee_id}`.
pub const USER_FOLLOWED: &str = "UserFollowed";
/// engagement: `{follow_id, follower_id, followee_id}`.
pub const USER_UNFOLLOWED: &str = "UserUnfollowed";
/// accounts: `{user_id}` (a profile field changed).
pub const PROFILE_UPDATED: &str = "ProfileUpdated";
/// notifications: `{notification_id, recipient_id, kind, actor_id, actor_count, subject_id}`
/// (a notification that should reach the recipient's devices; the push queue).
pub const PUSH_REQUESTED: &str = "PushRequested";
